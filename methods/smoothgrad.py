"""SmoothGrad (Smilkov et al., 2017) via captum's NoiseTunnel over Saliency: noise-averaged absolute gradients.

Each training cell x_c of the gene's type is copied `n_samples` times with Gaussian noise ε ~ N(0, σ²) (σ =
`stdev`, in units of the 0/1 input) added to every peak; captum `Saliency` (abs=True) is averaged over the copies
and then over cells,

    S_j = mean_c (1/n) Σ_k |∂ŷ_gene/∂x_j (x_c + ε_k)|,

for every peak, open or closed, and the top L peaks are returned (`smoothgrad-x-input` is the ×input variant).
Defaults: n_samples = 50 and σ = 0.15 (the paper's 10–20 % noise level on a 0/1 input range; it found ~50 samples
enough). captum draws its noise from torch's global generator, so it runs inside `torch.random.fork_rng` seeded
with the method's seed: reproducible, and nothing outside is disturbed.
Paper: Smilkov, Thorat, Kim, Viégas & Wattenberg, "SmoothGrad: removing noise by adding noise", arXiv:1706.03825.
"""

from __future__ import annotations

from captum.attr import NoiseTunnel, Saliency as CaptumSaliency

from methods._aggregate import MeanAttribution
from methods._shared import seeded_torch_rng
from methods.registry import register


@register("smoothgrad", paper="Smilkov et al., SmoothGrad: removing noise by adding noise", year=2017,
          kind="local→global", needs_gradients=True, code_url="https://captum.ai", ranking=True, version=1)
class SmoothGrad(MeanAttribution):
    """SmoothGrad: noise-averaged absolute gradients over training cells, all peaks → top L."""

    abs = True  # captum Saliency's `abs`: |gradient| per noisy copy
    narrows = False  # noise on every peak, whatever the model reads: the same random stream on every model

    def __init__(self, n_samples: int = 50, stdev: float = 0.15, batch_size: int = 16, **common):
        """n_samples: noisy copies per cell. Default: 50.
        stdev: noise σ, in units of the 0/1 accessibility. Default: 0.15.
        batch_size: cells per batch (memory is batch × n_samples × peaks). Default: 16."""
        super().__init__(batch_size=batch_size, **common)
        self.n_samples, self.stdev = n_samples, stdev

    @property
    def samples_per_cell(self) -> int:
        return self.n_samples

    def randomness(self, device):
        return seeded_torch_rng(self.seed, device)

    def attribution(self, model):
        tunnel = NoiseTunnel(CaptumSaliency(model))
        return lambda x: tunnel.attribute(x, nt_type="smoothgrad", nt_samples=self.n_samples, stdevs=self.stdev,
                                          nt_samples_batch_size=self.n_samples, abs=self.abs)
