"""CXPlain (our torch implementation) on a toy surrogate where one peak drives the target gene."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from methods.base import Budget
from methods.base import BudgetClock
from methods.cxplain import CXPlain, UNet1d, granger_targets, window_of
from tests.toy_models import STRONG, TARGET, toy_problem


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _brute_force_delta(surrogate, X, window, granger):
    """Δε per (cell, window) by closing each window through the public sparse `predict`."""
    n_win = int(np.ceil(X.shape[1] / window))
    y0 = surrogate.predict(X, genes=[TARGET])[:, 0].numpy().astype(np.float64)
    out = np.zeros((X.shape[0], n_win))
    for k in range(n_win):
        y = surrogate.predict(X, closed=np.arange(k * window, min((k + 1) * window, X.shape[1])),
                              genes=[TARGET])[:, 0].numpy().astype(np.float64)
        out[:, k] = np.maximum(y0 - y, 0) if granger == "drop" else (y - y0) ** 2
    return out


@pytest.mark.parametrize("granger", ["drop", "squared"])
@pytest.mark.parametrize("window", [1, 4])
def test_granger_targets_match_masking_by_predict(window, granger):
    p = toy_problem()
    X = p.train.atac
    omega, delta, done = granger_targets(p.surrogate, X, TARGET, window, granger)
    assert done == X.shape[0]
    ref = _brute_force_delta(p.surrogate, X, window, granger)
    np.testing.assert_allclose(delta.toarray(), ref, atol=1e-5)
    sums = np.asarray(omega.sum(axis=1)).ravel()
    informative = ref.sum(axis=1) > 0
    np.testing.assert_allclose(sums[informative], 1.0, rtol=1e-6)
    assert (sums[~informative] == 0).all()


def test_unet_keeps_length_for_any_window_count():
    net = UNet1d(4)
    for n in (1, 5, 10, 33):
        assert net(torch.zeros(3, n)).shape == (3, n)


def test_ranks_the_regulating_window_first():
    p = toy_problem()
    e = CXPlain().explain(p.surrogate, p.train, TARGET, 4)
    e.check(p.surrogate.n_peaks, 4)
    assert e.status == "ok"
    win = window_of(p.surrogate.n_peaks, 4)
    assert set(e.peaks) == set(np.flatnonzero(win == win[STRONG]))  # the strong peak's window, all of it


def test_max_cells_fits_on_a_subset_and_still_finds_the_window():
    p = toy_problem()
    e = CXPlain(max_cells=16, seed=1).explain(p.surrogate, p.train, TARGET, 4)
    assert e.status == "ok" and e.info["cells_fit"] == 16 < p.train.n_cells
    win = window_of(p.surrogate.n_peaks, 4)
    assert set(e.peaks) == set(np.flatnonzero(win == win[STRONG]))


def test_ranks_the_regulating_peak_first_with_single_peak_windows():
    p = toy_problem()
    e = CXPlain(window=1, epochs=300).explain(p.surrogate, p.train, TARGET, 3)
    assert e.peaks[0] == STRONG
    assert e.info["epochs"] == 300 and e.info["final_kl"] < e.info["kl_trace"][0]


def _clock_running_out_after(monkeypatch, n_reads: int):
    """BudgetClock.seconds reads 0 for its first `n_reads` reads, then far past any budget."""
    reads = iter(range(10**6))
    monkeypatch.setattr(BudgetClock, "seconds", property(lambda self: 0.0 if next(reads) < n_reads else 1e9))


@pytest.mark.parametrize("n_reads, reason", [(0, "Granger stage"),  # cut before any target
                                             (1, "before its first epoch")])  # targets made, then no epoch
def test_the_time_stop_before_one_epoch_returns_no_peaks(monkeypatch, n_reads, reason):
    """CXPlain's estimate is the trained explanation model: no finished epoch → no_estimate, no peaks."""
    p = toy_problem()
    _clock_running_out_after(monkeypatch, n_reads)  # one read per Granger chunk (the toy has one), one per batch
    e = CXPlain().explain(p.surrogate, p.train, TARGET, 10)
    e.check(p.surrogate.n_peaks, 10)
    assert e.status == "no_estimate" and e.peaks.size == 0 and e.info["epochs"] == 0
    assert reason in e.info["no_estimate_reason"]


def test_the_time_stop_after_some_epochs_keeps_the_estimate(monkeypatch):
    """1 Granger chunk, then one read per batch of one-batch epochs: cut after 4 epochs. The U-net's training
    evaluates no surrogate, so only the wall-time safety stop can cut it: `time_limit`."""
    p = toy_problem()
    _clock_running_out_after(monkeypatch, 5)
    e = CXPlain().explain(p.surrogate, p.train, TARGET, 4)
    e.check(p.surrogate.n_peaks, 4)
    assert e.status == "time_limit" and 1 <= e.info["epochs"] < e.info["epochs_planned"]
    assert e.info["cells_granger_done"] == p.train.n_cells


def test_an_evaluation_budget_that_cuts_the_granger_stage_still_trains(monkeypatch):
    """The budget ends the Granger stage (surrogate evaluations); the U-net then trains every planned epoch on the
    targets made: an estimate, `budget_exceeded`, the same on any machine."""
    import methods.cxplain as module

    p = toy_problem()
    granger = module.granger_targets  # chunks of a few cells, so the budget can end the stage part-way
    monkeypatch.setattr(module, "granger_targets", lambda *a, **k: granger(*a, **k, max_entries=1))
    e = CXPlain(epochs=5, budget=Budget(samples=50)).explain(p.surrogate, p.train, TARGET, 4)
    e.check(p.surrogate.n_peaks, 4)
    assert e.status == "budget_exceeded" and e.info["epochs"] == 5
    assert e.info["cells_granger_done"] < p.train.n_cells


def test_no_cell_with_a_target_is_no_estimate():
    """All peaks closed: closing a window cannot lower the prediction anywhere, so there is nothing to train on."""
    p = toy_problem()
    closed = p.train.subset(np.arange(p.train.n_cells))
    closed.atac = sp.csr_matrix(closed.atac.shape, dtype=closed.atac.dtype)
    e = CXPlain().explain(p.surrogate, closed, TARGET, 4)
    e.check(p.surrogate.n_peaks, 4)
    assert e.status == "no_estimate" and e.peaks.size == 0
    assert e.info["cells_with_targets"] == 0 and "no cell has a Granger target" in e.info["no_estimate_reason"]


def test_cross_check_with_the_cxplain_package():
    """Optional: the TensorFlow `cxplain` package's zero masking gives the same Δε. Skips when the package does not
    import — on Python 3.11 it never does (cxplain 1.0.3 needs tensorflow.python.keras.layers.BatchNormalization,
    which no TensorFlow with 3.11 wheels has; .ci/cxplain-crosscheck says so); the hand-computed test below checks
    the same Δε without it."""
    pytest.importorskip("cxplain")
    zero_masking = pytest.importorskip("cxplain.backend.masking.zero_masking")
    p = toy_problem()
    s, X, w = p.surrogate, p.train.atac, 4

    class Wrapped:
        def predict(self, x):
            x = torch.as_tensor(np.asarray(x).reshape(len(x), -1), dtype=torch.float32)
            with torch.no_grad():
                return s.dense(x, genes=[TARGET])[:, 0].numpy()

    dense = X.toarray().astype(np.float32)[..., None]
    _, y_pred, y_masked = zero_masking.ZeroMasking().get_predictions_after_masking(
        Wrapped(), dense, np.zeros(len(dense)), downsample_factors=(w,), flatten=True)
    ref = np.maximum(y_pred[:, 0][:, None] - y_masked[..., 0], 0)
    _, delta, _ = granger_targets(s, X, TARGET, w, "drop")
    np.testing.assert_allclose(delta.toarray(), ref, atol=1e-4)


@pytest.mark.parametrize("granger", ["drop", "squared"])
def test_granger_targets_by_hand_on_a_linear_model(granger):
    """The property the package cross-check tests, without TensorFlow: ŷ = 1 + 2x₀ + x₁ + 0.5x₂ − x₃, windows of 2.
    Cell (1,1,1,1): ŷ = 3.5; closing window 0 → 0.5 (drop 3, squared 9), window 1 → 4 (drop 0, squared 0.25).
    Cell (0,1,1,0): ŷ = 2.5; window 0 → 1.5 (drop 1, squared 1), window 1 → 2 (drop 0.5, squared 0.25).
    ω is each row of Δε divided by its sum."""
    from torch import nn

    from surrogates.protocol import TorchModel

    lin = nn.Linear(4, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[2.0, 1.0, 0.5, -1.0]]))
        lin.bias.fill_(1.0)
    model = TorchModel(lin, ["g"], 4)
    X = sp.csr_matrix(np.array([[1, 1, 1, 1], [0, 1, 1, 0]], dtype=np.uint8))
    omega, delta, done = granger_targets(model, X, "g", 2, granger)
    want = np.array([[3.0, 0.0], [1.0, 0.5]]) if granger == "drop" else np.array([[9.0, 0.25], [1.0, 0.25]])
    assert done == 2
    np.testing.assert_allclose(delta.toarray(), want, atol=1e-5)
    np.testing.assert_allclose(omega.toarray(), want / want.sum(axis=1, keepdims=True), atol=1e-6)
