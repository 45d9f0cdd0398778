"""Expected Gradients (shap GradientExplainer against a background of other cells): exact on a linear model with a
closed background, finds the toy's regulating peak, and leaves numpy's global generator alone."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from methods.expected_gradients import ExpectedGradients
from methods.input_x_gradient import InputXGradient
from tests.hand_models import LINEAR_W, all_scores, hand_model, linear_cells
from tests.toy_models import TARGET, toy_problem


def closed(cells):
    """The same cells with every peak closed (a background under which EG = Input × Gradient on a linear model)."""
    return dataclasses.replace(cells, atac=sp.csr_matrix(cells.atac.shape, dtype=np.uint8))


def test_linear_model_with_a_closed_background_gives_input_x_gradient():
    # ∂ŷ/∂x = w everywhere on the path, and x − x' = x: EG_cj = w_j x_cj whatever the draws
    m, d = hand_model(LINEAR_W, bias=10.0), linear_cells()
    eg = all_scores(ExpectedGradients(background=closed(d), nsamples=16), m, d, "target")
    np.testing.assert_allclose(eg, all_scores(InputXGradient(), m, d, "target"), atol=1e-5)


def test_ranks_the_regulating_peak_first_and_is_seeded(one_torch_thread):
    toy = toy_problem()
    x = toy.test.atac.toarray()
    x[:, toy.strong] = 0  # elsewhere the regulating peak is closed
    background = dataclasses.replace(toy.test, atac=sp.csr_matrix(x))
    state = np.random.get_state()
    make = lambda seed: ExpectedGradients(background=background, nsamples=32, seed=seed)  # noqa: E731
    first, again = (make(0).explain(toy.surrogate, toy.train, TARGET, 3) for _ in range(2))
    assert first.peaks[0] == toy.strong
    np.testing.assert_array_equal(first.scores, again.scores)
    other = make(1).explain(toy.surrogate, toy.train, TARGET, 3)  # other background draws and path points
    assert not np.allclose(other.scores, first.scores, rtol=1e-4, atol=0)
    assert np.random.get_state()[1].tolist() == state[1].tolist()  # shap reseeds the global RNG; restored


def test_without_background_it_says_what_is_missing():
    m, d = hand_model(LINEAR_W, bias=10.0), linear_cells()
    with pytest.raises(ValueError, match="background cells"):
        ExpectedGradients().explain(m, d, "target", 3)
