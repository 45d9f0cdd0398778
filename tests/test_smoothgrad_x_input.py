"""SmoothGrad × input = mean over cells of x ⊙ (noise-averaged signed gradient): checked against gradients known
by hand, against Input × Gradient as σ → 0, and for seeded noise."""

import numpy as np
import pytest
from scipy.stats import norm

from methods.input_x_gradient import InputXGradient
from methods.smoothgrad_x_input import SmoothGradXInput
from tests.hand_models import CHROM, LINEAR_W, all_scores, cells, hand_model, linear_cells
from tests.hand_models import KINK, check_seeded, check_vanishing_noise_gives, kink_model


def test_smoothgrad_x_input_of_a_linear_model_is_the_signed_weight_times_the_open_fraction():
    m, d = hand_model(LINEAR_W, bias=10.0), linear_cells()
    expected = LINEAR_W * d.atac.toarray().mean(0)  # signed: peak 8 (w < 0) scores below every closed peak
    np.testing.assert_allclose(all_scores(SmoothGradXInput(n_samples=8), m, d, "target"), expected, atol=1e-5)


def test_smoothgrad_x_input_multiplies_the_noise_averaged_gradient_by_the_clean_input():
    # KINK open in the first 30 cells: at x = 1 the noisy gradient is 1[1 + ε > 0.5], mean Φ(0.5/σ) (not the
    # clean gradient 1, which Input × Gradient gives), times x = 1; the 10 closed cells add 0 (x = 0)
    x = np.zeros((40, len(CHROM)))
    x[:30, KINK] = 1
    m, d = kink_model(), cells(x)
    scores = all_scores(SmoothGradXInput(n_samples=100, stdev=0.5), m, d, "target")
    assert scores[KINK] == pytest.approx(0.75 * norm.cdf(1.0), abs=0.025)
    assert all_scores(InputXGradient(), m, d, "target")[KINK] == pytest.approx(0.75)


def test_smoothgrad_x_input_equals_input_x_gradient_as_the_noise_vanishes(one_torch_thread):
    check_vanishing_noise_gives(SmoothGradXInput, InputXGradient)


def test_smoothgrad_x_input_is_seeded_and_leaves_the_global_rng_alone(one_torch_thread):
    check_seeded(SmoothGradXInput)
