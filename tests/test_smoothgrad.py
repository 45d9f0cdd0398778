"""SmoothGrad = mean over cells and noisy copies of |∂ŷ/∂x| (captum NoiseTunnel over Saliency): checked against
gradients known by hand, against Saliency as σ → 0, and for seeded, self-contained noise."""

import numpy as np
import pytest
from scipy.stats import norm

from methods.base import Budget
from methods.saliency import Saliency
from methods.smoothgrad import SmoothGrad
from tests.hand_models import CHROM, LINEAR_W, all_scores, cells, hand_model, linear_cells
from tests.hand_models import KINK, check_seeded, check_vanishing_noise_gives, kink_model
from tests.toy_models import TARGET, toy_problem


def test_smoothgrad_of_a_linear_model_is_the_absolute_weight_whatever_the_noise():
    m, d = hand_model(LINEAR_W, bias=10.0), linear_cells()
    np.testing.assert_allclose(all_scores(SmoothGrad(n_samples=8), m, d, "target"), np.abs(LINEAR_W), atol=1e-5)


@pytest.mark.parametrize("stdev", [0.25, 0.5])
def test_smoothgrad_averages_gradients_over_gaussian_noise_of_the_given_stdev(stdev):
    # at x = 0 the unit is off (gradient 0, so Saliency scores 0); with noise ε ~ N(0, σ²) the gradient is
    # 1[ε > 0.5], so SmoothGrad's score is P(ε > 0.5) = 1 − Φ(0.5/σ): 40 cells × 100 copies, sd ≤ 0.006
    m, d = kink_model(), cells(np.zeros((40, len(CHROM))))
    assert all_scores(Saliency(), m, d, "target")[KINK] == 0
    scores = all_scores(SmoothGrad(n_samples=100, stdev=stdev), m, d, "target")
    assert scores[KINK] == pytest.approx(1 - norm.cdf(0.5 / stdev), abs=0.025)
    assert np.all(np.delete(scores, KINK) == 0)


def test_smoothgrad_equals_saliency_as_the_noise_vanishes(one_torch_thread):
    check_vanishing_noise_gives(SmoothGrad, Saliency)


def test_smoothgrad_is_seeded_and_leaves_the_global_rng_alone(one_torch_thread):
    check_seeded(SmoothGrad)


def test_smoothgrad_counts_every_noisy_copy_against_the_budget():
    # 3 copies per cell, batches of 4 cells: 12 evaluations per batch, over 20 after the second batch
    m, d = hand_model(LINEAR_W, bias=10.0), linear_cells()
    e = SmoothGrad(n_samples=3, batch_size=4, budget=Budget(samples=20)).explain(m, d, "target", 3)
    assert e.status == "budget_exceeded" and e.info["cells"] == 8 and e.info["samples"] == 24
    full = SmoothGrad(n_samples=3).explain(m, d, "target", 3)
    assert full.status == "ok" and full.info["cells"] == d.n_cells and full.info["samples"] == 3 * d.n_cells


def test_smoothgrad_ranks_the_one_regulating_peak_of_the_toy_first(one_torch_thread):
    toy = toy_problem()
    e = SmoothGrad(n_samples=8).explain(toy.surrogate, toy.train, TARGET, 3)
    assert e.peaks[0] == toy.strong and e.status == "ok"
