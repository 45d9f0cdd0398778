import numpy as np
import pytest

from bench.scoring import metrics as M


def test_avg_and_rel_delta_hand_computed():
    y0 = np.log([10.0, 20.0])  # exp(ŷ) = 10, 20
    y1 = np.log([5.0, 20.0])
    assert M.avg_delta(y0, y1) == pytest.approx((-5 + 0) / 2)
    assert M.rel_delta_pct(y0, y1) == pytest.approx(100 * (-0.5 + 0) / 2)


def test_rel_delta_is_mean_of_ratios_not_ratio_of_means():
    y0, y1 = np.log([1.0, 100.0]), np.log([2.0, 50.0])
    assert M.rel_delta_pct(y0, y1) == pytest.approx(100 * (1.0 - 0.5) / 2)
    assert M.avg_delta(y0, y1) == pytest.approx((1 - 50) / 2)


def test_oracle_and_recall():
    assert M.oracle_rel_delta_pct(np.array([10.0, 4.0]), np.array([5.0, 4.0])) == pytest.approx(-25.0)
    assert M.truth_recall([1, 2, 3], [2, 3, 9, 10]) == pytest.approx(0.5)
    assert np.isnan(M.truth_recall([1], []))


def test_directions_are_declared_and_fixed():
    """Tables read 'best' from these flags: a flipped sign or direction must fail here."""
    assert M.METRICS["avg_delta"].higher_is_better is False
    assert M.METRICS["rel_delta_pct"].higher_is_better is False
    assert M.METRICS["oracle_rel_delta_pct"].higher_is_better is False
    assert M.METRICS["truth_recall"].higher_is_better is True
    assert M.METRICS["rel_delta_pct"].arrow == "↓"
    # suppression is negative
    assert M.rel_delta_pct(np.log([10.0]), np.log([1.0])) < 0


def test_duplicate_metric_registration_is_rejected():
    with pytest.raises(ValueError, match="twice"):
        M.metric("avg_delta", "x", False)(lambda a, b: 0.0)


def test_off_target_ignores_the_target_gene():
    y0 = np.log(np.array([[10.0, 10.0, 10.0], [10.0, 10.0, 10.0]]))
    y1 = np.log(np.array([[1.0, 5.0, 10.0], [1.0, 15.0, 10.0]]))
    # other genes: gene 1 mean rel = (−50 + 50)/2 = 0 → |0|; gene 2: 0
    assert M.off_target_pct(y0, y1, 0) == pytest.approx(0.0)
    y1[:, 2] = np.log(12.0)
    assert M.off_target_pct(y0, y1, 0) == pytest.approx((0 + 20) / 2)
    assert M.METRICS["off_target_pct"].higher_is_better is False
