"""bench.scoring.genomic: hand-computed cases for the peak-location sanity metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.scoring.genomic import fraction_on_target_chrom, median_tss_distance

CHROMS = ["chr1", "chr2", "chr1", "chr1"]
STARTS = [100, 5_000, 1_000, 2_000]
ENDS = [600, 5_500, 1_500, 2_500]


def test_fraction_on_target_chrom():
    assert fraction_on_target_chrom(CHROMS, "chr1") == pytest.approx(0.75)
    assert fraction_on_target_chrom(CHROMS, "chr2") == pytest.approx(0.25)
    assert fraction_on_target_chrom(CHROMS, "chrX") == 0.0
    assert fraction_on_target_chrom(np.array(CHROMS, dtype=object), "chr1") == pytest.approx(0.75)


@pytest.mark.parametrize("chrom", [None, "", "None", float("nan")])
def test_fraction_unknown_chrom_is_nan(chrom):
    assert math.isnan(fraction_on_target_chrom(CHROMS, chrom))


def test_fraction_empty_selection_is_nan():
    assert math.isnan(fraction_on_target_chrom([], "chr1"))


def test_median_tss_distance_by_hand():
    # TSS 1200 on chr1: peak [100,600] → 600; [1000,1500] contains it → 0; [2000,2500] → 800; chr2 peak ignored.
    assert median_tss_distance(CHROMS, STARTS, ENDS, "chr1", 1200) == pytest.approx(600.0)
    # TSS on a peak edge counts as inside.
    assert median_tss_distance(["chr1"], [1000], [1500], "chr1", 1500) == 0.0
    # Only the chr2 peak counts for a chr2 gene; TSS 5 200 lies inside [5 000, 5 500].
    assert median_tss_distance(CHROMS, STARTS, ENDS, "chr2", 5_200) == 0.0
    # Even count: distances 300 ([100,600]) and 100 ([1000,1500]) from TSS 900 → median 200.
    assert median_tss_distance(["chr1", "chr1"], [100, 1_000], [600, 1_500], "chr1", 900) == pytest.approx(200.0)


def test_median_tss_distance_nan_cases():
    assert math.isnan(median_tss_distance(CHROMS, STARTS, ENDS, "chrX", 100))  # no peak on the chromosome
    assert math.isnan(median_tss_distance(CHROMS, STARTS, ENDS, None, 100))
    assert math.isnan(median_tss_distance(CHROMS, STARTS, ENDS, "chr1", float("nan")))
    assert math.isnan(median_tss_distance(CHROMS, STARTS, ENDS, "chr1", None))
