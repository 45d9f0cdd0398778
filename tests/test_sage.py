"""SAGE (sage-importance) on a toy surrogate where one peak drives the target gene."""

from __future__ import annotations

import numpy as np
import pytest
import sage

from bench.running.runner import Job, run_job
from methods.base import Budget, Explanation
from methods.sage_method import FastGroupedDefaultImputer, Sage, _merge, peak_groups
from tests.toy_models import CELL_TYPE, STRONG, TARGET, toy_problem


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("kw", [{}, {"imputer": "marginal"}, {"groups": None}])
def test_ranks_the_regulating_peak_first(kw):
    p = toy_problem()
    e = Sage(budget=Budget(seconds=20), **kw).explain(p.surrogate, p.train, TARGET, 3)
    e.check(p.surrogate.n_peaks, 3)
    assert e.peaks[0] == STRONG
    assert e.status == "ok" and e.info["converged"]
    assert e.info["std_ratio"] < 0.025 and e.info["permutations"] > 0


def test_window_groups_cover_every_peak_once():
    for d in (40, 1000, 127_219):
        groups, group_of = peak_groups(d, "window", max_groups=512)
        assert len(groups) <= 512
        assert np.array_equal(np.sort(np.concatenate(groups)), np.arange(d))
        assert all((group_of[g] == k).all() for k, g in enumerate(groups[:5]))
    groups, group_of = peak_groups(6, "chromosome", chrom_codes=np.array([0, 0, 1, 1, 1, 2]))
    assert [g.tolist() for g in groups] == [[0, 1], [2, 3, 4], [5]]


def test_fast_grouped_imputer_matches_sages():
    rng = np.random.default_rng(0)
    groups, group_of = peak_groups(30, "window", window=4)
    model = lambda x: x.astype(float) @ np.arange(30.0)  # noqa: E731
    values = np.zeros(30, dtype=np.uint8)
    ours = FastGroupedDefaultImputer(model, values, groups, group_of)
    ref = sage.GroupedDefaultImputer(model, values, groups)
    x = (rng.random((7, 30)) < 0.5).astype(np.uint8)
    S = rng.random((7, len(groups))) < 0.5
    np.testing.assert_array_equal(ours.inclusion_matrix(S), ref.inclusion_matrix(S))
    np.testing.assert_allclose(ours(x, S), ref(x, S))


def test_chunk_merge_equals_one_pass():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(300, 5))
    tracker = sage.utils.ImportanceTracker()
    tracker.update(scores)
    acc = None
    for part in (scores[:100], scores[100:130], scores[130:]):
        t = sage.utils.ImportanceTracker()
        t.update(part)
        acc = _merge(acc, t.values, t.std, len(part))
    n, mean, ss = acc
    np.testing.assert_allclose(mean, tracker.values, rtol=1e-10)
    np.testing.assert_allclose(np.sqrt(ss) / n, tracker.std, rtol=1e-10)


def test_no_convergence_is_reported():
    p = toy_problem()
    e = Sage(n_permutations=64, batch_size=32, thresh=1e-6).explain(p.surrogate, p.train, TARGET, 5)
    e.check(p.surrogate.n_peaks, 5)
    assert e.status == "not_converged" and not e.info["converged"]
    assert e.info["permutations"] == 64 and e.info["stopped_by"] == "n_permutations"


def test_budget_exhaustion_before_any_estimate_returns_no_peaks():
    """No chunk finished → no SAGE values: status no_estimate and no peaks, never a fallback ranking."""
    p = toy_problem()
    e = Sage(budget=Budget(seconds=0)).explain(p.surrogate, p.train, TARGET, 10)
    e.check(p.surrogate.n_peaks, 10)
    assert e.status == "no_estimate" and e.peaks.size == 0
    assert e.info["permutations"] == 0 and e.info["stopped_by"] == "time" and "seconds" in e.info
    assert "no_estimate_reason" in e.info
    with pytest.raises(ValueError, match="no peaks"):  # a fallback ranking under status no_estimate is a bug
        Explanation(peaks=np.arange(10), status="no_estimate").check(p.surrogate.n_peaks, 10)


def test_harness_records_a_no_estimate_job_without_metrics():
    p = toy_problem()
    record = run_job(Job("sage", CELL_TYPE, TARGET, 10, 0), {}, Budget(seconds=0), p.surrogate, p.data).record()
    assert record["status"] == "no_estimate" and record["peaks"] == [] and record["error"] is None
    assert record["info"]["permutations"] == 0
    assert "rel_delta_pct" not in record and "avg_delta" not in record
    # budget hit after some permutations: an estimate exists but did not converge
    e = Sage(batch_size=16, thresh=1e-6, budget=Budget(samples=1000)).explain(p.surrogate, p.train, TARGET, 10)
    e.check(p.surrogate.n_peaks, 10)
    assert e.status == "not_converged" and e.info["stopped_by"] == "budget" and e.info["permutations"] > 0


def test_refinement_ranks_peaks_by_their_own_values():
    """Windows of 10 peaks: the group stage finds STRONG's window, the peak game ranks STRONG first by its own
    value (the other peaks of the window get theirs, not the window's)."""
    p = toy_problem()
    e = Sage(window=10, batch_size=16, budget=Budget(seconds=30, samples=400_000)).explain(p.surrogate, p.train,
                                                                                       TARGET, 3)
    e.check(p.surrogate.n_peaks, 3)
    assert e.info["refined_to"] == "peaks" and e.peaks[0] == STRONG
    assert e.info["refinement"]["players"] >= 16 and "effort" not in e.info
    assert e.scores[0] > e.scores[1]  # peak-level values, not one value per window


def test_refinement_cut_by_the_budget_is_flagged():
    p = toy_problem()
    e = Sage(window=10, batch_size=8, thresh=1e-9, coarse_share=1.0,
             budget=Budget(seconds=30, samples=500)).explain(p.surrogate, p.train, TARGET, 3)
    assert e.status == "not_converged" and e.info["refined_to"] == "groups"
    assert e.info["effort"] == ["partial_pass"]


def test_refinement_players_and_ranking_by_hand():
    from methods.sage_method import rank_by, refinement_players

    groups = [np.array([0, 1, 2]), np.array([3, 4, 5]), np.array([6, 7])]
    freq = np.array([1, 0, 2, 5, 5, 0, 1, 1], dtype=float)
    # group 1 is best (open peaks 3, 4), then group 0 (open 0, 2): 4 players reach at_least=3
    np.testing.assert_array_equal(refinement_players(np.array([0.2, 0.9, 0.1]), groups, freq, 3), [0, 2, 3, 4])
    level = np.array([1, 0, 1, 1, 1, 0, 0, 0])
    value = np.array([0.5, 0.2, 0.7, 0.1, 0.1, 0.9, 0.1, 0.1])
    # refined first by value (2, 0, then 3 and 4 tie: 3 by index), then the rest by value, ties by open frequency
    np.testing.assert_array_equal(rank_by(level, value, freq), [2, 0, 3, 4, 5, 1, 6, 7])
