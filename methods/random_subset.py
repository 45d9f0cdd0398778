"""Random: L distinct peaks drawn uniformly — the control that bounds the scale of every table (≈ 0 change)."""

from __future__ import annotations

import numpy as np

from methods.base import Explainer, Explanation
from methods.registry import register


@register("random", paper="control baseline", kind="control", is_baseline=True)
class RandomPeaks(Explainer):
    """Random: a seeded draw of L distinct peaks."""

    def explain(self, surrogate, data, gene, L) -> Explanation:
        rng = np.random.default_rng(self.seed)
        peaks = rng.choice(data.n_peaks, size=L, replace=False)
        return Explanation(peaks=peaks, info={"samples": 0})
