"""Input × Gradient = mean over cells of the signed x · ∂ŷ/∂x: the first-order suppression score of each open
peak, checked against hand-known and directly computed (torch.autograd) gradients."""

import numpy as np

from methods.base import Budget
from methods.input_x_gradient import InputXGradient
from methods.saliency import Saliency
from tests.hand_models import CLOSED, LINEAR_W, all_scores, autograd_gradients, hand_model, linear_cells
from tests.toy_models import STRONG, TARGET, toy_problem


def test_saliency_picks_a_closed_peak_with_a_large_gradient_and_input_x_gradient_does_not():
    # linear model: ∂ŷ/∂x_j = w_j everywhere, so S_j = w_j · (fraction of cells with j open); CLOSED is closed in
    # every cell (closing it changes nothing) and peak 8 has w < 0 (closing it would raise the target)
    m, d = hand_model(LINEAR_W, bias=10.0), linear_cells()
    x = d.atac.toarray()
    np.testing.assert_allclose(all_scores(InputXGradient(), m, d, "target"), LINEAR_W * x.mean(0), atol=1e-6)
    sal, ixg = (method.explain(m, d, "target", 3) for method in (Saliency(), InputXGradient()))
    assert sal.peaks[0] == CLOSED and 8 in sal.peaks
    assert set(ixg.peaks.tolist()) == {2, 5, 10}  # the open peaks whose closing lowers the target


def test_input_x_gradient_matches_autograd_on_a_trained_surrogate(one_torch_thread):
    toy = toy_problem()
    x, grad = autograd_gradients(toy.surrogate, toy.train, TARGET)
    e = InputXGradient(batch_size=16).explain(toy.surrogate, toy.train, TARGET, 5)
    expected = (x * grad).mean(0)
    np.testing.assert_allclose(e.scores, expected[e.peaks], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(e.peaks, np.argsort(-expected, kind="stable")[:5])
    assert e.peaks[0] == STRONG
    assert e.status == "ok" and e.info["cells"] == e.info["samples"] == toy.train.n_cells


def test_input_x_gradient_returns_the_partial_mean_when_the_budget_runs_out():
    m, d = hand_model(LINEAR_W, bias=10.0), linear_cells()
    e = InputXGradient(batch_size=4, budget=Budget(samples=5))
    scores = all_scores(e, m, d, "target")
    np.testing.assert_allclose(scores, LINEAR_W * d.atac[:8].toarray().mean(0), atol=1e-6)  # 2 batches of 4
    assert not np.allclose(scores, LINEAR_W * d.atac.toarray().mean(0))
    out = e.explain(m, d, "target", 3)
    assert out.status == "budget_exceeded" and out.info["cells"] == out.info["samples"] == 8
