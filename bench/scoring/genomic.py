"""Genomic sanity context for an explanation: where the selected peaks sit relative to the target gene.

Neither number is "better": real regulation is mostly cis (near the gene) but GRIDS-style explanations may
legitimately pick distal or trans peaks. They are reported beside Avg Δ so a reader can judge plausibility.
"""

from __future__ import annotations

import numpy as np


def _known(value) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return value not in ("", "None", "nan", "NaN")
    return bool(np.isfinite(value))


def fraction_on_target_chrom(peak_chroms, gene_chrom: str | None) -> float:
    """Fraction of the selected peaks on the target gene's chromosome.

    f = |{j ∈ r : chrom(j) = chrom(gene)}| / |r|.  Range [0, 1]; no direction (sanity context).
    NaN when the gene's chromosome is unknown or no peak is selected.
    """
    chroms = np.asarray(peak_chroms, dtype=str)
    if not _known(gene_chrom) or chroms.size == 0:
        return float("nan")
    return float(np.mean(chroms == str(gene_chrom)))


def median_tss_distance(peak_chroms, peak_starts, peak_ends, gene_chrom: str | None, gene_tss) -> float:
    """Median distance (bp) from the gene's TSS to the selected peaks on its chromosome.

    d_j = max(start_j − tss, tss − end_j, 0): the gap to the nearest peak edge, 0 when the TSS lies inside the
    peak (start ≤ tss ≤ end). Median over the selected peaks on the gene's chromosome. Range [0, ∞) bp; no
    direction (sanity context). NaN when the chromosome or TSS is unknown, or no selected peak is on it.
    """
    if not _known(gene_chrom) or not _known(gene_tss):
        return float("nan")
    on = np.asarray(peak_chroms, dtype=str) == str(gene_chrom)
    if not on.any():
        return float("nan")
    starts = np.asarray(peak_starts, dtype=float)[on]
    ends = np.asarray(peak_ends, dtype=float)[on]
    tss = float(gene_tss)
    return float(np.median(np.maximum.reduce([starts - tss, tss - ends, np.zeros_like(starts)])))
