"""Saliency = mean over cells of |∂ŷ/∂x| for every peak, open or closed, checked against gradients taken directly
with torch.autograd and against a hand-built surrogate whose gradients are known exactly."""

import numpy as np
import pytest

from methods.base import Budget
from methods.saliency import Saliency
from tests.toy_models import STRONG, TARGET, toy_problem
from tests.hand_models import CLOSED, LINEAR_W, all_scores, autograd_gradients, hand_model, linear_cells


def test_saliency_is_the_mean_absolute_gradient_of_a_hand_built_linear_model():
    # linear in x (the ReLU unit stays above 0): ∂ŷ/∂x_j = w_j in every cell, open or closed, so S_j = |w_j|
    m, d = hand_model(LINEAR_W, bias=10.0), linear_cells()
    np.testing.assert_allclose(all_scores(Saliency(), m, d, "target"), np.abs(LINEAR_W), atol=1e-6)
    e = Saliency().explain(m, d, "target", 3)
    assert e.peaks.tolist() == [CLOSED, 8, 2]  # a closed peak and a negative one rank by |gradient|


def test_saliency_matches_autograd_on_a_trained_surrogate(one_torch_thread):
    toy = toy_problem()
    _, grad = autograd_gradients(toy.surrogate, toy.train, TARGET)
    e = Saliency(batch_size=16).explain(toy.surrogate, toy.train, TARGET, 5)
    expected = np.abs(grad).mean(0)
    np.testing.assert_allclose(e.scores, expected[e.peaks], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(e.peaks, np.argsort(-expected, kind="stable")[:5])
    assert e.peaks[0] == STRONG
    assert e.status == "ok" and e.info["cells"] == e.info["samples"] == toy.train.n_cells
    assert set(e.info) == {"cells", "seconds", "samples"}


def test_saliency_returns_the_partial_mean_when_the_budget_runs_out(one_torch_thread):
    # batches of 4 cells: the clock passes 5 evaluations after the second batch, so 8 cells are averaged
    toy = toy_problem()
    e = Saliency(batch_size=4, budget=Budget(samples=5)).explain(toy.surrogate, toy.train, TARGET, 5)
    _, grad = autograd_gradients(toy.surrogate, toy.train, TARGET, n_cells=8)
    assert e.status == "budget_exceeded" and e.info["cells"] == e.info["samples"] == 8
    np.testing.assert_allclose(e.scores, np.abs(grad).mean(0)[e.peaks], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_saliency_does_not_depend_on_the_batch_size(batch_size):
    m, d = hand_model(LINEAR_W, bias=0.0), linear_cells()  # bias 0: the ReLU kink is crossed in some cells
    _, grad = autograd_gradients(m, d, "target")
    np.testing.assert_allclose(all_scores(Saliency(batch_size=batch_size), m, d, "target"), np.abs(grad).mean(0),
                               atol=1e-6)


def test_no_cell_within_the_budget_is_no_estimate(one_torch_thread):
    """All-zero scores would return peaks 0..L-1 as if ranked: without one attributed cell there is no answer."""
    toy = toy_problem()
    e = Saliency(budget=Budget(seconds=0)).explain(toy.surrogate, toy.train, TARGET, 5)
    e.check(toy.surrogate.n_peaks, 5)
    assert e.status == "no_estimate" and e.peaks.size == 0 and e.info["cells"] == 0


def test_saliency_ranks_the_one_regulating_peak_of_the_toy_first(one_torch_thread):
    toy = toy_problem()
    e = Saliency().explain(toy.surrogate, toy.train, TARGET, 3)
    assert e.peaks[0] == STRONG and e.status == "ok"


def test_n_cells_averages_a_seeded_subset_of_the_cells(one_torch_thread):
    """`n_cells` (MeanAttribution, used by the paper profile) averages the same seeded subset every time, the mean
    over exactly those cells; more than there are is every cell; fewer than 1 is an error."""
    toy = toy_problem()
    _, grad = autograd_gradients(toy.surrogate, toy.train, TARGET)
    e = Saliency(n_cells=7, seed=3).explain(toy.surrogate, toy.train, TARGET, 5)
    subset = np.sort(np.random.default_rng(3).choice(toy.train.n_cells, size=7, replace=False))
    np.testing.assert_allclose(e.scores, np.abs(grad[subset]).mean(0)[e.peaks], rtol=1e-5, atol=1e-7)
    assert e.info["cells"] == 7
    again = Saliency(n_cells=7, seed=3).explain(toy.surrogate, toy.train, TARGET, 5)
    np.testing.assert_array_equal(again.scores, e.scores)
    every = Saliency(n_cells=10_000).explain(toy.surrogate, toy.train, TARGET, 5)
    assert every.info["cells"] == toy.train.n_cells
    with pytest.raises(ValueError, match="n_cells"):
        Saliency(n_cells=0)
