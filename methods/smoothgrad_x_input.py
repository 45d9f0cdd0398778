"""SmoothGrad × input (Smilkov et al., 2017): the noise-averaged signed gradient times the clean input.

As `smoothgrad` (captum NoiseTunnel over Saliency, `n_samples` copies of each cell with N(0, σ²) noise), but with
signed gradients (abs=False), multiplied by the clean input and averaged over cells,

    S_j = mean_c x_cj · (1/n) Σ_k ∂ŷ_gene/∂x_j (x_c + ε_k),

so, like `input-x-gradient`, a positive score means closing the open peak lowers the target (closed peaks score
0); the top L peaks are returned. Defaults as `smoothgrad` (n_samples = 50, σ = 0.15), seeded the same way.
Paper: Smilkov et al., "SmoothGrad: removing noise by adding noise", arXiv:1706.03825, 2017 (the "×input" variant).
"""

from __future__ import annotations

from methods.registry import register
from methods.smoothgrad import SmoothGrad


@register("smoothgrad-x-input", paper="Smilkov et al., SmoothGrad: removing noise by adding noise", year=2017,
          kind="local→global", needs_gradients=True, code_url="https://captum.ai", ranking=True, version=1)
class SmoothGradXInput(SmoothGrad):
    """SmoothGrad × input: clean input times noise-averaged signed gradients, mean over cells → top L."""

    abs = False
    times_input = True
