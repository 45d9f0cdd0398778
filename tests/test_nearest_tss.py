"""nearest-tss control: hand-placed peaks around a TSS, open / never-open, other chromosomes, no annotation."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from datasets.data import MultiomeData
from methods import registry
from methods.nearest_tss import NearestTss, tss_gaps

# peak:          0       1        2       3       4       5        6 (chr2)
STARTS = np.array([0, 9_000, 10_200, 11_000, 30_000, 50_000, 10_000])
ENDS = STARTS + 500
CHROMS = ["chr1"] * 6 + ["chr2"]
TSS = 10_400  # inside peak 2 (10,200–10,700)
# gaps to the TSS: peak 0 9,900; 1 900 (10,400 − 9,500); 2 0; 3 600 (11,000 − 10,400); 4 19,600; 5 39,600


def data(open_cols, chrom="chr1", tss=TSS) -> MultiomeData:
    x = np.zeros((4, len(STARTS)), np.uint8)
    for c in open_cols:
        x[c % 4, c] = 1  # each listed peak open in one cell
    obs = pd.DataFrame({"cell_type": pd.Categorical(["A"] * 4), "split": ["train"] * 4},
                       index=[f"c{i}" for i in range(4)])
    peaks = pd.DataFrame({"chrom": CHROMS, "start": STARTS, "end": ENDS})
    genes = pd.DataFrame({"chrom": [chrom], "tss": [tss]}, index=["G"])
    return MultiomeData(sp.csr_matrix(x), np.zeros((4, 1), np.float32), obs, peaks, genes)


def test_gaps_by_hand():
    np.testing.assert_array_equal(tss_gaps(STARTS[:6], ENDS[:6], TSS), [9_900, 900, 0, 600, 19_600, 39_600])


def test_takes_the_nearest_open_peaks_in_distance_order():
    e = NearestTss().explain(None, data(range(7)), "G", 4)
    e.check(len(STARTS), 4)
    assert e.status == "ok" and "effort" not in e.info
    assert e.peaks.tolist() == [2, 3, 1, 0]  # gaps 0, 600, 900, 9,900; chr2's peak 6 is never taken


def test_never_open_peaks_are_skipped_then_fill_with_a_flag():
    e = NearestTss().explain(None, data([3, 4]), "G", 3)  # only peaks 3 and 4 are open anywhere
    assert e.peaks[:2].tolist() == [3, 4]
    assert e.peaks[2] == 2  # the nearest never-open peak on the chromosome fills the last slot
    assert e.info["effort"] == ["filled"] and e.status == "ok"


def test_a_gene_without_coordinates_has_no_estimate():
    e = NearestTss().explain(None, data(range(7), chrom=None, tss=np.nan), "G", 2)
    assert e.status == "no_estimate" and e.peaks.size == 0 and "TSS" in e.info["no_estimate_reason"]


def test_registered_as_a_control_ranking():
    spec = registry.get("nearest-tss")
    assert spec.is_baseline and spec.ranking and not spec.needs_gradients
    # a ranking: the answer for L is a prefix of the answer for a larger L
    d = data(range(7))
    assert NearestTss().explain(None, d, "G", 2).peaks.tolist() == NearestTss().explain(None, d, "G", 5).peaks[:2].tolist()


@pytest.mark.parametrize("L", [1, 7])
def test_any_L_up_to_every_peak(L):
    NearestTss().explain(None, data(range(7)), "G", L).check(len(STARTS), L)
