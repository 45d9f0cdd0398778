"""Local gradient attributions → one global ranking of peaks, shared by the gradient explainers.

Every local→global gradient explainer scores peak j by the mean over the training cells c of the gene's type of
one per-cell attribution A_cj (captum: |∂ŷ/∂x_cj| for Saliency, x_cj · ∂ŷ/∂x_cj for InputXGradient, their
noise-averaged SmoothGrad forms) and returns the top L peaks. For binary ATAC and the closing perturbation p = 0,
the first-order change of the target when peak j is closed in cell c is
    ∂ŷ/∂x_cj · (p − x_cj) = −∂ŷ/∂x_cj · x_cj,
so the "× input" scores are first-order *suppression* scores (closed peaks contribute 0); the plain gradient
scores rank sensitivity, open or closed.
"""

from __future__ import annotations

import abc
import contextlib
from typing import Callable, ClassVar

import numpy as np
import torch
from torch import nn

from methods._shared import top_l
from methods.base import BudgetClock, Explainer, Explanation
from surrogates.protocol import cell_types_of, local_output, read_peaks

Attribution = Callable[[torch.Tensor], torch.Tensor]


class TargetGene(nn.Module):
    """Dense (cells × peaks) → the explained model's log-expression of one gene in one cell type (the protocol's
    differentiable `dense` path, surrogates/protocol.py); the module captum attributes. With `peaks` (the peaks
    the gene's output can read, `read_peaks`), x holds those columns only (`local_output`): every other peak's
    attribution is 0 for any gradient method, so captum differentiates a few dozen columns instead of every peak."""

    def __init__(self, model, gene: str, cell_type: str | None = None, peaks: np.ndarray | None = None):
        super().__init__()
        self.model, self.gene, self.cell_type, self.peaks = model, gene, cell_type, peaks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.peaks is not None:
            return local_output(self.model, x, self.peaks, self.gene, self.cell_type)
        return self.model.dense(x, genes=[self.gene], cell_types=self.cell_type)[:, 0]

    def columns(self, atac):
        """The columns of CSR rows `atac` that `forward` takes (all, or `peaks`)."""
        return atac if self.peaks is None else atac[:, self.peaks]


def mean_attribution(attribution: Callable[[str], Attribution], data, clock: BudgetClock, batch_size: int, *,
                     times_input: bool = False, samples_per_cell: int = 1, device=None,
                     peaks: np.ndarray | None = None) -> tuple[np.ndarray, int, bool]:
    """Mean over cells of attribute(x) (or of attribute(x) ⊙ x with `times_input`), for dense batches of cells
    (O(batch × peaks) memory) of one cell type at a time (`attribution(cell_type)` builds the attribution of that
    type's model function; the harness explains one type, so there is one). Each batch costs `samples_per_cell`
    model evaluations per cell on `clock`.

    With `peaks`, the attribution takes and returns those columns only (the others score 0).
    Returns (per-peak scores, cells used, whether the budget ran out first: then the mean over the cells used)."""
    total = torch.zeros(data.n_peaks if peaks is None else len(peaks), dtype=torch.float64)
    used = 0
    types = cell_types_of(data)
    for cell_type in dict.fromkeys(types):
        rows = np.flatnonzero(types == cell_type)
        attribute = attribution(cell_type)
        for start in range(0, rows.size, batch_size):
            if clock.exhausted():
                return _scatter(total / max(1, used), peaks, data.n_peaks), used, True
            part = rows[start:start + batch_size]
            atac = data.atac[part] if peaks is None else data.atac[part][:, peaks]
            x = torch.as_tensor(atac.toarray(), dtype=torch.float32, device=device)
            attr = attribute(x.requires_grad_(True)).detach()
            if times_input:
                attr = attr * x.detach()
            total += attr.sum(0).double().cpu()
            used += x.shape[0]
            clock.spend(x.shape[0] * samples_per_cell)
    return _scatter(total / max(1, used), peaks, data.n_peaks), used, False


def _scatter(scores: torch.Tensor, peaks: np.ndarray | None, n_peaks: int) -> np.ndarray:
    """Per-peak scores over all `n_peaks` from scores over `peaks` (None: already over all), 0 elsewhere."""
    if peaks is None:
        return scores.numpy()
    out = np.zeros(n_peaks, dtype=np.float64)
    out[peaks] = scores.numpy()
    return out


class MeanAttribution(Explainer):
    """Base of the local→global gradient explainers: mean per-cell attribution over the training cells → top L.

    A subclass builds its captum attribution in `attribution`; `times_input` multiplies it by the clean input,
    `samples_per_cell` is what one cell costs, and `randomness` wraps the run (for seeded noise)."""

    times_input: ClassVar[bool] = False
    # Whether a model's declared readable peaks (`read_peaks`) narrow the dense batches to those columns: every
    # other peak's attribution is 0, so the scores are the same. A method that draws noise per peak (SmoothGrad)
    # keeps every column: its noise on the read peaks would otherwise come from another random stream.
    narrows: ClassVar[bool] = True

    def __init__(self, batch_size: int = 64, n_cells: int | None = None, **common):
        """batch_size: cells per dense gradient batch (memory O(batch × peaks)). Default: 64.
        n_cells: average over at most this many training cells, a seeded subset (the paper profile caps the
        many-sample methods this way: a cell costs `samples_per_cell` dense passes, ~4 ms each at paper scale).
        Default: None (all)."""
        super().__init__(**common)
        if n_cells is not None and n_cells < 1:
            raise ValueError("n_cells must be ≥ 1 or None (all training cells)")
        self.batch_size, self.n_cells = batch_size, n_cells

    @abc.abstractmethod
    def attribution(self, model: TargetGene) -> Attribution:
        """The per-cell attribution of `model` (dense cells × peaks → cells × peaks)."""

    @property
    def samples_per_cell(self) -> int:
        return 1

    def randomness(self, device: torch.device) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def cells_to_explain(self, data):
        """The cells whose attributions are averaged: all training cells of the type, or a seeded subset of
        `n_cells` of them."""
        if self.n_cells is None or data.n_cells <= self.n_cells:
            return data
        rng = np.random.default_rng(self.seed)
        return data.subset(np.sort(rng.choice(data.n_cells, size=self.n_cells, replace=False)))

    def explain(self, model, data, gene, L) -> Explanation:
        clock = BudgetClock(self.budget)
        peaks = read_peaks(model, gene) if self.narrows else None
        with self.randomness(model.device):
            scores, used, out_of_budget = mean_attribution(
                lambda cell_type: self.attribution(TargetGene(model, gene, cell_type, peaks)),
                self.cells_to_explain(data), clock, self.batch_size, times_input=self.times_input,
                samples_per_cell=self.samples_per_cell, device=model.device, peaks=peaks)
        info = {"cells": used, "seconds": clock.seconds, "samples": clock.samples}
        if used == 0:  # all-zero scores would return peaks 0..L-1 as if they were a ranking
            return Explanation.no_estimate({**info, "no_estimate_reason": "no cell attributed within the budget"})
        peaks = top_l(scores, L)
        expl = Explanation(peaks=peaks, scores=scores[peaks], status=clock.stop_status() if out_of_budget else "ok",
                           info=info)
        return expl.flag("fewer_cells") if used < data.n_cells else expl  # the default averages every cell
