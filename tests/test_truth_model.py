"""Closed-form conformance of the truth tier (surrogates/truth.py), each against an independent computation, float64.

* the model is the simulator's E: predict = log1p(SyntheticTruth.expression) on binary rows, dense = predict there;
* Integrated Gradients of E = expm1(ŷ) from the all-closed baseline is the baseline-Shapley value of
  v(S) = E(x_S, 0) over a cell's open planted peaks (E is multilinear; enumerated for a gene with ≤ 10 planted
  peaks), to 1e-6 relative; the registered `integrated-gradients`, which explains ŷ = log1p(E), is complete:
  Σ_j IG_j = ŷ(x) − ŷ(0) to 1e-6;
* Saliency and Input × Gradient give exactly 0 to a group member in every cell where another member of its group
  is open (the redundancy a first-order method cannot see);
* the weighted knapsack (`best_closure` with per-cell weights) equals brute force over every closure of ≤ L planted
  peaks; a gene with planted peaks and no promoter has a best closure (it used to raise KeyError);
* positive control: a gene made additive (singleton groups, promoter ρ = 1), selected and scored on the same cells:
  Input × Gradient reaches 100 % of the optimum at every L; negative control: a gene with no planted peaks has
  optimum 0 and no % of optimum.
"""

import copy
import itertools
from math import factorial

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients as CaptumIG

from bench.scoring.evaluate import evaluate_selection
from datasets.synthetic import simulate
from methods._aggregate import TargetGene
from methods.input_x_gradient import InputXGradient
from methods.integrated_gradients import IntegratedGradients
from methods.saliency import Saliency
from surrogates.protocol import cell_types_of
from surrogates.truth import TruthModel


@pytest.fixture(scope="module")
def tiny():
    data, truth = simulate("tiny", seed=0)
    return data, truth, TruthModel(truth, data.n_peaks)


def _small_gene(truth, most: int = 10) -> str:
    """A regulated gene with a promoter, a redundant group and at most `most` planted peaks."""
    for gene in truth.genes:
        n = len(truth.planted_peaks(gene))
        if 4 <= n <= most and truth.redundant_groups(gene) and truth.regulatory_peaks(gene)["promoter"]:
            return gene
    raise AssertionError("no small regulated gene in the tiny simulation")


def _home_cells(data, truth, gene):
    """The cell type where the gene's planted peaks are open most, and its cells."""
    planted = truth.planted_peaks(gene)
    best = max(data.cell_types, key=lambda ct: data.cells(ct).atac[:, planted].mean())
    return best, data.cells(best)


def test_the_model_is_the_simulator_s_expression(tiny):
    data, truth, model = tiny
    types = cell_types_of(data)
    closed = truth.planted_peaks(truth.genes[0])[:5]
    for c in (None, closed):
        np.testing.assert_allclose(model.predict(data.atac, closed=c, cell_types=types).numpy(),
                                   np.log1p(truth.expression(data, closed=c)), rtol=0, atol=1e-12)
    x = torch.as_tensor(data.atac[:60].toarray(), dtype=torch.float64)
    np.testing.assert_allclose(model.dense(x, cell_types=types[:60]).detach().numpy(),
                               model.predict(data.atac[:60], cell_types=types[:60]).numpy(), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="cell_types"):
        model.predict(data.atac[:2])
    twice = model.predict(data.atac[:5], genes=[truth.genes[3], truth.genes[1], truth.genes[3]], cell_types=types[:5])
    np.testing.assert_array_equal(twice[:, 0], twice[:, 2])
    np.testing.assert_allclose(twice[:, 1].numpy(), np.log1p(truth.expression(data.subset(np.arange(5)),
                                                                             genes=[truth.genes[1]]))[:, 0])
    changed = copy.deepcopy(truth)
    changed.group_weight[0, 0] += 0.1
    assert TruthModel(changed, data.n_peaks).cache_key != model.cache_key  # another truth: other cached jobs


def _shapley(value, players):
    """Exact Shapley values of `value(frozenset)` over `players` by enumeration."""
    n, out = len(players), {}
    for j in players:
        others = [p for p in players if p != j]
        total = 0.0
        for k in range(n):
            w = factorial(k) * factorial(n - k - 1) / factorial(n)
            for S in itertools.combinations(others, k):
                total += w * (value(frozenset(S) | {j}) - value(frozenset(S)))
        out[j] = total
    return out


def test_integrated_gradients_of_E_is_the_baseline_shapley_value(tiny):
    data, truth, model = tiny
    gene = _small_gene(truth)
    cell_type, cells = _home_cells(data, truth, gene)
    planted = truth.planted_peaks(gene)
    x_all = cells.atac[:, planted].toarray()
    c = int(np.argmax(x_all.sum(1)))  # the cell with the most open planted peaks
    x = torch.as_tensor(cells.atac[c].toarray(), dtype=torch.float64)
    players = [int(j) for j in planted if x[0, j] > 0]
    assert len(players) >= 3

    def E(z):
        return torch.expm1(model.dense(z, genes=[gene], cell_types=cell_type))[:, 0]

    def value(S):
        z = torch.zeros_like(x)
        z[0, list(S)] = 1.0
        return float(E(z))

    ig = CaptumIG(E).attribute(x, baselines=0.0, n_steps=50, method="gausslegendre")[0]
    phi = _shapley(value, players)
    for j in players:
        assert float(ig[j]) == pytest.approx(phi[j], rel=1e-6, abs=1e-9 * abs(value(frozenset(players))))
    others = np.setdiff1d(np.arange(data.n_peaks), players)
    assert float(ig[others].abs().max()) == 0.0  # closed and background peaks get nothing


def test_registered_integrated_gradients_is_complete_on_log1p_E(tiny):
    data, truth, model = tiny
    gene = _small_gene(truth)
    cell_type, cells = _home_cells(data, truth, gene)
    x = torch.as_tensor(cells.atac[:6].toarray(), dtype=torch.float64)
    attribute = IntegratedGradients().attribution(TargetGene(model, gene, cell_type))
    total = attribute(x).sum(1)
    f = TargetGene(model, gene, cell_type)
    np.testing.assert_allclose(total.detach().numpy(), (f(x) - f(torch.zeros_like(x))).detach().numpy(),
                               rtol=1e-6, atol=1e-12)


def test_first_order_methods_give_a_shadowed_group_member_nothing(tiny):
    data, truth, model = tiny
    checked = 0
    for gene in truth.genes:
        groups = truth.redundant_groups(gene)
        if not groups:
            continue
        cell_type, cells = _home_cells(data, truth, gene)
        x = torch.as_tensor(cells.atac.toarray(), dtype=torch.float64)
        for method in (Saliency(), InputXGradient()):
            attr = method.attribution(TargetGene(model, gene, cell_type))(x.clone().requires_grad_(True)).detach()
            for group in groups:
                for j in group:
                    shadowed = (x[:, [m for m in group if m != j]] > 0).any(1)  # another member open
                    checked += int(shadowed.sum())
                    assert not bool(attr[shadowed, j].any()), (gene, j)
    assert checked > 100


def _brute_force(truth, cells, gene, L, weights):
    planted = truth.planted_peaks(gene)
    best = np.inf
    for k in range(L + 1):
        for S in itertools.combinations(planted, k):
            best = min(best, float(np.mean(weights * truth.expression(cells, closed=list(S), genes=[gene])[:, 0])))
    return best


@pytest.mark.parametrize("L", [1, 2, 3])
def test_the_weighted_knapsack_is_brute_force(tiny, L):
    data, truth, _ = tiny
    gene = _small_gene(truth)
    _, cells = _home_cells(data, truth, gene)
    weights = np.random.default_rng(L).uniform(0.2, 2.0, cells.n_cells)
    peaks, left = truth.best_closure(cells, gene, L, weights=weights)
    assert len(peaks) <= L
    value = float(np.mean(weights * truth.expression(cells, closed=peaks, genes=[gene])[:, 0]))
    assert value == pytest.approx(_brute_force(truth, cells, gene, L, weights), rel=1e-12)
    base = float(np.mean(weights * truth.expression(cells, genes=[gene])[:, 0]))
    assert left == pytest.approx(value / base, rel=1e-12)


def test_a_gene_without_a_promoter_has_a_best_closure(tiny):
    data, truth, _ = tiny
    gene = _small_gene(truth)
    _, cells = _home_cells(data, truth, gene)
    no_promoter = copy.deepcopy(truth)
    no_promoter.promoter[no_promoter.gene_index(gene)] = -1
    peaks, _ = no_promoter.best_closure(cells, gene, 2)
    weights = np.ones(cells.n_cells)
    value = float(np.mean(no_promoter.expression(cells, closed=peaks, genes=[gene])[:, 0]))
    assert value == pytest.approx(_brute_force(no_promoter, cells, gene, 2, weights), rel=1e-12)


def _additive(truth, gene):
    """A copy of the truth where `gene` is additive: each redundant group keeps one member (a singleton OR is the
    member itself) and closing the promoter leaves everything (ρ = 1)."""
    out = copy.deepcopy(truth)
    g = out.gene_index(gene)
    out.group[g, :, 1:] = -1
    out.promoter_left[g] = 1.0
    out.__post_init__()
    return out


def test_positive_control_first_order_is_optimal_on_an_additive_gene(tiny):
    data, truth, _ = tiny
    gene = next(g for g in truth.genes if len(truth.redundant_groups(g)) >= 8)  # a marker: 10 groups, 6 singles
    additive = _additive(truth, gene)
    model = TruthModel(additive, data.n_peaks)
    _, cells = _home_cells(data, additive, gene)
    for L in (1, 3, 5, 10):
        expl = InputXGradient().explain(model, cells, gene, L)
        scores = evaluate_selection(model, cells, gene, expl.peaks, additive)
        assert scores["pct_of_optimum"] == pytest.approx(100.0, abs=1e-6), L


def test_negative_control_a_gene_without_planted_peaks(tiny):
    data, truth, model = tiny
    gene = next(g for g in truth.genes if len(truth.planted_peaks(g)) == 0)
    cells = data.cells(data.cell_types[0], "test")
    scores = evaluate_selection(model, cells, gene, np.arange(5), truth)
    assert scores["optimum_rel_delta_pct"] == 0.0 and np.isnan(scores["pct_of_optimum"])
    assert scores["rel_delta_pct"] == 0.0 and scores["n_background"] == 5
