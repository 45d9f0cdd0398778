"""Nearest TSS: the L peaks closest to the gene's transcription start site — a genomic-distance control.

It uses no model at all, only the peak and gene coordinates: among the peaks on the gene's chromosome that are open
in at least one of the explained training cells (a peak never open there changes no prediction when closed), take
the L with the smallest gap to the TSS,

    d_j = max(start_j − tss, tss − end_j, 0)      (0 when the TSS lies inside the peak; bench/scoring/genomic.py),

ties by peak index. It is the locality prior on its own: cis-regulatory elements tend to sit near their gene (the
simulator plants a gene's enhancers within 250 kb of its TSS), so any method's score on the truth tier can be read
against how much of it this control already reaches. Controls are ranked, but never the best (`is_baseline`).

When fewer than L peaks on the chromosome are open in some cell, the nearest never-open peaks on the chromosome fill
the rest, then the other chromosomes' open peaks by open frequency; the job is flagged `filled`. A gene without
a known chromosome and TSS (real data without annotation) has no estimate: any other ranking would not be this
control.
"""

from __future__ import annotations

import numpy as np

from methods._shared import open_frequency
from methods.base import Explainer, Explanation
from methods.registry import register


def tss_gaps(starts: np.ndarray, ends: np.ndarray, tss: float) -> np.ndarray:
    """d_j = max(start_j − tss, tss − end_j, 0) for every peak (bp)."""
    starts, ends = np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64)
    return np.maximum.reduce([starts - tss, tss - ends, np.zeros_like(starts)])


@register("nearest-tss", paper="control: the L open peaks nearest the gene's TSS", kind="control",
          is_baseline=True, ranking=True, version=1)
class NearestTss(Explainer):
    """Nearest TSS: the L peaks open in some training cell that lie closest to the gene's TSS (no model)."""

    def explain(self, model, data, gene, L) -> Explanation:
        info = {"samples": 0}
        row = data.genes.loc[gene] if gene in data.genes.index else None
        chrom, tss = (None, np.nan) if row is None else (row.get("chrom"), row.get("tss"))
        if chrom is None or chrom != chrom or not np.isfinite(float(tss)):
            return Explanation.no_estimate({**info, "no_estimate_reason": f"{gene} has no known chromosome and TSS "
                                                                          "in the data's gene table"})
        peaks = data.peaks
        gap = tss_gaps(peaks["start"].to_numpy(), peaks["end"].to_numpy(), float(tss))
        freq = open_frequency(data.atac)
        on_chrom = peaks["chrom"].astype(str).to_numpy() == str(chrom)
        # key order: on the chromosome and open first, then on the chromosome (never open), then elsewhere by open
        # frequency; within each, the nearest (or most open) first, ties by index
        tier = np.where(on_chrom & (freq > 0), 0, np.where(on_chrom, 1, 2))
        distance = np.where(tier < 2, gap, -freq)
        order = np.lexsort((np.arange(len(gap)), distance, tier))
        chosen = order[:L]
        expl = Explanation(peaks=chosen, scores=-distance[chosen],
                           info={**info, "chromosome": str(chrom), "open_on_chromosome": int((tier == 0).sum()),
                                 "max_gap_bp": float(gap[chosen][tier[chosen] == 0].max())
                                 if (tier[chosen] == 0).any() else None})
        return expl.flag("filled") if (tier[chosen] > 0).any() else expl
