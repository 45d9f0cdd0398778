"""LIME (lime.lime_base.LimeBase) on a toy surrogate where one peak drives the target gene."""

from __future__ import annotations

import numpy as np
import pytest

from methods.base import Budget
from methods.lime_method import Lime, exponential_kernel
from tests.toy_models import STRONG, TARGET, toy_problem


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_kernel_is_the_lime_text_kernel_on_the_cosine_distance():
    # lime_text weighs a neighbour by its kernel (width 25) of 100 × the cosine distance: the same weights as ours
    # (width 0.25) on the plain cosine distance, the equivalence the module docstring relies on
    from lime.lime_text import LimeTextExplainer

    d = np.linspace(0.0, 1.0, 11)
    text_kernel = LimeTextExplainer(kernel_width=25).base.kernel_fn
    np.testing.assert_allclose(exponential_kernel(0.25)(d), text_kernel(100 * d), rtol=1e-12)


@pytest.mark.parametrize("aggregate", ["submodular", "importance"])
def test_ranks_the_regulating_peak_first(aggregate):
    p = toy_problem()
    e = Lime(aggregate=aggregate).explain(p.surrogate, p.train, TARGET, 3)
    e.check(p.surrogate.n_peaks, 3)
    assert e.status == "ok"
    assert e.peaks[0] == STRONG
    assert e.info["cells_explained"] == 32 and e.info["samples"] == 32 * 1024


def test_neighbourhood_labels_match_sparse_predictions():
    """The first-layer shortcut gives the same labels as closing the peaks through `surrogate.predict`, and so
    does the generic path (each neighbour a sparse row of `predict`)."""
    from surrogates.protocol import without_fast_paths

    p = toy_problem()
    s, X = p.surrogate, p.train.atac
    lime = Lime(n_samples=8)
    open_peaks = X.indices[X.indptr[0]:X.indptr[1]].astype(np.int64)
    for model in (s, without_fast_paths(s)):
        Z, dist, y = lime._neighbourhood(model, s.gene_index(TARGET), X[0], "A", open_peaks,
                                         np.random.default_rng(0))
        assert (Z[0] == 1).all() and dist[0] == pytest.approx(0.0)
        for z, label in zip(Z, y):
            closed = open_peaks[z == 0]
            ref = s.predict(X[0], closed=closed if closed.size else None, genes=[TARGET])[0, 0]
            assert label == pytest.approx(float(ref), abs=1e-5)


def test_budget_exhaustion_returns_valid_peaks():
    p = toy_problem()
    e = Lime(budget=Budget(seconds=0)).explain(p.surrogate, p.train, TARGET, 10)
    e.check(p.surrogate.n_peaks, 10)
    assert e.status == "no_estimate" and e.peaks.size == 0 and e.info["cells_explained"] == 0
    e = Lime(budget=Budget(samples=2000)).explain(p.surrogate, p.train, TARGET, 10)
    e.check(p.surrogate.n_peaks, 10)
    assert e.status == "budget_exceeded" and 1 <= e.info["cells_explained"] < 32


def test_seeded_and_deterministic():
    p = toy_problem()
    a = Lime(n_cells=4, seed=1).explain(p.surrogate, p.train, TARGET, 5)
    b = Lime(n_cells=4, seed=1).explain(p.surrogate, p.train, TARGET, 5)
    np.testing.assert_array_equal(a.peaks, b.peaks)
    np.testing.assert_array_equal(a.scores, b.scores)
    other = Lime(n_cells=4, seed=2).explain(p.surrogate, p.train, TARGET, 5)  # other cells, other perturbations
    assert not np.allclose(other.scores, a.scores, rtol=1e-3, atol=0)
