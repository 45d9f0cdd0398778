"""Speed and memory benchmarks at a chosen scale (default: paper, 10,266 × 127,219 peaks × 3,000 genes).

`python -m bench perf` measures, each in a fresh process-local section with peak RSS sampled by `PeakRSS`:
  * synthetic data generation (target at paper scale: < 2 min, < 4 GB);
  * one surrogate training epoch;
  * forward and forward+backward of the sparse first layer for 64 cells vs the dense-input path, and the eq. 4
    gains for all peaks;
  * one GRIDS step (gains + 32 incremental candidates).
It writes `perf.md`, `perf.csv` and `perf.png` to the output folder. Timings are wall-clock on this machine.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch

from bench.memory import PeakRSS
from datasets.files import atomic_write


def _timed(fn, repeat: int = 1):
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        for _ in range(repeat):
            out = fn()
        seconds = (time.perf_counter() - t0) / repeat
    return out, seconds, mem.peak_mb, mem.delta_mb


def run_perf(scale: str = "paper", out: Path = Path("results/perf"), epochs: int = 1, progress: bool = True
             ) -> pd.DataFrame:
    from datasets.synthetic import simulate
    from methods.grids import Grids
    from surrogates.model import SurrogateConfig
    from surrogates.train import build_surrogate, train_surrogate

    rows = []

    def record(step, seconds, peak_mb, delta_mb, note=""):
        rows.append({"step": step, "seconds": seconds, "peak_rss_mib": peak_mb, "rss_increase_mib": delta_mb,
                     "note": note})

    (data, _truth), s, peak, delta = _timed(lambda: simulate(scale, seed=0))
    record(f"simulate({scale})", s, peak, delta, f"{data.n_cells}×{data.n_peaks} peaks, "
           f"{data.atac.nnz / data.n_cells:.0f} open/cell")
    cfg = SurrogateConfig(max_epochs=epochs, min_epochs=epochs)
    model, s, peak, delta = _timed(lambda: train_surrogate(data, cfg, device="cpu", progress=progress))
    record(f"train surrogate, {epochs} epoch(s)", s / epochs, peak, delta, "per epoch, incl. validation")

    model = build_surrogate(data, SurrogateConfig()).eval()
    for name, fn, note in _kernels(model, data.atac[:64]):
        fn()  # warm-up
        _, s, peak, delta = _timed(fn, repeat=5)
        record(name, s, peak, delta, note)

    ct = data.cell_types[3]
    gene = data.gene_names[1]
    train = data.cells(ct, "train")
    _, s, peak, delta = _timed(lambda: Grids(steps=20, seed=0).explain(model, train, gene, 128))
    record("GRIDS step (L=128, 64 cells, k=32, ratio objective)", s / 20, peak, delta, "mean of 20 steps incl. set-up")
    table = pd.DataFrame(rows)
    _write(table, Path(out), scale)
    return table


def _kernels(model, X, gi: int = 0) -> tuple:
    """(name, function, note) of the sparse and dense kernels timed on the cells `X`."""
    batch = model.sparse_batch(X)

    def sparse_fwd():
        with torch.no_grad():
            return model.first_hidden(batch)

    def sparse_fwd_bwd():
        w = torch.ones(batch.idx.numel(), requires_grad=True)
        y = model.head_from_hidden(model.first_hidden(batch, w))[:, gi].sum()
        (g,) = torch.autograd.grad(y, w)
        return torch.zeros(model.n_peaks).index_add_(0, batch.idx, g)  # eq. 4 gains for every peak

    def dense_fwd_bwd():
        x = torch.as_tensor(X.toarray(), dtype=torch.float32).requires_grad_(True)
        model(x)[:, gi].sum().backward()
        return x.grad

    return (("sparse first layer forward, 64 cells", sparse_fwd, "embedding_bag"),
            ("sparse forward+backward + all-peak gains, 64 cells", sparse_fwd_bwd, "per_sample_weights"),
            ("dense-input forward+backward, 64 cells", dense_fwd_bwd, "x (64×peaks) @ Δ per chromosome"))


def _write(table: pd.DataFrame, out: Path, scale: str) -> None:
    from tabulate import tabulate

    atomic_write(out / "perf.csv", table.to_csv(index=False))
    md = [f"# Performance at `{scale}` scale", "", f"torch {torch.__version__}, {torch.get_num_threads()} threads",
          "", tabulate(table.round(4).values.tolist(), headers=list(table.columns), tablefmt="github")]
    atomic_write(out / "perf.md", "\n".join(md) + "\n")
    _plot(table, out / "perf.png", scale)


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


