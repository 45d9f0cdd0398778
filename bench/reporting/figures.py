"""Figures of a run: Rel Δ against L per method, averaged over cell types and per cell type (PNG bytes)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd


def rel_delta_curves(agg: pd.DataFrame, methods: list[str]) -> bytes:
    """Left: Avg Rel Δ (%) vs L per method with its 95 % CI (log-x); right: one small panel per cell type. A method
    without numbers at an L has no point there (a 0 would read as "no effect")."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cell_types = [c for c in agg["cell_type"].unique() if c != "Avg"]
    cols = max(1, int(np.ceil(len(cell_types) / 2)))
    fig = plt.figure(figsize=(5.5 + 2.6 * cols, 5.2))
    grid = fig.add_gridspec(2, 2 + cols, width_ratios=[1.4, 0.6] + [1] * cols)
    main = fig.add_subplot(grid[:, 0])
    colors = {m: f"C{k % 10}" for k, m in enumerate(methods)}
    styles = {m: "-" if k < 10 else "--" for k, m in enumerate(methods)}

    def draw(ax, part, with_ci: bool):
        for m in methods:
            rows = part[part["method"] == m].sort_values("L")
            ok = rows["rel_delta_pct"].notna()
            if not ok.any():
                continue
            x, y = rows["L"][ok].astype(float), rows["rel_delta_pct"][ok]
            err = rows["rel_delta_pct_ci95"][ok] if with_ci else None
            ax.errorbar(x, y, yerr=err, color=colors[m], ls=styles[m], marker="o", ms=3, lw=1.2, capsize=2,
                        label=m)
        ax.set_xscale("log")
        ax.axhline(0, color="black", lw=0.6)
        ax.grid(alpha=0.3)

    draw(main, agg[agg["cell_type"] == "Avg"], True)
    main.set_xlabel("L (peaks closed)")
    main.set_ylabel("Avg Rel Δ (%) over cell types, 95 % CI (↓ better)")
    main.set_title("Rel Δ vs L, averaged over cell types", fontsize=10)
    handles, labels = main.get_legend_handles_labels()
    legend_ax = fig.add_subplot(grid[:, 1])
    legend_ax.axis("off")
    legend_ax.legend(handles, labels, loc="center left", fontsize=7, frameon=False)
    for k, ct in enumerate(cell_types):
        ax = fig.add_subplot(grid[k % 2, 2 + k // 2])
        draw(ax, agg[agg["cell_type"] == ct], False)
        ax.set_title(ct, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
