"""methods/_shared.py: the peak ranking every explainer's answer goes through, hand-checked."""

import numpy as np
import scipy.sparse as sp

from methods._shared import open_frequency, rank_peaks, top_l


def test_rank_peaks_orders_by_score_then_open_frequency_then_index():
    scores = np.array([1.0, 3.0, 3.0, 2.0, 3.0, 0.0])
    freq = np.array([9, 1, 5, 9, 5, 9])
    # score 3 ties: peak 2 and 4 (freq 5) before 1 (freq 1); 2 before 4 by index; then 3 (2.0), 0 (1.0), 5 (0.0)
    assert rank_peaks(scores, tiebreak=freq).tolist() == [2, 4, 1, 3, 0, 5]
    assert rank_peaks(scores).tolist() == [1, 2, 4, 3, 0, 5]  # no tie-break: by index
    assert top_l(scores, 2, tiebreak=freq).tolist() == [2, 4]


def test_open_frequency_counts_cells_per_peak():
    X = sp.csr_matrix(np.array([[1, 0, 1], [1, 1, 0], [1, 0, 0]], dtype=np.uint8))
    np.testing.assert_array_equal(open_frequency(X), [3.0, 1.0, 1.0])
    assert open_frequency(X).dtype == np.float64  # uint8 sums would wrap at 256 cells

