"""FIMAP on a toy surrogate where one peak drives the target gene."""

from __future__ import annotations

import numpy as np
import pytest

from methods.base import Budget
from methods.fimap import Fimap
from tests.toy_models import STRONG, TARGET, toy_problem


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_ranks_the_regulating_peak_first():
    p = toy_problem()
    e = Fimap().explain(p.surrogate, p.train, TARGET, 3)
    e.check(p.surrogate.n_peaks, 3)
    assert e.status == "ok"
    assert e.peaks[0] == STRONG
    assert e.scores[0] > 10 * e.scores[1]  # the strong peak's perturbation magnitude dominates
    assert e.info["steps"] == 300 and e.info["seconds"] > 0 and e.info["samples"] > 0


def test_mean_objective_closes_the_largest_absolute_effect_and_ratio_the_largest_relative_one():
    """target = max(0, 20 + 2·x_HI − 20·x_NEG + 0.1·x_LO) + 0.5 (tests/hand_models.py), on 20 "rich" cells (HI open,
    ŷ = 22.5) and 20 "poor" ones (NEG and LO open, ŷ = 0.6); the unit stays active, so closing an open peak j lowers
    ŷ by w_j exactly. At the L1 price λ = 0.13 per closed peak (no warm-up, full batch: every step's gradient has
    the same sign), the mean objective closes j where w_j > λ: HI (2), not LO (0.1). The ratio objective prices the
    drop relative to the cell's ŷ₀ + c: HI 2 / 22.51 = 0.09 < λ, LO 0.1 / 0.61 = 0.16 > λ (its hinge never binds: the
    mean ratio stays above 0.9), so it picks LO instead; NEG, whose closing raises ŷ, is closed by neither."""
    from tests.hand_models import CHROM, cells, hand_model

    neg, hi, lo = 2, 5, 9
    w = np.zeros(len(CHROM))
    w[[neg, hi, lo]] = [-20.0, 2.0, 0.1]
    model = hand_model(w, bias=20.0)
    x = (np.random.default_rng(0).random((40, len(CHROM))) < 0.4).astype(np.uint8)
    rich = np.arange(40) < 20
    x[:, [neg, hi, lo]] = np.where(rich[:, None], [0, 1, 0], [1, 0, 1])
    data = cells(x)
    y0 = model.predict(data.atac, genes=["target"])[:, 0].numpy()
    np.testing.assert_allclose(y0, np.where(rich, 22.5, 0.6), atol=1e-5)  # the hand model is what it says

    def scores(objective):
        e = Fimap(objective=objective, sparsity=0.13, warmup=0.0, steps=100, batch_size=64).explain(
            model, data, "target", len(CHROM))
        e.check(len(CHROM), len(CHROM))
        assert e.status == "ok" and e.info["objective"] == objective
        s = np.empty(len(CHROM))
        s[e.peaks] = e.scores
        return e.peaks, s

    peaks, s = scores("mean")
    assert peaks[0] == hi
    assert s[hi] > 0.45  # closed in (nearly) every rich cell: at most 0.5, the share of cells where HI is open
    assert s[lo] < 1e-3 and s[neg] < 1e-3  # below the initial 0.5 · sigmoid(−4) ≈ 0.009: pushed shut
    peaks, s = scores("ratio")
    assert peaks[0] == lo and s[hi] < 1e-3


def test_seeded_and_deterministic():
    p = toy_problem()
    a = Fimap(steps=50, seed=3).explain(p.surrogate, p.train, TARGET, 5)
    b = Fimap(steps=50, seed=3).explain(p.surrogate, p.train, TARGET, 5)
    np.testing.assert_array_equal(a.peaks, b.peaks)
    np.testing.assert_allclose(a.scores, b.scores)
    other = Fimap(steps=50, seed=4).explain(p.surrogate, p.train, TARGET, 5)  # the seed is used: other mini-batches
    assert not np.allclose(other.scores, a.scores, rtol=1e-3, atol=0)


def test_surrogate_is_left_untouched():
    p = toy_problem()
    for q in p.surrogate.parameters():
        q.grad = None
    before = {k: v.clone() for k, v in p.surrogate.state_dict().items()}
    Fimap(steps=20).explain(p.surrogate, p.train, TARGET, 3)
    for k, v in p.surrogate.state_dict().items():
        assert (v == before[k]).all(), k
    assert all(q.grad is None for q in p.surrogate.parameters())


def test_budget_exhaustion_keeps_a_trained_estimate_or_says_there_is_none():
    p = toy_problem()
    none = Fimap(budget=Budget(seconds=0)).explain(p.surrogate, p.train, TARGET, 10)
    none.check(p.surrogate.n_peaks, 10)
    assert none.status == "no_estimate" and none.peaks.size == 0 and none.info["steps"] == 0
    # the unperturbed pass costs one sample per training cell, then each step one per cell of its batch
    e = Fimap(budget=Budget(samples=p.train.n_cells + 3 * 16), batch_size=16).explain(p.surrogate, p.train,
                                                                                      TARGET, 10)
    e.check(p.surrogate.n_peaks, 10)
    assert e.status == "budget_exceeded" and 1 <= e.info["steps"] < e.info["steps_planned"]


def test_bad_arguments_fail_early():
    with pytest.raises(ValueError, match="objective"):
        Fimap(objective="nope")


def test_the_pseudo_count_enters_the_ratio_by_hand():
    import torch

    y, y0 = torch.tensor([0.0, 1.0]), torch.tensor([0.0, 2.0])
    # hinge at τ = 0.5 on the batch mean of (y + c) / (y0 + c): c = 1 → (1/1 + 2/3) / 2 = 5/6, minus 0.5 = 1/3
    assert float(Fimap(pseudo_count=1.0, target_ratio=0.5)._target(y, y0)) == pytest.approx(1 / 3)
    # c = 0.01: the silent cell's ratio is still 1, the other (1.01 / 2.01) → mean 0.7512…, minus 0.5
    assert float(Fimap(pseudo_count=0.01, target_ratio=0.5)._target(y, y0)) == pytest.approx(
        (1 + 1.01 / 2.01) / 2 - 0.5)
    with pytest.raises(ValueError, match="pseudo_count"):
        Fimap(pseudo_count=0)
