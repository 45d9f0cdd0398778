"""Random: L distinct peaks drawn uniformly — the control that bounds the scale of every table (≈ 0 change).

Each job gets its own draw: the generator is seeded from (seed, cell type, gene, L) through
`np.random.SeedSequence`, with the strings hashed by `zlib.crc32` (stable across processes, unlike Python's salted
`hash()`). One draw per seed shared by every job would repeat the same subset in every cell of the table (at
quick scale, the same never-open peaks everywhere: 0.000 ± 0.000), so the control could not show the spread a
random selection really has; per-job draws give its Avg a real standard error. The same job still draws the same
subset on every run, so cached and recomputed results agree.
"""

from __future__ import annotations

import zlib

import numpy as np

from methods.base import Explainer, Explanation
from methods.registry import register


def job_seed(seed: int, cell_types: list[str], gene: str, L: int) -> np.random.SeedSequence:
    """Entropy [seed, L, crc32(gene), crc32(type) for each type in sorted order] for one job's draw."""
    return np.random.SeedSequence([seed, L, zlib.crc32(gene.encode()),
                                   *(zlib.crc32(ct.encode()) for ct in sorted(cell_types))])


@register("random", paper="control baseline", kind="control", is_baseline=True, version=1)
class RandomPeaks(Explainer):
    """Random: a seeded draw of L distinct peaks, one draw per (seed, cell type, gene, L)."""

    def explain(self, model, data, gene, L) -> Explanation:
        # `data` is one cell type's training view; with several types, all of them (sorted) key the draw
        cell_types = [str(ct) for ct in data.obs["cell_type"].unique()]
        rng = np.random.default_rng(job_seed(self.seed, cell_types, gene, L))
        peaks = rng.choice(data.n_peaks, size=L, replace=False)
        return Explanation(peaks=peaks, info={"samples": 0})
