"""Speed and memory benchmarks at a chosen scale (default: paper, 10,266 × 127,219 peaks × 3,000 genes).

`python -m bench perf` measures, in one process and one run:
  * synthetic data generation (target at paper scale: < 2 min, < 4 GB);
  * one surrogate training epoch (cells/s);
  * for 64 cells, the surrogate's forward+backward three ways on the same weights: the sparse path (embedding bag
    with per-sample weights; backward gives every open entry's closure gradient, then the eq. 4 gains of all
    peaks), the dense-input path (x @ Δ per chromosome, captum's form) and the **dense-embedding** form of the
    reference code (gather a float32 [cells × peaks × embedding] tensor of open/closed embeddings, then sum per
    chromosome) at the largest batch that fits `dense_memory_gb`, reported per cell;
  * one GRIDS step (eq. 2, and the mean objective) next to the sparse forward+backward + gains row;
  * the floor of the sparse kernels and of each GRIDS step (bench/studies/floor.py): their GEMM and embedding-bag
    FLOPs and compulsory bytes against this process's measured GEMM throughput and memory bandwidth, the time as a
    multiple of that floor, and where a step's time goes (torch.profiler: GEMMs, bags, other ops, Python between them).
Times are medians over repeats after a warm-up (`torch.utils.benchmark`, with the interquartile range); memory is
the peak RSS increase of one call over the RSS before it, after freed pages went back to the OS (activations and
gradients: the weights exist before the call). It writes `perf.md` (with the ratios), `perf.csv`, `perf.json`
and `perf.png` to the output folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tabulate import tabulate
from torch.utils import benchmark

from bench.running.memory import PeakRSS, release_freed_memory
from bench.studies.floor import bandwidth, count_kernels, machine_rates, time_breakdown
from datasets.files import atomic_write
from datasets.synthetic import simulate
from methods.grids import Grids, peak_gains, summed_embeddings
from surrogates.model import SurrogateConfig, torch_threads
from surrogates.train import build_surrogate, train_surrogate

SPARSE, DENSE_EMB = "sparse forward+backward + all-peak gains", "dense-embedding forward+backward (reference form)"
COUNTED = ("sparse first layer forward", SPARSE)  # the kernels whose floor perf.md prints
# the paper profile's GRIDS step (bench/config.py: 256 off-target genes, gains from the same sample)
PAPER_STEP = "GRIDS step, L=128, k=32, ratio objective, 256 off-target genes, sampled gains"


def _measure(fn, min_run_time: float = 1.0) -> dict:
    """Median and IQR of `fn`'s wall time after a warm-up (torch.utils.benchmark), and the peak RSS increase of
    one more call."""
    fn()  # warm-up: lazy allocations and one-time set-up are not the kernel's cost
    m = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads()
                        ).blocked_autorange(min_run_time=min_run_time)
    _, once = _once(fn, interval=0.002)  # kernels take milliseconds: sample RSS finely
    return {**once, "seconds": m.median, "iqr_seconds": m.iqr, "repeats": len(m.times) * m.number_per_run}


def _once(fn, interval: float = 0.02) -> tuple:
    """(fn's result, its wall time and peak RSS increase over one call, freed memory returned to the OS first)."""
    release_freed_memory()
    with PeakRSS(interval=interval) as mem:
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
    return out, {"seconds": seconds, "iqr_seconds": float("nan"), "repeats": 1, "peak_rss_mib": mem.peak_mb,
                 "rss_increase_mib": mem.delta_mb}


def run_perf(scale: str = "paper", out: Path = Path("results/perf"), epochs: int = 1, progress: bool = True,
             min_run_time: float = 1.0, dense_memory_gb: float = 6.0) -> pd.DataFrame:
    rows = []

    def record(step, measured: dict, cells: int | None = None, note: str = ""):
        per_cell = measured["seconds"] / cells * 1e3 if cells else float("nan")
        rows.append({"step": step, **measured, "cells": cells, "ms_per_cell": per_cell, "note": note})

    (data, _truth), m = _once(lambda: simulate(scale, seed=0))
    record(f"simulate({scale})", m, note=f"{data.n_cells}×{data.n_peaks} peaks, {data.atac.nnz / data.n_cells:.0f} "
                                          "open/cell")
    n_train = int((data.obs["split"] == "train").sum())
    # torch's default Adam kernel, the fused one, and the paper profile's fused Adam + SparseAdam decoder
    for fused, lazy in ((False, False), (True, False), (True, True)):
        cfg = SurrogateConfig(max_epochs=epochs, min_epochs=epochs, fused_adam=fused, sparse_decoder=lazy)
        _, m = _once(lambda: train_surrogate(data, cfg, device="cpu", progress=progress))
        m["seconds"] /= epochs
        record(f"train surrogate, {epochs} epoch(s)" + (", fused Adam" if fused else "")
               + (", SparseAdam decoder" if lazy else ""), m, n_train,
               f"per epoch incl. validation, {n_train / m['seconds']:.0f} cells/s")
    torch.manual_seed(0)
    model = build_surrogate(data, SurrogateConfig()).eval()
    with torch_threads(cfg.threads):
        rates = machine_rates(min_run_time)  # same process, same threads as the kernels it bounds
        for name, fn, cells, note in _kernels(model, data, dense_memory_gb):
            measured = _measure(fn, min_run_time)
            if name in COUNTED:
                count = count_kernels(fn)[1]
                floor = count.floor_seconds(rates["gemm_flops_per_s"], bandwidth(rates))
                measured.update(_floor_columns(count.totals(), floor, measured["seconds"]))
            record(name, measured, cells, note)
        breakdown = {}
        for (label, measured), cells, note, floor, parts in _grids_steps(model, data, rates):
            record(label, {**measured, **floor}, cells, note)
            breakdown[label] = parts
    table = pd.DataFrame(rows)
    _write(table, Path(out), scale, rates, breakdown)
    return table


def _floor_columns(totals: dict, floor: float, seconds: float) -> dict:
    """The floor columns of a row: GEMM GFLOP and MB, embedding-bag MB, the floor in ms and the measured time over
    it."""
    return {"gemm_gflop": totals["gemm_flops"] / 1e9, "gemm_mb": totals["gemm_bytes"] / 1e6,
            "bag_mb": totals["bag_bytes"] / 1e6, "floor_ms": floor * 1e3, "over_floor": seconds / floor}


def _kernels(model, data, dense_memory_gb: float, gi: int = 0) -> list:
    """(name, function, cells, note) of the sparse and dense kernels on the first cells of `data`."""
    X = data.atac[:64]
    batch = model.sparse_batch(X)

    def sparse_fwd():
        with torch.no_grad():
            return model.first_hidden(batch)

    by_peak = model.bag_batches(X).batch(np.arange(X.shape[0]))
    with torch.no_grad():
        tables = model.embedding_tables()  # frozen weights, as in every explainer

    def sparse_fwd_bwd():  # what GRIDS runs: ∂ŷ/∂s by autograd, then every peak's eq. 4 gain from it
        s = summed_embeddings(model, by_peak, tables)
        y = model.head_from_hidden(model.first(s))[:, gi].sum()
        (d_s,) = torch.autograd.grad(y, s)
        return peak_gains(by_peak, tables[0], d_s)

    def per_entry_fwd_bwd():  # the same gains through autograd's per-sample-weight gradient of every open entry
        w = torch.ones(batch.idx.numel(), requires_grad=True)
        y = model.head_from_hidden(model.first_hidden(batch, w))[:, gi].sum()
        (g,) = torch.autograd.grad(y, w)
        return torch.zeros(model.n_peaks).index_add_(0, batch.idx, g)

    def dense_fwd_bwd():
        x = torch.as_tensor(X.toarray(), dtype=torch.float32).requires_grad_(True)
        model(x)[:, gi].sum().backward()
        return x.grad

    # the reference's form: ~ 4 bytes × peaks × embedding per cell, ×3 with the backward's copies
    per_cell = 3 * 4 * model.n_peaks * model.config.emb_dim
    n_dense = int(max(1, min(64, dense_memory_gb * 2**30 // per_cell)))
    x_dense = torch.as_tensor(data.atac[:n_dense].toarray(), dtype=torch.float32)

    def dense_embedding_fwd_bwd():
        x = x_dense.clone().requires_grad_(True)
        return dense_embedding_grad(model, x, gi)

    return [("sparse first layer forward", sparse_fwd, 64, "embedding_bag"),
            (SPARSE, sparse_fwd_bwd, 64, "∂ŷ/∂s, gains bagged by peak (GRIDS)"),
            ("sparse forward+backward + all-peak gains, per-entry autograd", per_entry_fwd_bwd, 64,
             "per_sample_weights gradient, gains by index_add"),
            ("dense-input forward+backward", dense_fwd_bwd, 64, "x (cells×peaks) @ Δ per chromosome"),
            (DENSE_EMB, dense_embedding_fwd_bwd, n_dense,
             f"float32 [{n_dense} × {model.n_peaks} × {model.config.emb_dim}] gather + per-chromosome sum")]


def dense_embedding_grad(model, x: torch.Tensor, gi: int) -> torch.Tensor:
    """The reference code's first layer on the same weights: every peak's embedding (open or closed) as one dense
    [cells × peaks × embedding] tensor, summed per chromosome, then the rest of the network; returns ∂ŷ_gi/∂x."""
    e = x.unsqueeze(-1) * model.emb_open + (1 - x).unsqueeze(-1) * model.emb_closed
    s = torch.zeros(x.shape[0], model.n_chrom, model.config.emb_dim).index_add_(1, model.peak_chrom, e)
    y = model.head_from_hidden(model.first(s.flatten(1)))[:, gi].sum()
    (g,) = torch.autograd.grad(y, x)
    return g


def _grids_steps(model, data, rates: dict, repeats: int = 3, steps: int = 50) -> list:
    """One GRIDS step (L = 128, 64 cells, k = 32) per objective: (time of 2 + `steps` steps − time of 2 steps) /
    `steps`, so the set-up and the final leave-one-out ordering are not counted; median over `repeats`. The same
    difference gives each step's arithmetic and floor (bench/studies/floor.py) and where its time goes (profiler)."""
    train = data.cells(data.cell_types[3], "train")
    gene = data.gene_names[1]
    out = []
    for objective, extra in (("ratio", {}), ("ratio", {"off_target_genes": 256}),
                             ("ratio", {"off_target_genes": 256, "sampled_gains": True}), ("mean", {})):
        def run(steps, objective=objective, extra=extra):
            return Grids(steps=steps, seed=0, objective=objective, **extra).explain(model, train, gene, 128)

        run(2)  # warm-up
        per_step = []
        for _ in range(repeats):
            _, short = _once(lambda: run(2))
            _, long = _once(lambda: run(2 + steps))
            per_step.append((long["seconds"] - short["seconds"]) / steps)
        q75, q25 = np.percentile(per_step, [75, 25])
        m = {**long, "seconds": float(np.median(per_step)), "iqr_seconds": float(q75 - q25), "repeats": repeats}
        (_, c_long), (_, c_short) = count_kernels(lambda: run(2 + steps)), count_kernels(lambda: run(2))
        bw, gemm = bandwidth(rates), rates["gemm_flops_per_s"]
        floor = (c_long.floor_seconds(gemm, bw) - c_short.floor_seconds(gemm, bw)) / steps
        columns = _floor_columns(c_long.minus(c_short, steps), floor, m["seconds"])
        p_long, p_short = time_breakdown(lambda: run(2 + steps)), time_breakdown(lambda: run(2))
        parts = {k: (p_long[k] - p_short[k]) / steps for k in p_long}
        label = (f"GRIDS step, L=128, k=32, {objective} objective" + (", 256 off-target genes" if extra else "")
                 + (", sampled gains" if extra.get("sampled_gains") else ""))
        out.append(((label, m), 64, f"({2 + steps} steps − 2 steps) / {steps}", columns, parts))
    return out


def _write(table: pd.DataFrame, out: Path, scale: str, rates: dict | None = None,
           breakdown: dict | None = None) -> None:
    ratios = perf_ratios(table)
    atomic_write(out / "perf.csv", table.to_csv(index=False))
    atomic_write(out / "perf.json", json.dumps({"scale": scale, "torch": torch.__version__,
                                                "threads": torch.get_num_threads(), "ratios": ratios,
                                                "machine": rates, "breakdown": breakdown,
                                                "rows": json.loads(table.to_json(orient="records"))}, indent=1))
    floor_cols = [c for c in ("gemm_gflop", "gemm_mb", "bag_mb", "floor_ms", "over_floor") if c in table]
    shown = table.drop(columns=["peak_rss_mib", *floor_cols]).round(4)
    md = [f"# Performance at `{scale}` scale", "",
          f"torch {torch.__version__}, {torch.get_num_threads()} threads. Times: median over repeats after a warm-up "
          "(`torch.utils.benchmark`), with the interquartile range; memory: peak RSS increase of one call over the "
          "RSS before it (activations and gradients; the weights exist before the call).", "",
          tabulate(shown.values.tolist(), headers=list(shown.columns), tablefmt="github"), ""]
    if rates and floor_cols:
        md += _floor_section(table, floor_cols, rates, breakdown or {})
    md += ["## Ratios", ""] + [f"- {k}: {v:.3g}" for k, v in ratios.items()]
    atomic_write(out / "perf.md", "\n".join(md) + "\n")
    _plot(table, out / "perf.png", scale)


def _floor_section(table: pd.DataFrame, floor_cols: list, rates: dict, breakdown: dict) -> list:
    """perf.md's floor table (each counted kernel's time as a multiple of its floor) and where a step's time goes."""
    counted = table.dropna(subset=["floor_ms"])[["step", "seconds", *floor_cols]].copy()
    counted["seconds"] = counted["seconds"] * 1e3
    counted = counted.rename(columns={"seconds": "measured_ms"}).round(3)
    md = ["## Floors", "",
          f"This machine, this process: float32 GEMM {rates['gemm_flops_per_s'] / 1e9:.1f} GFLOP/s ({rates['gemm_n']}³ "
          f"product), memory bandwidth {bandwidth(rates) / 1e9:.1f} GB/s (copy {rates['copy_bytes_per_s'] / 1e9:.1f}, "
          f"read {rates['read_bytes_per_s'] / 1e9:.1f}; {rates['stream_mib']} MiB arrays). A kernel's floor is "
          "max(FLOPs / GEMM rate, compulsory bytes / bandwidth), a step's the sum over its GEMMs and embedding bags "
          "(bench/studies/floor.py); elementwise ops and the Python between kernels are not in the floor.", "",
          tabulate(counted.values.tolist(), headers=list(counted.columns), tablefmt="github"), ""]
    if breakdown:
        rows = [[label, p["wall"] * 1e3] + [100 * p[k] / p["wall"] for k in BREAKDOWN]
                for label, p in breakdown.items()]
        md += ["Where a GRIDS step's time goes (torch.profiler self CPU time per step, profiled run; % of its wall "
               "time):", "", tabulate(rows, headers=["step", "wall_ms", *(f"{k} %" for k in BREAKDOWN)],
                                     tablefmt="github", floatfmt=".1f"), ""]
    return md


BREAKDOWN = ("gemm", "embedding_bag", "other_aten", "python_numpy_scipy")


def perf_ratios(table: pd.DataFrame) -> dict[str, float]:
    """Dense-embedding vs sparse forward+backward per cell (time, memory beyond the weights), and each GRIDS step
    vs the sparse forward+backward + gains of the same 64 cells."""
    rows = table.set_index("step")
    sparse, dense = rows.loc[SPARSE], rows.loc[DENSE_EMB]
    out = {"dense-embedding / sparse forward+backward, time per cell": dense["ms_per_cell"] / sparse["ms_per_cell"],
           # one MiB floor: the sparse call's increase is within the sampler's resolution
           "dense-embedding / sparse forward+backward, memory per cell beyond the weights":
               (dense["rss_increase_mib"] / dense["cells"]) / (max(sparse["rss_increase_mib"], 1.0) / sparse["cells"])}
    for step in (s for s in rows.index if s.startswith("GRIDS step")):
        out[f"{step} / sparse forward+backward + gains"] = rows.loc[step, "seconds"] / sparse["seconds"]
    if "over_floor" in rows:  # target ≤ 3 for the paper profile's step
        out["grids_step_over_floor"] = float(rows.loc[PAPER_STEP, "over_floor"])
        out["sparse_fwd_bwd_over_floor"] = float(sparse["over_floor"])
    return out


def _plot(table: pd.DataFrame, path: Path, scale: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    labels = [s if len(s) < 48 else s[:45] + "…" for s in table["step"]]
    axes[0].barh(labels, table["seconds"], color="tab:blue")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("seconds (log)")
    axes[1].barh(labels, table["peak_rss_mib"], color="tab:orange")
    axes[1].set_xlabel("peak RSS (MiB)")
    axes[1].set_yticklabels([])
    fig.suptitle(f"GRIDS-Bench performance, {scale} scale")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


