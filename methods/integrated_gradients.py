"""Integrated Gradients (Sundararajan et al., 2017) via captum, from the all-closed baseline.

For each training cell x_c of the gene's type, captum `IntegratedGradients` with baseline x' = 0 (every peak
closed) integrates the target's gradient along the straight path from x' to x_c,

    IG_cj = (x_cj − 0) · ∫₀¹ ∂ŷ_gene/∂x_j (α x_c) dα      (Riemann / Gauss–Legendre over `n_steps` points),

and the score of peak j is its mean over cells, S_j = mean_c IG_cj; the top L peaks are returned. IG satisfies
completeness, Σ_j IG_cj = ŷ(x_c) − ŷ(0): the attributions of a cell add up to the change from closing *every* peak,
so a peak whose single-closure gradient is flat because a redundant partner is open (saturation: the failure mode
of Saliency and Input × Gradient here) still gets credit along the path. Closed peaks score 0 (x_cj = 0); positive
S_j means opening the peak raises the target, so closing it lowers it.
Defaults: captum's n_steps = 50 and method "gausslegendre"; cells in batches of 4 (memory is batch × n_steps ×
peaks floats: 4 × 50 × 127,219 ≈ 100 MB at paper scale). Each cell costs n_steps surrogate evaluations.
Paper: Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.
"""

from __future__ import annotations

from captum.attr import IntegratedGradients as CaptumIntegratedGradients

from methods._aggregate import MeanAttribution
from methods.registry import register


@register("integrated-gradients", paper="Sundararajan et al., Axiomatic Attribution for Deep Networks", year=2017,
          kind="local→global", needs_gradients=True, code_url="https://captum.ai", ranking=True, version=1)
class IntegratedGradients(MeanAttribution):
    """Integrated Gradients from the all-closed baseline (captum), mean over training cells → top L."""

    def __init__(self, n_steps: int = 50, method: str = "gausslegendre", batch_size: int = 4, **common):
        """n_steps: points on the path from the all-closed baseline to the cell (captum's default). Default: 50.
        method: captum's integral approximation. Default: "gausslegendre".
        batch_size: cells per batch (memory is batch × n_steps × peaks). Default: 4."""
        super().__init__(batch_size=batch_size, **common)
        if n_steps < 1:
            raise ValueError("n_steps must be ≥ 1")
        self.n_steps, self.method = n_steps, method

    @property
    def samples_per_cell(self) -> int:
        return self.n_steps

    def attribution(self, model):
        ig = CaptumIntegratedGradients(model)
        return lambda x: ig.attribute(x, baselines=0.0, n_steps=self.n_steps, method=self.method)
