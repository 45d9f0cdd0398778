"""Scores one explanation on the held-out cells of the gene's cell type, on the explained model (the surrogate, the
simulator's truth model or a user's model, through surrogates/protocol.py) and on the truth where known."""

from __future__ import annotations

import numpy as np
import torch

from bench.scoring import metrics as M
from bench.scoring.genomic import fraction_on_target_chrom, median_tss_distance
from surrogates.protocol import KnownOptimum, capability, cell_types_of, entry_gradients

# bump when a job's metrics can change (this module, bench/scoring/metrics.py, bench/scoring/genomic.py,
# bench/running/runner.py): cached job results of another version are recomputed (bench/running/versions.py;
# tests/test_versions.py checks the sources)
EVALUATOR_VERSION = 1


def first_order_delta(model, cells, gene: str, peaks) -> np.ndarray:
    """Per cell, the first-order change of the gene's log-prediction when `peaks` are closed: −Σ_{j∈peaks} g_cj,
    with g_cj = x_cj · ∂ŷ_c/∂x_cj (`surrogates.protocol.entry_gradients`)."""
    row, idx, g = entry_gradients(model, cells.atac, gene, cell_types_of(cells))
    closed = torch.zeros(cells.n_peaks, dtype=torch.bool, device=g.device)
    closed[torch.as_tensor(np.asarray(peaks, dtype=np.int64), device=g.device)] = True
    delta = torch.zeros(cells.n_cells, dtype=torch.float64, device=g.device)
    delta.index_add_(0, row.to(g.device), -(g * closed[idx.to(g.device)]).double())
    return delta.cpu().numpy()


def evaluate_selection(model, test, gene: str, peaks, truth=None) -> dict[str, float]:
    """All applicable metrics for closing `peaks` in the `test` cells (a MultiomeData view) of the explained
    `model` (surrogates/protocol.py); on a model whose best closure is known (the truth tier) also the optimum."""
    types = cell_types_of(test)
    all0 = model.predict(test.atac, cell_types=types).cpu().numpy()
    all1 = model.predict(test.atac, closed=peaks, cell_types=types).cpu().numpy()
    gi = model.gene_index(gene)
    y0, y1 = all0[:, gi], all1[:, gi]
    out = {"avg_delta": M.avg_delta(y0, y1), "rel_delta_pct": M.rel_delta_pct(y0, y1),
           "off_target_pct": M.off_target_pct(all0, all1, gi), "n_test_cells": len(y0),
           "first_order_rel_delta_pct": M.first_order_rel_delta_pct(first_order_delta(model, test, gene, peaks))}
    if truth is not None and gene in truth.genes:
        e0 = truth.expression(test, genes=[gene])[:, 0]
        e1 = truth.expression(test, closed=peaks, genes=[gene])[:, 0]
        # the peaks whose closure lowers the gene: a silencer (some worlds, datasets/worlds.py) is no regulator a
        # method should be credited for finding
        planted = np.setdiff1d(truth.planted_peaks(gene), truth.regulatory_peaks(gene)["silencer"])
        out["oracle_rel_delta_pct"] = M.oracle_rel_delta_pct(e0, e1)
        out["truth_recall"] = M.truth_recall(peaks, planted)
    known = capability(model, KnownOptimum)
    if known is not None and truth is not None and gene in truth.genes:
        out.update(_optimum(model, test, gene, peaks, known.best_closure(test, gene, len(peaks)), types, y0,
                            out["rel_delta_pct"], truth.units(gene)))
    out.update(_genomic(test, gene, np.asarray(peaks)))
    return out


def _optimum(model, test, gene: str, peaks, best, types, y0, rel: float, units) -> dict[str, float]:
    """The truth tier's scores: the exact optimum `best` of Rel Δ over closures of at most L = len(peaks) peaks on
    these test cells, evaluated through the same `predict` as the method's; the method's % of it; and which kinds of
    the gene's planted `units` (`SyntheticTruth.units`) the method's and the optimum's closures hold."""
    y_best = model.predict(test.atac, closed=best, genes=[gene], cell_types=types).cpu().numpy()[:, 0]
    optimum = M.optimum_rel_delta_pct(y0, y_best)
    return {"optimum_rel_delta_pct": optimum, "pct_of_optimum": M.pct_of_optimum(rel, optimum),
            **M.closure_kinds(best, units, prefix="optimum_"), **M.closure_kinds(peaks, units)}


def _genomic(data, gene: str, peaks: np.ndarray) -> dict[str, float]:
    """Chromosome / TSS context of the selection when coordinates exist (bench/scoring/genomic.py)."""
    g = data.genes.loc[gene]
    chroms = data.peaks["chrom"].to_numpy()[peaks].astype(str)
    gchrom = None if g["chrom"] is None or (isinstance(g["chrom"], float) and np.isnan(g["chrom"])) else str(g["chrom"])
    tss = float(g["tss"]) if g["tss"] is not None else float("nan")
    return {
        "frac_on_target_chrom": fraction_on_target_chrom(chroms, gchrom),
        "median_tss_distance": median_tss_distance(chroms, data.peaks["start"].to_numpy()[peaks],
                                                   data.peaks["end"].to_numpy()[peaks], gchrom, tss),
    }
