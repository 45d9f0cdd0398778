"""Expected Gradients (Erion et al., 2021) via shap's `GradientExplainer`, with the other cell types as background.

Integrated Gradients averaged over baselines drawn from a background distribution instead of one fixed baseline:
for each explained training cell x_c of the gene's type,

    EG_cj = E_{x' ~ B, α ~ U(0,1)} [ (x_cj − x'_j) · ∂ŷ_gene/∂x_j (x' + α (x_c − x')) ],

estimated by shap's `GradientExplainer` (the implementation of expected gradients in shap) with `nsamples`
(baseline, α) draws per cell. The background B is the training cells of the *other* cell types (the harness passes
them as `background`; `max_background` of them, drawn with the method's seed): the question is which of this type's
open peaks account for the gene's expression here relative to elsewhere. The score of peak j is the mean over the
explained cells, S_j = mean_c EG_cj, and the top L peaks are returned; positive S_j means the peak's state in this
type (typically open where the background has it closed) raises the target.
shap seeds numpy's global generator inside `shap_values` (`rseed`); the method restores the global state after
each call, so nothing outside is disturbed, and derives `rseed` from its own seed.
Defaults: shap's nsamples = 200 draws per cell, `max_background` = 256 cells, all training cells explained
(`n_cells` caps them, seeded), cells in batches of 8. Each cell costs nsamples surrogate evaluations.
Paper: Erion, Janizek, Sturmfels, Lundberg & Lee, "Improving performance of deep learning models with axiomatic
attribution priors and expected gradients", Nature Machine Intelligence 2021.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from methods._aggregate import MeanAttribution
from methods.registry import register


class _Column(nn.Module):
    """shap wants a (rows × outputs) model: the target gene as one output column."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).unsqueeze(-1)


@register("expected-gradients", paper="Erion et al., Improving performance of deep learning models with axiomatic "
          "attribution priors and expected gradients", year=2021, kind="local→global", needs_gradients=True,
          code_url="https://github.com/shap/shap", ranking=True, needs_background=True, version=1)
class ExpectedGradients(MeanAttribution):
    """Expected Gradients (shap GradientExplainer) against the other cell types, mean over cells → top L."""

    def __init__(self, background=None, nsamples: int = 200, max_background: int = 256, n_cells: int | None = None,
                 batch_size: int = 8, **common):
        """background: training cells of the other cell types, a MultiomeData (passed by the harness).
        nsamples: (baseline, α) draws per explained cell (shap's default). Default: 200.
        max_background: background cells kept, a seeded subset. Default: 256.
        n_cells: explain at most this many training cells (seeded subset). Default: None (all).
        batch_size: cells per batch. Default: 8."""
        super().__init__(batch_size=batch_size, n_cells=n_cells, **common)
        if nsamples < 1 or max_background < 1:
            raise ValueError("nsamples and max_background must be ≥ 1")
        self.background, self.nsamples, self.max_background = background, nsamples, max_background

    @property
    def samples_per_cell(self) -> int:
        return self.nsamples

    def attribution(self, model):
        import shap

        if self.background is None or self.background.n_cells == 0:
            raise ValueError("expected-gradients needs background cells (the training cells of the other cell "
                             "types); the harness passes them as `background`")
        rng = np.random.default_rng(self.seed)
        bg = self.background.atac
        if bg.shape[0] > self.max_background:
            bg = bg[np.sort(rng.choice(bg.shape[0], size=self.max_background, replace=False))]
        device = model.model.device  # the explained model's (a TargetGene, methods/_aggregate.py)
        explainer = shap.GradientExplainer(_Column(model), torch.as_tensor(model.columns(bg).toarray(),
                                                                           dtype=torch.float32, device=device))
        seeds = iter(rng.integers(0, 2**31 - 1, size=1 << 20))

        def attribute(x: torch.Tensor) -> torch.Tensor:
            state = np.random.get_state()  # shap_values reseeds numpy's global generator
            try:
                phi = explainer.shap_values(x.detach(), nsamples=self.nsamples, rseed=int(next(seeds)))
            finally:
                np.random.set_state(state)
            phi = np.asarray(phi[0] if isinstance(phi, list) else phi)
            return torch.as_tensor(phi.reshape(x.shape), dtype=torch.float32, device=x.device)

        return attribute
