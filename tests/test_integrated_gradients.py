"""Integrated Gradients (captum, all-closed baseline): completeness, and credit for a saturated redundant pair that
first-order scores miss."""

import numpy as np
import pytest
import torch

from methods.input_x_gradient import InputXGradient
from methods.integrated_gradients import IntegratedGradients
from tests.hand_models import A, B, C, D, LINEAR_W, all_scores, cells_with_all_open, hand_model, linear_cells
from tests.hand_models import redundant_pair_model


def test_completeness_the_scores_add_up_to_the_change_from_closing_everything():
    m, d = redundant_pair_model(), cells_with_all_open()
    scores = all_scores(IntegratedGradients(n_steps=64), m, d, "target")
    x = torch.as_tensor(d.atac.toarray(), dtype=torch.float32)
    with torch.no_grad():
        drop = (m(x)[:, 0] - m(torch.zeros_like(x))[:, 0]).mean().item()
    assert scores.sum() == pytest.approx(drop, rel=1e-3)


def test_on_a_linear_model_it_equals_input_x_gradient():
    m, d = hand_model(LINEAR_W, bias=10.0), linear_cells()
    np.testing.assert_allclose(all_scores(IntegratedGradients(n_steps=8), m, d, "target"),
                               all_scores(InputXGradient(), m, d, "target"), atol=1e-5)


def test_credits_the_saturated_pair_that_input_x_gradient_misses():
    # at the cell (both members open) the pair's gradient is 5 · 0.03; along the path from all-closed it is 5 · 1
    # for the first half: IG gives each member ~2.6, the decoy C 1 and D 0.5
    m, d = redundant_pair_model(), cells_with_all_open()
    ig = IntegratedGradients(n_steps=64).explain(m, d, "target", 2)
    ixg = InputXGradient().explain(m, d, "target", 2)
    assert set(ig.peaks.tolist()) == {A, B}
    assert set(ixg.peaks.tolist()) == {C, D}
