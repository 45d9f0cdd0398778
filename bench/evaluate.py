"""Scores one explanation on the held-out cells of the gene's cell type (surrogate, and truth where known)."""

from __future__ import annotations

import numpy as np
import torch

from bench import metrics as M

# bump when a job's metrics can change (this module, bench/metrics.py, bench/genomic.py, bench/runner.py): cached
# job results of another version are recomputed (bench/versions.py; tests/test_versions.py checks the sources)
EVALUATOR_VERSION = 1


def closure_gradients(surrogate, cells, gene: str):
    """(sparse batch of `cells`, g) with g_e = x_cj · ∂ŷ_c/∂x_cj for every open entry e = (c, j): the first-order
    drop of the gene's log-prediction in cell c when peak j is closed, from one backward pass through the
    embedding bag's per-sample weights (closing an entry = setting its weight from 1 to 0)."""
    batch = surrogate.sparse_batch(cells.atac)
    w = torch.ones(batch.idx.numel(), device=surrogate.device, requires_grad=True)
    y = surrogate.head_from_hidden(surrogate.first_hidden(batch, w))[:, surrogate.gene_index(gene)]
    (g,) = torch.autograd.grad(y.sum(), w)
    return batch, g


def first_order_delta(surrogate, cells, gene: str, peaks) -> np.ndarray:
    """Per cell, the first-order change of the gene's log-prediction when `peaks` are closed: −Σ_{j∈peaks} g_cj."""
    batch, g = closure_gradients(surrogate, cells, gene)
    closed = torch.zeros(surrogate.n_peaks, dtype=torch.bool, device=g.device)
    closed[torch.as_tensor(np.asarray(peaks, dtype=np.int64), device=g.device)] = True
    delta = torch.zeros(cells.n_cells, dtype=torch.float64, device=g.device)
    delta.index_add_(0, batch.row, -(g * closed[batch.idx]).double())
    return delta.cpu().numpy()


def evaluate_selection(surrogate, test, gene: str, peaks, truth=None) -> dict[str, float]:
    """All applicable metrics for closing `peaks` in the `test` cells (a MultiomeData view)."""
    all0 = surrogate.predict(test.atac).cpu().numpy()
    all1 = surrogate.predict(test.atac, closed=peaks).cpu().numpy()
    gi = surrogate.gene_index(gene)
    y0, y1 = all0[:, gi], all1[:, gi]
    out = {"avg_delta": M.avg_delta(y0, y1), "rel_delta_pct": M.rel_delta_pct(y0, y1),
           "off_target_pct": M.off_target_pct(all0, all1, gi), "n_test_cells": len(y0),
           "first_order_rel_delta_pct": M.first_order_rel_delta_pct(first_order_delta(surrogate, test, gene, peaks))}
    if truth is not None and gene in truth.genes:
        e0 = truth.expression(test, genes=[gene])[:, 0]
        e1 = truth.expression(test, closed=peaks, genes=[gene])[:, 0]
        planted = truth.planted_peaks(gene)
        out["oracle_rel_delta_pct"] = M.oracle_rel_delta_pct(e0, e1)
        out["truth_recall"] = M.truth_recall(peaks, planted)
    out.update(_genomic(test, gene, np.asarray(peaks)))
    return out


def _genomic(data, gene: str, peaks: np.ndarray) -> dict[str, float]:
    """Chromosome / TSS context of the selection when coordinates exist (bench/genomic.py)."""
    from bench.genomic import fraction_on_target_chrom, median_tss_distance

    g = data.genes.loc[gene]
    chroms = data.peaks["chrom"].to_numpy()[peaks].astype(str)
    gchrom = None if g["chrom"] is None or (isinstance(g["chrom"], float) and np.isnan(g["chrom"])) else str(g["chrom"])
    tss = float(g["tss"]) if g["tss"] is not None else float("nan")
    return {
        "frac_on_target_chrom": fraction_on_target_chrom(chroms, gchrom),
        "median_tss_distance": median_tss_distance(chroms, data.peaks["start"].to_numpy()[peaks],
                                                   data.peaks["end"].to_numpy()[peaks], gchrom, tss),
    }
