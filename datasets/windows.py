"""Cis windows: which peaks lie near which gene's TSS, from coordinates alone (as any real data set has them).

The locus and screen surrogate styles read a gene's window (surrogates/), and the simulator's `locus` screen library
targets the peaks in its markers' windows (datasets/synthetic.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WINDOW_BP = 250_000  # ±250 kb: the usual cis window of peak-to-gene linkage (ArchR's peak2gene, Signac's LinkPeaks)


def window_pairs(peaks, genes, window: int = WINDOW_BP) -> tuple[np.ndarray, np.ndarray]:
    """(gene index, peak index) of every peak whose midpoint lies within `window` bp of a gene's TSS on its
    chromosome; sorted by gene."""
    mid = ((peaks["start"].to_numpy() + peaks["end"].to_numpy()) // 2).astype(np.int64)
    chrom = peaks["chrom"].astype(str).to_numpy()
    gene_idx, peak_idx = [], []
    for c in np.unique(chrom):
        cols = np.flatnonzero(chrom == c)
        order = np.argsort(mid[cols])
        cols, pos = cols[order], mid[cols][order]
        tss_all = pd.to_numeric(genes["tss"], errors="coerce").to_numpy()
        for g in np.flatnonzero((genes["chrom"].astype(str).to_numpy() == c) & np.isfinite(tss_all)):
            tss = int(tss_all[g])
            lo, hi = np.searchsorted(pos, tss - window), np.searchsorted(pos, tss + window, side="right")
            gene_idx.append(np.full(hi - lo, g)), peak_idx.append(cols[lo:hi])
    if not gene_idx:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    g, p = np.concatenate(gene_idx).astype(np.int64), np.concatenate(peak_idx).astype(np.int64)
    order = np.lexsort((p, g))
    return g[order], p[order]
