"""Saliency = mean over cells of |∂ŷ/∂x| for every peak, open or closed, checked against gradients taken directly
with torch.autograd and against a hand-built surrogate whose gradients are known exactly.

The helpers here (`hand_model`, `cells`, `all_scores`, `autograd_gradients`) are shared by the other gradient
explainer tests."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from methods.base import Budget
from methods.saliency import Saliency
from surrogates.model import Surrogate, SurrogateConfig
from tests.test_grids import CHROM, cells_with_all_open
from tests.toy_models import STRONG, TARGET, toy_problem

CLOSED = 3  # closed in every cell of `linear_cells`, with the largest gradient of `LINEAR_W`
LINEAR_W = np.zeros(len(CHROM))
LINEAR_W[[2, CLOSED, 5, 8, 10]] = [2.0, 4.0, 1.0, -3.0, 0.5]


def hand_model(w, bias: float) -> Surrogate:
    """target = max(0, Σ_j w_j x_j + bias) + 0.5 exactly: one ReLU unit that every later layer passes on."""
    m = Surrogate(CHROM, ["target", "other"], ["T"], SurrogateConfig(emb_dim=1, hidden=2, latent=1))
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        for lin in m.modules():
            if isinstance(lin, torch.nn.Linear):
                lin.weight[0, 0] = 1.0  # unit 0 of every layer carries the value
        m.emb_open[:, 0] = torch.as_tensor(w, dtype=torch.float32)
        m.first.weight[0] = 1.0  # h0 = Σ over both chromosomes' embedding sums + bias
        m.first.bias[0] = bias
        m.dec_r[-1].bias[:] = torch.tensor([0.5, 1.0])
    return m.eval()


def cells(x):
    """A one-type MultiomeData with the given dense 0/1 ATAC rows (cells × 12 peaks)."""
    return dataclasses.replace(cells_with_all_open(len(x)), atac=sp.csr_matrix(np.asarray(x, dtype=np.uint8)))


def linear_cells(n=40, seed=0):
    """Random cells with peak CLOSED closed in all of them."""
    x = (np.random.default_rng(seed).random((n, len(CHROM))) < 0.5).astype(np.uint8)
    x[:, CLOSED] = 0
    return cells(x)


def all_scores(method, surrogate, data, gene) -> np.ndarray:
    """The method's score of every peak (explained with L = all peaks), in peak order."""
    e = method.explain(surrogate, data, gene, data.n_peaks)
    scores = np.empty(data.n_peaks)
    scores[e.peaks] = e.scores
    return scores


def autograd_gradients(surrogate, data, gene, n_cells=None) -> tuple[np.ndarray, np.ndarray]:
    """(x, ∂ŷ_gene/∂x) for the first `n_cells` cells, taken directly with torch.autograd (no captum)."""
    x = torch.as_tensor(data.atac[:n_cells].toarray(), dtype=torch.float32).requires_grad_(True)
    (grad,) = torch.autograd.grad(surrogate(x)[:, surrogate.gene_index(gene)].sum(), x)
    return x.detach().numpy(), grad.numpy()


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
