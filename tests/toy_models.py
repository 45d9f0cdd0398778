"""Tiny surrogates whose right answer is known, shared by the per-method explainer tests.

`toy_problem()` builds 64 cells × 40 peaks (2 chromosomes) × 3 genes and trains a real `Surrogate` (emb 4,
hidden 8, latent 4) for a few hundred full-batch Adam steps on the cross-prediction loss alone, with planted labels

    TARGET = 0.5 + 3·x[STRONG] (+ small noise)      OTHER = 1 + x[other peak]      FLAT = 2

so opening peak `STRONG` raises the target by ~3 log-units and no other peak matters for it: every explainer
must rank `STRONG` first. Training takes ~1 s and is cached per process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from datasets.data import MultiomeData
from surrogates.model import Surrogate, SurrogateConfig

N_CELLS, N_PEAKS, N_CHROM = 64, 40, 2
STRONG = 7  # the one peak that regulates the target gene
OTHER_PEAK = 25
TARGET, OTHER, FLAT = "TARGET", "OTHER", "FLAT"
CELL_TYPE = "A"


@dataclass
class ToyProblem:
    surrogate: Surrogate
    data: MultiomeData  # all cells
    train: MultiomeData  # what `explain` receives: training cells of the type
    test: MultiomeData
    gene: str = TARGET
    strong: int = STRONG


def toy_labels(x) -> np.ndarray:
    """The planted expression function, linear in (possibly relaxed) accessibility: cells × (TARGET, OTHER, FLAT)."""
    x = np.asarray(x, dtype=np.float64)
    return np.stack([0.5 + 3.0 * x[:, STRONG], 1.0 + x[:, OTHER_PEAK], np.full(len(x), 2.0)], axis=1)


def toy_data(seed: int = 0, n_cells: int = N_CELLS, n_peaks: int = N_PEAKS) -> MultiomeData:
    rng = np.random.default_rng(seed)
    x = (rng.random((n_cells, n_peaks)) < 0.35).astype(np.uint8)
    x[: n_cells // 2, STRONG] = 1  # half the cells have it open, half closed: a clean contrast
    x[n_cells // 2:, STRONG] = 0
    x = x[rng.permutation(n_cells)]
    rna = toy_labels(x) + rng.normal(0, 0.05, (n_cells, 3))
    barcodes = pd.Index([f"c{i:03d}" for i in range(n_cells)], name="barcode")
    split = np.where(np.arange(n_cells) < int(0.75 * n_cells), "train", "test")
    obs = pd.DataFrame({"cell_type": pd.Categorical([CELL_TYPE] * n_cells), "split": split}, index=barcodes)
    per_chrom = n_peaks // N_CHROM
    chrom = [f"chr{1 + min(j // per_chrom, N_CHROM - 1)}" for j in range(n_peaks)]
    start = np.array([1000 * (j % per_chrom) + 100 for j in range(n_peaks)])
    peaks = pd.DataFrame({"chrom": chrom, "start": start, "end": start + 500})
    genes = pd.DataFrame({"chrom": ["chr1", "chr2", "chr1"], "tss": [7000, 5000, 100]},
                         index=pd.Index([TARGET, OTHER, FLAT]))
    return MultiomeData(sp.csr_matrix(x), rna.astype(np.float32), obs, peaks, genes, {"source": "toy"})


def train_toy_surrogate(data: MultiomeData, steps: int = 400, seed: int = 0) -> Surrogate:
    """Fit only the cross prediction F̂(x) ≈ y (the path every explainer perturbs) with full-batch Adam.

    Every other step the open entries get random weights in [0, 1] (a relaxed input, through the embedding bag's
    per-sample weights) with labels from the same linear `toy_labels`, so the toy is linear between "open" and
    "closed" too and local gradients point at the planted peak, as they do for a well-trained surrogate."""
    chrom, _ = data.chrom_codes()
    config = SurrogateConfig(emb_dim=4, hidden=8, latent=4, seed=seed)
    torch.manual_seed(seed)  # nn.Linear initialisation; the tests own this process-wide RNG use
    model = Surrogate(chrom, data.gene_names, data.cell_types, config)
    params = [model.emb_open, model.emb_closed, *model.first.parameters(), *model.enc_a_rest.parameters(),
              *model.f_ar.parameters(), *model.dec_r.parameters()]
    batch = model.sparse_batch(data.atac)
    y = torch.as_tensor(data.rna)
    gen = torch.Generator().manual_seed(seed)
    rows, cols = batch.row.numpy(), batch.idx.numpy()
    with torch.no_grad():  # start above the output clamp at 0 so no gene begins (and stays) dead
        model.dec_r[-1].bias.copy_(y.mean(0))
    opt = torch.optim.Adam(params, lr=1e-2)
    for step in range(steps):
        if step % 2:
            w = torch.rand(len(cols), generator=gen)
            x = np.zeros(data.atac.shape)
            x[rows, cols] = w.numpy()
            target = torch.as_tensor(toy_labels(x), dtype=torch.float32)
        else:
            w, target = None, y
        pred = model.head_from_hidden(model.first_hidden(batch, w))
        loss = torch.nn.functional.mse_loss(pred, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.meta = {"toy_final_mse": float(loss.detach())}
    return model


@functools.lru_cache(maxsize=None)
def toy_problem(seed: int = 0) -> ToyProblem:
    data = toy_data(seed)
    model = train_toy_surrogate(data, seed=seed)
    return ToyProblem(surrogate=model, data=data, train=data.cells(CELL_TYPE, "train"),
                      test=data.cells(CELL_TYPE, "test"))


def rel_delta_pct(surrogate: Surrogate, cells: MultiomeData, gene: str, peaks) -> float:
    """Rel Δ % = 100 · mean_c (exp ŷ_closed − exp ŷ) / exp ŷ on log-scale predictions for `gene`."""
    y0 = surrogate.predict(cells.atac, genes=[gene])[:, 0].double()
    y1 = surrogate.predict(cells.atac, closed=np.asarray(peaks), genes=[gene])[:, 0].double()
    return float(100 * ((torch.exp(y1) - torch.exp(y0)) / torch.exp(y0)).mean())


def toy_facts(source: str = "toy") -> dict:
    """`bench.reporting.report.run_facts` of a made-up run (tiny profile, no checkpoint), for tests that write
    reports."""
    from types import SimpleNamespace

    from bench.config import PROFILES
    from bench.reporting.report import run_facts

    data = SimpleNamespace(n_cells=10, n_peaks=20, n_genes=3)
    return run_facts(source, data, [SimpleNamespace(meta={})], "paired", PROFILES["tiny"], 1.0)
