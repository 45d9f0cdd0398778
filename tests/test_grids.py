"""GRIDS on a hand-built surrogate with a planted redundant pair (a, b): target ∝ soft-OR(x_a, x_b).

Closing a or b alone changes the target by ~2 %; closing both removes most of it. Two decoy peaks (c, d) have
larger *single* effects, so a gradient ranking prefers them; only a subset search finds the pair.
"""

import numpy as np
import pytest
import torch

from methods.grids import Grids, default_steps, subset_objective
from methods.input_x_gradient import InputXGradient
from methods.saliency import Saliency
from tests.hand_models import A, B, C, D, cells_with_all_open, redundant_pair_model


def test_toy_model_has_the_planted_redundancy():
    m, d = redundant_pair_model(), cells_with_all_open()
    y = lambda closed: float(m.predict(d.atac, closed=closed, genes=["target"]).mean())  # noqa: E731
    assert y([]) == pytest.approx(5 * 1.03 + 1.5 + 0.5)
    assert y([A]) / y([]) > 0.97 and y([B]) / y([]) > 0.97  # one member alone: ~2 % change
    assert y([A, B]) / y([]) < 0.35  # the pair: most of the expression is gone
    assert y([C]) < y([A]) and y([D]) < y([A])  # decoys have larger single effects


def test_grids_finds_the_redundant_pair_and_gradient_rankings_do_not():
    m, d = redundant_pair_model(), cells_with_all_open()
    grids = Grids(steps=60, batch_size=16, seed=0).explain(m, d, "target", 3)
    assert {A, B} <= set(grids.peaks.tolist())
    # with a and b both open, ∂ŷ/∂x_a = ∂ŷ/∂x_b = 5 · 0.03 in every cell, below the decoys' 1 and 0.5: neither the
    # first-order suppression score (Input × Gradient) nor plain |gradient| (Saliency) can rank both members in
    for method in (InputXGradient(), Saliency()):
        assert not {A, B} <= set(method.explain(m, d, "target", 3).peaks.tolist())
    assert len(set(grids.peaks.tolist())) == 3
    # best-first ordering: a pair member's leave-one-out contribution is the largest
    assert grids.peaks[0] in (A, B)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grids_is_seeded_and_never_duplicates(seed):
    m, d = redundant_pair_model(), cells_with_all_open()
    e1 = Grids(steps=40, batch_size=8, seed=seed).explain(m, d, "target", 5)
    e2 = Grids(steps=40, batch_size=8, seed=seed).explain(m, d, "target", 5)
    assert e1.peaks.tolist() == e2.peaks.tolist() and e1.info["loss_trace"] == e2.info["loss_trace"]
    assert len(set(e1.peaks.tolist())) == 5
    assert e1.info["steps"] == 40
    other = Grids(steps=40, batch_size=8, seed=seed + 10).explain(m, d, "target", 5)
    assert other.info["loss_trace"] != e1.info["loss_trace"]  # the seed is used: another start and mini-batches


def test_budget_exhaustion_returns_best_so_far():
    from methods.base import Budget

    m, d = redundant_pair_model(), cells_with_all_open()
    e = Grids(steps=1000, batch_size=8, budget=Budget(seconds=60, samples=100)).explain(m, d, "target", 3)
    assert e.status == "budget_exceeded" and e.info["steps"] < 1000 and len(set(e.peaks.tolist())) == 3
    none = Grids(steps=1000, budget=Budget(seconds=0)).explain(m, d, "target", 3)
    assert none.status == "no_estimate" and none.peaks.size == 0  # never the random starting subset


def test_objective_and_default_steps():
    y0 = torch.tensor([[2.0, 1.0], [4.0, 1.0]])
    y_r = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    # ratios with pseudo-count 1: target 2/3 and 3/5; other gene: 2/2 − 1 = 0 and 3/2 − 1; β = 0.1, d_r − 1 = 1
    expected = np.mean([(2 / 3) ** 2 + 0.1 * 0.0, (3 / 5) ** 2 + 0.1 * (3 / 2 - 1) ** 2])
    assert float(subset_objective(y_r, y0, 0, 0.1, "ratio")) == pytest.approx(expected, rel=1e-6)
    assert float(subset_objective(y_r, y0, 0, 0.1, "mean")) == pytest.approx(1.5)
    assert default_steps(10) == 500 and default_steps(128) == 5000


def test_the_off_target_gene_sample_is_an_unbiased_estimate_of_eq_2():
    """Averaged over every m-subset of the off-target genes, the sampled objective is the full one."""
    from itertools import combinations

    gen = torch.Generator().manual_seed(0)
    y0, y = torch.rand(5, 6, generator=gen) * 3, torch.rand(3, 5, 6, generator=gen) * 3  # 3 subsets, 5 cells, 6 genes
    target = 2
    full = subset_objective(y, y0, target, 0.1, "ratio")
    others = [j for j in range(6) if j != target]
    sampled = [subset_objective(y[..., [target, *c]], y0[:, [target, *c]], 0, 0.1, "ratio")
               for c in combinations(others, 2)]
    torch.testing.assert_close(torch.stack(sampled).mean(0), full)
    assert not torch.allclose(sampled[0], full)  # one draw is an estimate, not the full term


def test_a_gene_sample_of_every_gene_scores_cells_as_the_full_objective():
    """The sampled scorer's own path (a head over the chosen genes, the target first) with every off-target gene in
    the sample gives each cell the full eq. 2 of the whole decoder; a sample size ≥ G − 1 skips the sample; a small
    sample still returns L valid peaks."""
    from methods.grids import _GeneSample, cell_objective

    m, d = _random_surrogate_case()
    gi = 5
    genes = torch.as_tensor([gi] + [g for g in range(m.n_genes) if g != gi])
    scorer = _GeneSample(genes, lambda a: m.head(a, genes), 0.1)
    with m.evaluating(), torch.no_grad():
        batch = m.sparse_batch(d.atac[:12])
        y0 = m.predict(d.atac[:12])
        a = m.first_hidden(batch, m.closed_weights(batch, [int(batch.idx[0]), int(batch.idx[1])]))
        full = cell_objective(m.head_from_hidden(a), torch.as_tensor(y0), gi, 0.1, "ratio")
        got = scorer.cell_loss(a, torch.as_tensor(y0))
    assert not torch.allclose(full, torch.zeros_like(full))
    torch.testing.assert_close(got, full, rtol=1e-5, atol=1e-7)
    rng = np.random.default_rng(0)
    assert Grids(off_target_genes=m.n_genes - 1)._gene_sample(m.n_genes, gi, rng) is None
    assert Grids(off_target_genes=m.n_genes - 2)._gene_sample(m.n_genes, gi, rng) is not None
    sampled = Grids(steps=12, seed=3, off_target_genes=1).explain(redundant_pair_model(), cells_with_all_open(),
                                                                  "target", 3)
    sampled.check(cells_with_all_open().n_peaks, 3)


def _random_surrogate_case():
    """An untrained surrogate (random weights, several chromosomes) on tiny simulated cells."""
    from datasets.synthetic import simulate
    from surrogates.model import SurrogateConfig
    from surrogates.train import build_surrogate

    data, _ = simulate("tiny", seed=0)
    torch.manual_seed(0)
    return build_surrogate(data, SurrogateConfig(hidden=32)).eval(), data


def test_a_step_batch_is_the_surrogate_s_own_sparse_batch():
    m, d = _random_surrogate_case()
    cells = np.array([0, 3, 4, 9, 17])
    batch = m.bag_batches(d.atac).batch(cells)
    ref = m.sparse_batch(d.atac[cells])
    for field in ("idx", "offsets", "row"):
        assert torch.equal(getattr(batch.atac, field), getattr(ref, field))
    peaks = torch.tensor([0, 5, 11, int(ref.idx[0])])
    torch.testing.assert_close(batch.columns(peaks),
                               torch.as_tensor((d.atac[cells][:, peaks.numpy()].toarray() != 0).astype(np.float32)))


def test_the_gains_are_the_closure_gradients_of_each_entry_summed_by_peak():
    """Eq. 4 by autograd on the per-entry weights, scattered into peaks, against the peak-bagged computation and
    against the generic path's Σ_c x_cj ∂ℒ/∂x_cj from the dense forward."""
    from methods.grids import _BagSearch, _GenericSearch

    m, d = _random_surrogate_case()
    cells, gi = np.arange(16), 2
    types = d.obs["cell_type"].astype(str).to_numpy()
    in_r = torch.zeros(d.n_peaks, dtype=torch.bool)
    in_r[torch.as_tensor(d.atac[cells].indices[:4].astype(np.int64))] = True  # closes entries of the batch
    y0 = m.predict(d.atac[cells])
    search = _BagSearch(Grids(seed=0), m, d.atac, types, gi)
    a_r, per_cell, gain = search.gains(search.batch(cells), in_r, y0)
    ref = m.sparse_batch(d.atac[cells])
    w = (~in_r[ref.idx]).float().requires_grad_(True)
    a = m.first_hidden(ref, w)
    loss = subset_objective(m.head_from_hidden(a), y0, gi, 0.1, "ratio")
    (g_entry,) = torch.autograd.grad(loss, w)
    expected = torch.zeros(d.n_peaks).index_add_(0, ref.idx, g_entry)
    torch.testing.assert_close(gain, expected, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(a_r, a.detach())
    assert float(per_cell.mean()) == pytest.approx(float(loss.detach()), rel=1e-6)
    assert torch.count_nonzero(gain[in_r]) > 0  # a closed peak's gain is the loss increase of re-opening it
    _, per_cell_g, gain_g = _GenericSearch(Grids(seed=0), m, d.atac, types, gi).gains(cells, in_r, y0)
    open_here = torch.as_tensor(np.asarray(d.atac[cells].sum(0)).ravel() > 0) & ~in_r
    torch.testing.assert_close(gain_g[open_here], expected[open_here], rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(per_cell_g, per_cell, rtol=1e-5, atol=1e-6)


def test_sampled_gains_are_the_gradient_of_the_sampled_objective_on_both_paths():
    """With a gene sample (`sampled_gains`), the gains are eq. 4 of the objective on the target (first) and the
    sampled genes only: autograd of that objective on the per-entry weights, on the bag path and the generic path;
    without the sample they differ (the off-target term counts other genes)."""
    from methods.grids import _BagSearch, _GenericSearch

    m, d = _random_surrogate_case()
    cells, gi = np.arange(16), 2
    types = d.obs["cell_type"].astype(str).to_numpy()
    in_r = torch.zeros(d.n_peaks, dtype=torch.bool)
    in_r[torch.as_tensor(d.atac[cells].indices[:4].astype(np.int64))] = True
    y0 = m.predict(d.atac[cells])
    grids = Grids(seed=0, off_target_genes=5, sampled_gains=True)
    genes = grids._gene_sample(m.n_genes, gi, np.random.default_rng(1))
    assert int(genes[0]) == gi and len(genes) == 6
    search = _BagSearch(grids, m, d.atac, types, gi)
    _, per_cell, gain = search.gains(search.batch(cells), in_r, y0, genes)
    ref = m.sparse_batch(d.atac[cells])
    w = (~in_r[ref.idx]).float().requires_grad_(True)
    a = m.first_hidden(ref, w)
    loss = subset_objective(m.head(a, genes), y0[:, genes], 0, 0.1, "ratio")
    (g_entry,) = torch.autograd.grad(loss, w)
    expected = torch.zeros(d.n_peaks).index_add_(0, ref.idx, g_entry)
    torch.testing.assert_close(gain, expected, rtol=1e-4, atol=1e-7)
    assert float(per_cell.mean()) == pytest.approx(float(loss.detach()), rel=1e-6)
    _, _, full = search.gains(search.batch(cells), in_r, y0)
    assert float((full - gain).norm()) > 0.01 * float(gain.norm()) > 0
    _, _, gain_g = _GenericSearch(grids, m, d.atac, types, gi).gains(cells, in_r, y0, genes)
    open_here = torch.as_tensor(np.asarray(d.atac[cells].sum(0)).ravel() > 0) & ~in_r
    torch.testing.assert_close(gain_g[open_here], expected[open_here], rtol=1e-3, atol=1e-6)


def test_sampled_gains_change_only_runs_that_ask_for_them():
    """`sampled_gains=False` keeps the original random-number order (the same peaks as before the option existed:
    the default is the paper's GRIDS); with it a run still returns L valid peaks."""
    model, cells = redundant_pair_model(), cells_with_all_open()
    a = Grids(steps=12, seed=3, off_target_genes=1).explain(model, cells, "target", 3)
    b = Grids(steps=12, seed=3, off_target_genes=1, sampled_gains=False).explain(model, cells, "target", 3)
    assert list(a.peaks) == list(b.peaks)
    Grids(steps=12, seed=3, off_target_genes=1, sampled_gains=True).explain(model, cells, "target", 3).check(
        cells.n_peaks, 3)


@pytest.mark.parametrize("genes", [None, 5])
def test_swap_losses_equal_rescoring_every_cell(genes):
    """Scoring only the cells a swap changes gives each swapped subset's full objective; a swap that changes no
    cell scores exactly the incumbent. The generic path (every subset through `predict`) gives the same losses."""
    from methods.grids import _BagSearch, _GeneSample, _GenericSearch

    m, d = _random_surrogate_case()
    cells, gi = np.arange(12), 1
    types = d.obs["cell_type"].astype(str).to_numpy()
    X = d.atac[cells]
    open_count = np.asarray((X != 0).sum(0)).ravel()
    never_open = np.flatnonzero(open_count == 0)
    some_open = np.flatnonzero(open_count > 0)
    r = np.array([some_open[0], some_open[1], never_open[0]])
    cand = torch.as_tensor([some_open[2], some_open[3], never_open[1], some_open[4]])
    in_r = torch.zeros(d.n_peaks, dtype=torch.bool)
    in_r[torch.as_tensor(r)] = True
    y0 = m.predict(X)
    grids = Grids(seed=0, off_target_genes=genes)
    sample = grids._gene_sample(m.n_genes, gi, np.random.default_rng(0))
    scorer = None if sample is None else _GeneSample(sample, lambda a: m.head(a, sample), 0.1)
    search, generic = _BagSearch(grids, m, d.atac, types, gi), _GenericSearch(grids, m, d.atac, types, gi)
    batch = search.batch(cells)
    a_r, per_cell, _ = search.gains(batch, in_r, y0)
    for slot in (0, 2):  # re-open a peak some cells have, or one none has
        incumbent, losses = search.swap_losses(batch, a_r, r, int(r[slot]), cand, per_cell, y0, sample)
        g_incumbent, g_losses = generic.swap_losses(cells, None, r, int(r[slot]), cand, per_cell, y0, sample)
        torch.testing.assert_close(g_losses, losses, rtol=1e-5, atol=1e-7)
        assert g_incumbent == pytest.approx(incumbent, rel=1e-6)
        for j, peak in enumerate(cand.tolist()):
            closed = np.where(np.arange(len(r)) == slot, peak, r)
            with torch.no_grad():
                a = m.first_hidden(m.sparse_batch(X), m.closed_weights(m.sparse_batch(X), closed))
                full = (scorer.cell_loss(a, y0) if scorer is not None
                        else subset_objective(m.head_from_hidden(a), y0, gi, 0.1, "ratio")[None]).mean()
            assert float(losses[j]) == pytest.approx(float(full), rel=1e-5)
        if slot == 2:
            assert float(losses[2]) == incumbent  # never-open for never-open: no cell changes, exactly equal


def test_a_run_cut_before_every_slot_is_visited_keeps_no_random_start_peaks():
    """L − 1 steps: the last slot is never visited. It is filled from the gradient ranking (flagged partial_pass
    and filled) instead of keeping its random-start peak."""
    m, d = redundant_pair_model(), cells_with_all_open()
    L = 4
    e = Grids(steps=L - 1, batch_size=16, seed=0).explain(m, d, "target", L)
    e.check(m.n_peaks, L)
    start = np.random.default_rng(0).choice(m.n_peaks, size=L, replace=False)  # GRIDS's random start (seed 0)
    assert start[-1] not in e.peaks  # the unvisited slot's random peak is gone
    assert e.info["slots_visited"] == L - 1 and e.info["filled_from_gradient"] == 1
    assert e.info["effort"] == ["partial_pass", "filled"] and e.status == "ok"
    full = Grids(steps=L, batch_size=16, seed=0).explain(m, d, "target", L)
    assert "effort" not in full.info and full.info["filled_from_gradient"] == 0
