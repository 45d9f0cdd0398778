"""The shapiq explainers (methods/shapiq_fsii.py, methods/_shapiq_game.py):

* on a game that is additive by construction (a hand-built surrogate whose ReLU never kinks, each cell with at most
  one weighted peak open, so Rel Δ's expm1 acts on one peak per cell), the order-1 FSII values are the exact
  Shapley values, φ_j = −100 · mean_c x_cj · expm1(−w_j), and every pair interaction is 0, by exact enumeration
  and by sampling fewer coalitions than 2^n;
* `best_subset` on hand-written interaction values: a group whose whole value sits in a triple or a pair term, a
  group that does not fit in L, and a greedy first pick that one swap corrects;
* end to end on the simulator's truth model at tiny scale: L distinct peaks, `ok`, evaluations counted, close to
  the exact optimum; the same peaks on the truth model seen through the bare protocol (no read peaks: window +
  screen and the dummy screen) and on a surrogate with its fast paths hidden;
* a budget below the regression's unknowns gives `no_estimate`; one between that and `n_coalitions` gives the
  estimate on fewer coalitions, `budget_exceeded`.
"""

import functools

import numpy as np
import pytest

from bench.config import PROFILES
from bench.scoring.metrics import rel_delta_pct
from datasets.synthetic import simulate
from methods._shapiq_game import approximate, best_subset, candidate_players, closure_game, n_terms
from methods.base import Budget, BudgetClock
from methods.shapiq_fsii import ShapiqFsii
from surrogates.protocol import cell_types_of, without_fast_paths
from surrogates.truth import TruthModel
from tests.hand_models import CHROM, RequiredOnly, cells, cells_with_all_open, hand_model, redundant_pair_model

CELL_TYPE, GENE = "Oligo", "MOG"
TINY = PROFILES["tiny"].method_params["shapiq-fsii"]
WEIGHTED = np.array([2, 3, 5, 8, 10])
W = np.zeros(len(CHROM))
W[WEIGHTED] = [2.0, 4.0, 1.0, -3.0, 0.5]  # a silencer (−3) included: closing it raises the target


def additive_cells(n=48, seed=0):
    """Cells with at most one weighted peak open each (the cycle 2, 3, 5, 8, 10, none), other peaks at random."""
    rng = np.random.default_rng(seed)
    x = (rng.random((n, len(CHROM))) < 0.5).astype(np.uint8)
    x[:, WEIGHTED] = 0
    for c in range(n):
        if c % 6 < 5:
            x[c, WEIGHTED[c % 6]] = 1
    return cells(x)


def interactions(model, data, gene, n_coalitions, max_players=12, seed=0):
    """(players' peaks, FSII values {peaks tuple: φ}) the method's own pieces compute."""
    clock = BudgetClock(Budget())
    players = candidate_players(model, data, gene, max_players, clock)
    n = len(players.peaks)
    game = closure_game(players.evaluator, players.positions)
    method = ShapiqFsii(max_players=max_players, n_coalitions=max(n_coalitions, n_terms(max_players, 2)))
    method.seed = seed
    iv = approximate(method.approximator(n, min(n_coalitions, 2 ** n)), game, min(n_coalitions, 2 ** n))
    return players.peaks, {tuple(int(players.peaks[p]) for p in k): float(v) for k, v in iv.dict_values.items()}


@pytest.mark.parametrize("n_coalitions", [32, 24])  # every coalition of the 5 players; a sample of 24 of them
def test_order_one_values_of_an_additive_game_are_its_shapley_values(n_coalitions):
    model, data = hand_model(W, bias=5.0), additive_cells()  # Σ w x + 5 ≥ 2: the ReLU never kinks
    peaks, values = interactions(model, data, "target", n_coalitions)
    np.testing.assert_array_equal(peaks, WEIGHTED)  # zero-weight peaks are dummies, screened out
    x = data.atac.toarray()
    exact = -100.0 * x[:, WEIGHTED].mean(axis=0) * np.expm1(-W[WEIGHTED])  # v(S) = −100 · mean_c expm1(ŷ_S − ŷ)
    got = np.array([values[(p,)] for p in WEIGHTED])
    np.testing.assert_allclose(got, exact, atol=1e-3)  # percentage points
    pairs = [v for k, v in values.items() if len(k) == 2]
    assert len(pairs) == 10 and np.abs(pairs).max() < 1e-3
    assert got[WEIGHTED == 8] < 0  # closing the silencer raises the target


def test_best_subset_on_hand_written_values():
    triple = {(0,): 0.5, (1,): 0.4, (2, 3, 4): 10.0, (5,): 1.0}
    assert sorted(best_subset(triple, 3)[0]) == [2, 3, 4]  # only the whole group has a value
    assert sorted(best_subset(triple, 2)[0]) == [0, 5]  # the group does not fit: the best singles
    assert sorted(best_subset(triple, 4)[0]) == [2, 3, 4, 5]
    pair = {(0,): 1.0, (1,): 1.0, (2,): 0.0, (3,): 0.0, (2, 3): 5.0}
    assert sorted(best_subset(pair, 2)[0]) == [2, 3]  # 2.5 per peak beats 1
    # greedy takes 0 (3 per peak against the pair's 2.5), then 1; swapping 0 for 3 reaches the optimum {1, 3}
    swap = {(0,): 3.0, (1,): 1.0, (2,): 1.0, (3,): 0.0, (1, 3): 4.0}
    order, gains = best_subset(swap, 2)
    assert sorted(order) == [1, 3] and np.isclose(gains.sum(), 5.0)
    # best first, prefix gains; nothing more helps: fewer than L
    order, gains = best_subset({(0,): 1.0, (1,): 3.0, (2,): -1.0}, 3)
    assert order == [1, 0] and np.allclose(gains, [3.0, 1.0])


@functools.cache
def _tiny():
    data, truth = simulate("tiny", seed=0)
    return data, TruthModel(truth, data.n_peaks)


def test_end_to_end_on_the_tiny_truth_model():
    data, model = _tiny()
    train = data.cells(CELL_TYPE, "train")
    L = 5
    e = ShapiqFsii(**TINY).explain(model, train, GENE, L)
    e.check(data.n_peaks, L)
    assert e.status == "ok" and e.info["samples"] > 0 and e.info["path"] == "closed form"
    assert e.info["samples"] >= e.info["cells"] * e.info["coalitions"]
    explained = ShapiqFsii(**TINY).cells(train)
    types = cell_types_of(explained)
    y0 = model.predict(explained.atac, genes=[GENE], cell_types=types)[:, 0].numpy()
    got = rel_delta_pct(y0, model.predict(explained.atac, closed=e.peaks, genes=[GENE], cell_types=types)[:, 0])
    best = model.best_closure(explained, GENE, L)
    opt = rel_delta_pct(y0, model.predict(explained.atac, closed=best, genes=[GENE], cell_types=types)[:, 0])
    assert got <= 0.8 * opt  # Rel Δ is negative: at least 80 % of the optimum on the explained cells
    bare = ShapiqFsii(**TINY).explain(RequiredOnly(model), train, GENE, L)
    assert bare.info["path"] == "generic" and bare.info["player_source"] == "window + screen"
    assert list(bare.peaks) == list(e.peaks)


def test_fast_and_generic_paths_agree_on_a_surrogate():
    model, data = redundant_pair_model(), cells_with_all_open()
    fast = ShapiqFsii(**TINY).explain(model, data, "target", 4)
    slow = ShapiqFsii(**TINY).explain(without_fast_paths(model), data, "target", 4)
    assert (fast.info["path"], slow.info["path"]) == ("additive hidden", "generic")
    assert list(fast.peaks) == list(slow.peaks)
    np.testing.assert_allclose(slow.scores, fast.scores, rtol=1e-4, atol=1e-4 * np.abs(fast.scores).max())


def test_the_budget_decides_between_no_estimate_and_fewer_coalitions():
    data, model = _tiny()
    train = data.cells(CELL_TYPE, "train")
    method = ShapiqFsii(**TINY)
    n_cells = method.cells(train).n_cells
    full = method.explain(model, train, GENE, 5)
    n = full.info["players"]
    need = n_terms(n, 2)
    screens = full.info["samples"] - n_cells * full.info["coalitions"]  # the dummy screen's evaluations
    starved = ShapiqFsii(**TINY, budget=Budget(samples=screens + n_cells * (need - 1))).explain(model, train, GENE, 5)
    assert starved.status == "no_estimate" and starved.peaks.size == 0
    assert "needs" in starved.info["no_estimate_reason"]
    cut = ShapiqFsii(**TINY, budget=Budget(samples=screens + n_cells * (need + 20))).explain(model, train, GENE, 5)
    assert cut.status == "budget_exceeded" and cut.info["coalitions"] == need + 20
    cut.check(data.n_peaks, 5)
