"""Fidelity against training: how marker R², all-gene R² and (on synthetic data) interventional fidelity grow with
epochs and seconds, for choosing a profile's training budget from a measurement (`bench fit --curve`).

One training run of the profile's paired surrogate, with early stopping lifted so it runs to the last requested
epoch; after each requested epoch the current weights are measured (the time this takes is not counted as
training). The weights at epoch e are those the profile's own training has at epoch e (the same seed, data and
mini-batch stream; only where it stops differs); the profile keeps the best validation epoch, so the curve's
`val_mse` column says where early stopping would have stopped.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench.fidelity.interventional import interventional_fidelity
from bench.running.pipeline import marker_fidelity, marker_genes_in
from datasets.files import atomic_write
from surrogates.train import train_surrogate

COLUMNS = ("epoch", "train_seconds", "val_mse", "marker_r2", "pooled_marker_r2", "all_genes_r2",
           "interventional_spearman", "group_member_ratio_surrogate", "group_member_ratio_oracle")


def fidelity_curve(data, truth, markers: dict, config, epochs: list[int], device: str = "auto",
                   progress: bool = True, seed: int = 0) -> pd.DataFrame:
    """One row per requested epoch (COLUMNS); interventional columns only with the simulator's `truth`."""
    wanted = sorted(set(int(e) for e in epochs))
    if not wanted or wanted[0] < 1:
        raise ValueError("--curve needs positive epoch counts, e.g. 5,10,20,40")
    if config.style != "paired":
        raise ValueError("--curve measures the paired style's epochs; the reference style trains in fixed steps")
    pairs = marker_genes_in(data, markers, truth.genes) if truth is not None else []
    rows = []

    def measure(model, epoch, seconds, val_mse):
        if epoch not in wanted:
            return
        model.eval()
        report = marker_fidelity(model, data, markers)
        row = {"epoch": epoch, "train_seconds": seconds, "val_mse": val_mse, "marker_r2": report.marker_r2,
               "pooled_marker_r2": report.pooled_r2, "all_genes_r2": report.all_genes_r2}
        if pairs:
            row.update(interventional_fidelity(model, data, truth, pairs, seed=seed).summary())
            row.pop("panel_entries")
        rows.append(row)

    lifted = replace(config, max_epochs=wanted[-1], min_epochs=wanted[-1], max_seconds=0.0)
    train_surrogate(data, lifted, device=device, progress=progress, on_epoch=measure)
    return pd.DataFrame(rows, columns=[c for c in COLUMNS if any(c in r for r in rows)])


def write_curve(table: pd.DataFrame, out: Path, title: str) -> list[Path]:
    """fidelity_vs_epochs.csv / .md / .png in `out`."""
    written = [atomic_write(out / "fidelity_vs_epochs.csv", table.to_csv(index=False)),
               atomic_write(out / "fidelity_vs_epochs.md", curve_markdown(table, title))]
    plot_curve(table, out / "fidelity_vs_epochs.png", title)
    return written + [out / "fidelity_vs_epochs.png"]


def curve_markdown(table: pd.DataFrame, title: str) -> str:
    """fidelity_vs_epochs.md: the title and the table, four decimals."""
    return "\n".join([f"# {title}", "", tabulate(table.round(4).values.tolist(), headers=list(table.columns),
                                                   tablefmt="github"), ""])


def plot_curve(table: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, x, label in ((axes[0], "epoch", "epochs"), (axes[1], "train_seconds", "training seconds")):
        for col, name in (("marker_r2", "marker R²"), ("all_genes_r2", "all-gene R²"),
                          ("interventional_spearman", "interventional Spearman")):
            if col in table:
                ax.plot(table[x], table[col], marker="o", label=name)
        ax.axhline(0.9, color="grey", lw=0.8, ls="--")  # the paper-scale target for marker R²
        ax.set_xlabel(label)
        shown = table[[c for c in ("marker_r2", "all_genes_r2", "interventional_spearman") if c in table]]
        ax.set_ylim(min(0.0, float(shown.min().min())), 1.0)
    axes[0].set_ylabel("fidelity (test cells)")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
