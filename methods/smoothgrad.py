"""SmoothGrad (Smilkov et al., 2017) via captum's NoiseTunnel over Saliency, aggregated like Saliency.

Gradients are averaged over `n_samples` copies of each cell with Gaussian noise (σ = `stdev`, in units of the
0/1 input) added, then turned into suppression scores x · ⟨∂ŷ/∂x⟩ (see methods/aggregate.py) and averaged over
cells. captum draws its noise from torch's global generator, so it runs inside `torch.random.fork_rng` seeded
with the method's seed: reproducible, and nothing outside is disturbed.
"""

from __future__ import annotations

import torch
from captum.attr import NoiseTunnel, Saliency as CaptumSaliency

from methods.aggregate import TargetGene, suppression_scores
from methods.base import BudgetClock, Explainer, Explanation, top_l
from methods.registry import register


@register("smoothgrad", paper="Smilkov et al., SmoothGrad: removing noise by adding noise", year=2017,
          kind="local→global", needs_gradients=True, code_url="https://captum.ai")
class SmoothGrad(Explainer):
    """SmoothGrad: noise-averaged gradients × input over training cells → top L."""

    def __init__(self, n_samples: int = 50, stdev: float = 0.15, batch_size: int = 16, **common):
        """n_samples: noisy copies per cell. Default: 50. stdev: noise σ. Default: 0.15.
        batch_size: cells per batch (memory is batch × n_samples × peaks). Default: 16."""
        super().__init__(**common)
        self.n_samples, self.stdev, self.batch_size = n_samples, stdev, batch_size

    def explain(self, surrogate, data, gene, L) -> Explanation:
        clock = BudgetClock(self.budget)
        tunnel = NoiseTunnel(CaptumSaliency(TargetGene(surrogate, gene)))
        devices = [surrogate.device] if surrogate.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            scores, used, out_of_budget = suppression_scores(
                lambda x: tunnel.attribute(x, nt_type="smoothgrad", nt_samples=self.n_samples, stdevs=self.stdev,
                                           nt_samples_batch_size=self.n_samples, abs=False),
                data, clock, self.batch_size, samples_per_cell=self.n_samples, device=surrogate.device)
        peaks = top_l(scores, L)
        return Explanation(peaks=peaks, scores=scores[peaks], status="budget_exceeded" if out_of_budget else "ok",
                           info={"cells": used, "seconds": clock.seconds, "samples": clock.samples})
