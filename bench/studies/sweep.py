"""Dimension sweep: how every explainer's quality, time and memory scale with the number of peaks d.

For each d, `run_sweep` simulates a multiome data set with d peaks (`datasets.synthetic.SimulationScale`), trains a
small surrogate on it, and runs every requested method on one (cell type, gene) under the same per-job `Budget`.
Each job goes through the benchmark's one job runner (`bench.running.runner.run_job`) and records its fields:

* `rel_delta_pct`, `avg_delta`, ... — closing the L chosen peaks in the *test* cells of the type, surrogate-based
  (`bench.scoring.metrics`); plus the simulator's oracle Rel Δ and the recall of the gene's planted regulatory peaks;
* `explain_seconds` — wall time of `explain`; `samples` — the surrogate evaluations the method counted;
* `rss_increase_mb` — peak resident memory during `explain` minus the RSS just before it (`peak_rss_mb` is the
  absolute peak); see bench/running/runner.py for how it is measured and why it is a lower bound;
* `status` — the method's status, or `failed` with the exception in `error` when `explain` raised or returned an
  invalid explanation (a failure never stops the sweep).

Outputs in `out`: `sweep.csv` (one row per (d, method), rewritten after every job so a crash keeps the finished
rows), `sweep.md` (a table per metric, methods × d) and `sweep.png` (Rel Δ, seconds and peak memory vs d, log-x,
one line per method, jobs that did not finish with status ok marked ×; failed jobs have no Rel Δ and are drawn
at 0 on that panel).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.running.runner import Job, run_job
from datasets.synthetic import SimulationScale, simulate
from methods import registry
from methods.base import Budget
from surrogates.model import SurrogateConfig
from surrogates.train import train_surrogate

log = logging.getLogger(__name__)

PAPER_DIMS = (2000, 10000, 127219)  # the smallest leaves the background at least as many peaks as the planted ones


def default_surrogate_config(seed: int = 0) -> SurrogateConfig:
    """A small, fast surrogate for the sweep: the sweep compares explainers across d, not surrogate quality."""
    return SurrogateConfig(hidden=64, max_epochs=30, min_epochs=5, patience=5, max_seconds=180.0, seed=seed)


def run_sweep(dims=PAPER_DIMS, methods=None, budget: Budget = Budget(seconds=60.0, samples=5_000_000),
              L: int = 10, gene: str = "AQP4", cell_type: str = "Astro", n_cells: int = 1200, n_genes: int = 60,
              n_chrom: int = 23, seed: int = 0, surrogate_config: SurrogateConfig | None = None,
              method_params: dict | None = None, out: Path | str = Path("results/sweep"),
              progress: bool = True) -> pd.DataFrame:
    """Run every method at every dimension d and write `sweep.csv`, `sweep.md`, `sweep.png` into `out`.

    Args:
        dims: numbers of peaks to simulate. Default: (2000, 10000, 127219) — the last is the paper's.
        methods: registered method names. Default: None = every registered method.
        budget: the per-job budget, identical for every method. Default: 60 s, 5M surrogate evaluations.
        L: subset size. Default: 10.
        gene, cell_type: the explained gene and its cell type. Default: "AQP4", "Astro".
        n_cells, n_genes, n_chrom: the rest of each simulated scale. Default: 1200, 60, 23.
        seed: simulator, surrogate and method seed. Default: 0.
        surrogate_config: Default: `default_surrogate_config(seed)` (hidden 64, ≤ 30 epochs, ≤ 180 s).
        method_params: per-method constructor kwargs, e.g. {"cxplain": {"epochs": 50}}. Default: None.
        out: output folder (created). Default: results/sweep.
        progress: show a progress bar over jobs. Default: True.
    Returns:
        The long table written to `sweep.csv`, one row per (d, method).
    """
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(methods) if methods is not None else registry.available()
    for name in names:
        registry.get(name)  # fails early, listing what is available
    method_params = method_params or {}
    config = surrogate_config or default_surrogate_config(seed)
    rows: list[dict] = []
    bar = tqdm(total=len(dims) * len(names), desc="sweep", disable=not progress, unit="job")
    for d in dims:
        scale = SimulationScale(n_cells=n_cells, n_peaks=int(d), n_genes=n_genes, n_chrom=n_chrom)
        data, truth, surrogate, context = _prepare(scale, seed, config, cell_type)
        context.update({"gene": gene, "cell_type": cell_type, "L": L, "seed": seed, "budget_seconds": budget.seconds,
                        "budget_samples": budget.samples})
        for name in names:
            bar.set_postfix(d=d, method=name)
            result = run_job(Job(name, cell_type, gene, L, seed), method_params.get(name, {}), budget, surrogate, data,
                             truth, settle_memory=True)
            row = {**context, **result.record(), "samples": result.info.get("samples", np.nan)}
            for key in ("peaks", "info", "traceback"):  # jobs.jsonl material, not table columns
                row.pop(key, None)
            rows.append(row)
            _frame(rows).to_csv(out / "sweep.csv", index=False)
            log.info("sweep d=%d %s: %s, %s s, Rel Δ %s", d, name, row["status"], row["explain_seconds"],
                     row.get("rel_delta_pct"))
            bar.update(1)
        del surrogate, data, truth
    bar.close()
    df = _frame(rows)
    df.to_csv(out / "sweep.csv", index=False)
    write_markdown(df, out / "sweep.md")
    plot_sweep(df, out / "sweep.png")
    return df


def _prepare(scale, seed: int, config: SurrogateConfig, cell_type: str):
    """Simulate one scale and train the sweep's surrogate on it → (data, truth, surrogate, context columns)."""
    t0 = time.perf_counter()
    data, truth = simulate(scale, seed)
    sim_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    surrogate = train_surrogate(data, config, progress=False)
    train, test = data.cells(cell_type, "train"), data.cells(cell_type, "test")
    return data, truth, surrogate, {
        "d": scale.n_peaks, "n_train_cells": train.n_cells, "n_test_cells": test.n_cells,
        "mean_open_peaks": float(train.atac.nnz / max(1, train.n_cells)), "simulate_seconds": sim_seconds,
        "surrogate_seconds": time.perf_counter() - t0}


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    first = ["d", "method", "status", "rel_delta_pct", "avg_delta", "explain_seconds", "rss_increase_mb", "samples"]
    return df[[c for c in first if c in df] + [c for c in df if c not in first]]


def write_markdown(df: pd.DataFrame, path: Path) -> None:
    """One methods × d table per measured quantity; a job that did not end `ok` shows its status beside it."""
    parts = ["# Dimension sweep", ""]
    if len(df):
        r = df.iloc[0]
        parts += [f"gene {r['gene']} ({r['cell_type']}), L = {r['L']}, per-job budget {r['budget_seconds']:g} s / "
                  f"{int(r['budget_samples']):,} samples, seed {r['seed']}. Rel Δ on test cells (↓ better); "
                  "seconds = wall time of `explain`; memory = peak RSS over the start of the job.", ""]
    for col, label, fmt in (("rel_delta_pct", "Rel Δ (%) ↓", "{:.2f}"), ("explain_seconds", "Seconds", "{:.1f}"),
                            ("rss_increase_mb", "Peak memory increase (MiB)", "{:.0f}")):
        if col not in df:
            continue
        table = {}
        for _, r in df.iterrows():
            v = r[col]
            cell = "—" if pd.isna(v) else fmt.format(v)
            if r["status"] != "ok":
                cell += f" ({r['status']})"
            table.setdefault(r["method"], {})[f"d = {r['d']:,}"] = cell
        parts += [f"## {label}", "", pd.DataFrame(table).T.rename_axis("method").to_markdown(), ""]
    errors = df[df["status"] == "failed"] if "status" in df else df.iloc[:0]
    if len(errors):
        parts += ["## Failures", ""] + [f"- {r['method']} at d = {r['d']:,}: {r['error']}" for _, r in
                                        errors.iterrows()] + [""]
    Path(path).write_text("\n".join(parts))


def plot_sweep(df: pd.DataFrame, path: Path) -> None:
    """Rel Δ, seconds and peak memory vs d (log-x), one line per method; non-ok jobs marked ×."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = (("rel_delta_pct", "Rel Δ (%) ↓"), ("explain_seconds", "seconds"),
              ("rss_increase_mb", "peak memory increase (MiB)"))
    for ax, (col, label) in zip(axes, panels):
        for k, (method, g) in enumerate(df.sort_values("d").groupby("method", sort=True)):
            color = f"C{k % 10}"
            y = g[col].astype(float)
            if col == "rel_delta_pct":
                y = y.where(g["status"] != "failed", 0.0)
            ax.plot(g["d"], y, "-o", color=color, label=method, markersize=4)
            bad = g["status"] != "ok"
            if bad.any():
                ax.plot(g["d"][bad], y[bad], "x", color=color, markersize=11, markeredgewidth=2.5)
        ax.set_xscale("log")
        if col == "explain_seconds" and (df[col].astype(float).dropna() > 0).all():
            ax.set_yscale("log")
        elif col == "rss_increase_mb":
            ax.set_yscale("symlog", linthresh=10.0)
            ax.set_ylim(bottom=0)
        ax.set_xlabel("number of peaks d")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Explainers vs dimension (× = failed, budget exceeded or not converged)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
