"""Saliency (Simonyan et al., 2014) via captum: input gradients of the target gene, aggregated to a global ranking.

Each training cell's gradient ∂ŷ_gene/∂x (captum `Saliency`, signed) is turned into a suppression score
x · ∂ŷ/∂x (the first-order drop when an open peak is closed, see methods/aggregate.py), averaged over cells;
the top L peaks are returned.
"""

from __future__ import annotations

import numpy as np
from captum.attr import Saliency as CaptumSaliency

from methods.aggregate import TargetGene, suppression_scores
from methods.base import BudgetClock, Explainer, Explanation, top_l
from methods.registry import register


@register("saliency", paper="Simonyan et al., Deep Inside Convolutional Networks", year=2014,
          kind="local→global", needs_gradients=True, code_url="https://captum.ai")
class Saliency(Explainer):
    """Saliency: mean gradient × input over training cells → top L."""

    def __init__(self, batch_size: int = 64, **common):
        """batch_size: cells per dense gradient batch. Default: 64."""
        super().__init__(**common)
        self.batch_size = batch_size

    def explain(self, surrogate, data, gene, L) -> Explanation:
        clock = BudgetClock(self.budget)
        saliency = CaptumSaliency(TargetGene(surrogate, gene))
        scores, used, out_of_budget = suppression_scores(
            lambda x: saliency.attribute(x, abs=False), data, clock, self.batch_size, device=surrogate.device)
        peaks = top_l(scores, L)
        return Explanation(peaks=peaks, scores=scores[peaks], status="budget_exceeded" if out_of_budget else "ok",
                           info={"cells": used, "seconds": clock.seconds, "samples": clock.samples})
