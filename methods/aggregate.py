"""Local gradient attributions → one global ranking of peaks, shared by the gradient explainers.

For binary ATAC and the closing perturbation p = 0, the first-order change of the target when peak j is closed in
cell c is  ∂ŷ/∂x_cj · (p − x_cj) = −∂ŷ/∂x_cj · x_cj.  The *suppression score* of a peak is its mean over the
training cells of the gene's type of  ∂ŷ/∂x_cj · x_cj  (how much closing it would lower the target): closed peaks
contribute 0, since closing them changes nothing. The global ranking is the top L scores.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from methods.base import BudgetClock


class TargetGene(nn.Module):
    """Dense (cells × peaks) → predicted log-expression of one gene; the module captum attributes."""

    def __init__(self, surrogate, gene: str):
        super().__init__()
        self.surrogate = surrogate
        self.gi = surrogate.gene_index(gene)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.surrogate(x)[:, self.gi]


def suppression_scores(attribute: Callable[[torch.Tensor], torch.Tensor], data, clock: BudgetClock,
                       batch_size: int, samples_per_cell: int = 1, device=None) -> tuple[np.ndarray, int, bool]:
    """Mean over cells of attribution × x for dense batches of cells (O(batch × peaks) memory).

    Returns (scores, cells used, whether the budget ran out first)."""
    total = torch.zeros(data.n_peaks, dtype=torch.float64)
    used = 0
    for start in range(0, data.n_cells, batch_size):
        if clock.exhausted():
            return (total / max(1, used)).numpy(), used, True
        x = torch.as_tensor(data.atac[start:start + batch_size].toarray(), dtype=torch.float32, device=device)
        x.requires_grad_(True)
        grad = attribute(x)
        total += (grad * x).detach().sum(0).double().cpu()
        used += x.shape[0]
        clock.spend(x.shape[0] * samples_per_cell)
    return (total / max(1, used)).numpy(), used, False
