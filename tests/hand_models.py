"""Hand-built surrogates and cells whose right answers are known exactly, shared by the explainer tests.

* `redundant_pair_model` + `cells_with_all_open`: target ∝ soft-OR(x_A, x_B) + decoys C, D with larger single
  effects (GRIDS finds the pair, gradient rankings prefer the decoys); `pair_truth` is the simulator-style truth
  of the same structure (the oracle's tests).
* `hand_model(w, bias)`: target = max(0, Σ_j w_j x_j + bias) + 0.5, whose gradients are known by hand;
  `LINEAR_W` with peak `CLOSED` closed in every cell of `linear_cells`; `kink_model` puts a ReLU kink at 0.5.
* `all_scores`, `autograd_gradients`: a method's score of every peak, and gradients straight from autograd.
* `check_vanishing_noise_gives`, `check_seeded`: shared checks of the noise-averaged (SmoothGrad) methods.
"""

import dataclasses

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from datasets.data import MultiomeData, assign_split
from datasets.synthetic import SyntheticTruth
from surrogates.model import Surrogate, SurrogateConfig
from tests.toy_models import TARGET, toy_problem

A, B, C, D = 1, 4, 7, 9
CHROM = np.array([0] * 6 + [1] * 6)


def redundant_pair_model() -> Surrogate:
    m = Surrogate(CHROM, ["target", "other"], ["T"], SurrogateConfig(emb_dim=1, hidden=4, latent=2))
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        m.emb_open[[A, B], 0] = 1.0  # s0 = x_a + x_b
        m.emb_open[C, 0], m.emb_open[D, 0] = 1.0, 0.5  # s1 = x_c + 0.5 x_d
        m.first.weight[0, 0] = 1.0  # h0 = s0
        m.first.weight[1, 0], m.first.bias[1] = 1.0, -1.0  # h1 = s0 - 1
        m.first.weight[2, 1] = 1.0  # h2 = s1
        lin1, lin2 = m.enc_a_rest[1], m.enc_a_rest[3]
        lin1.weight[0, 0], lin1.weight[0, 1] = 1.0, -0.97  # soft OR: relu(s0) - 0.97 relu(s0 - 1)
        lin1.weight[1, 2] = 1.0
        lin2.weight[0, 0], lin2.weight[0, 1] = 5.0, 1.0  # z0 = 5 OR + s1
        for mlp in (m.f_ar, m.dec_r):  # pass z0 straight through to the target gene
            linears = [l for l in mlp if isinstance(l, torch.nn.Linear)]
            for lin in linears[:-1]:
                lin.weight[0, 0] = 1.0
            linears[-1].weight[0, 0] = 1.0
        m.dec_r[-1].bias[:] = torch.tensor([0.5, 1.0])
    return m.eval()


def cells_with_all_open(n=40, seed=0) -> MultiomeData:
    rng = np.random.default_rng(seed)
    x = (rng.random((n, len(CHROM))) < 0.4).astype(np.uint8)
    x[:, [A, B, C, D]] = 1
    obs = pd.DataFrame({"cell_type": pd.Categorical(["T"] * n)}, index=[f"c{i}" for i in range(n)])
    obs["split"] = assign_split(obs["cell_type"], 0)
    peaks = pd.DataFrame({"chrom": [f"chr{c + 1}" for c in CHROM], "start": np.arange(12) * 1000,
                          "end": np.arange(12) * 1000 + 500})
    genes = pd.DataFrame({"chrom": ["chr1", "chr1"], "tss": [0, 0]}, index=["target", "other"])
    return MultiomeData(sp.csr_matrix(x), np.zeros((n, 2), np.float32), obs, peaks, genes)


def pair_truth() -> SyntheticTruth:
    """target = 10 · (0.2 + 0.8 · (w·OR(x_A, x_B) + 0.3·x_C) / (1 + 0.3)), promoter D closing leaves 70 %;
    'other' has no planted peaks. Closing C alone (a single enhancer) beats closing A or B alone, but the pair
    {A, B} beats any other two peaks: the redundancy a first-order ranking misses."""
    return SyntheticTruth(
        genes=["target", "other"], cell_types=["T"],
        promoter=np.array([D, -1]), promoter_left=np.array([0.7, 1.0]),
        group=np.array([[[A, B]], [[-1, -1]]]), group_weight=np.array([[1.0], [0.0]]),
        single=np.array([[C], [-1]]), single_weight=np.array([[0.3], [0.0]]),
        floor=np.array([0.2, 1.0]), trans=np.ones((1, 2)), magnitude=np.array([10.0, 5.0]))


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


KINK = 6  # the only peak of `kink_model`: target = max(0, x_KINK − 0.5) + 0.5


def kink_model():
    w = np.zeros(len(CHROM))
    w[KINK] = 1.0
    return hand_model(w, bias=-0.5)


def check_vanishing_noise_gives(smooth_cls, plain_cls):
    """With σ → 0 every noisy copy is the clean cell: the smoothed scores equal the plain method's."""
    toy = toy_problem()
    smooth = all_scores(smooth_cls(n_samples=4, stdev=1e-5), toy.surrogate, toy.train, TARGET)
    plain = all_scores(plain_cls(), toy.surrogate, toy.train, TARGET)
    np.testing.assert_allclose(smooth, plain, rtol=1e-3, atol=1e-5)


def check_seeded(cls):
    """Same seed, same scores; another seed, other noise; torch's global generator is left as it was."""
    toy = toy_problem()
    state = torch.random.get_rng_state()
    first, again, other = (all_scores(cls(n_samples=4, seed=seed), toy.surrogate, toy.train, TARGET)
                           for seed in (0, 0, 1))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other, rtol=1e-4, atol=0)
    assert torch.equal(torch.random.get_rng_state(), state)


E, F = 2, 11  # the third member of `triple_truth`'s group (chromosome 0) and a third single enhancer (chromosome 1)


def triple_truth() -> SyntheticTruth:
    """target = 10 · (0.2 + 0.8 · (OR(x_A, x_B, x_E) + 0.3 (x_C + x_D + x_F)) / 1.9), no promoter: closing the
    three-member group removes more (1.0) than closing the three single enhancers (0.9), but one member or two
    remove the group's share only in the cells where the others are already closed (see `triple_cells`)."""
    return SyntheticTruth(
        genes=["target", "other"], cell_types=["T"],
        promoter=np.array([-1, -1]), promoter_left=np.array([1.0, 1.0]),
        group=np.array([[[A, B, E]], [[-1, -1, -1]]]), group_weight=np.array([[1.0], [0.0]]),
        single=np.array([[C, D, F], [-1, -1, -1]]), single_weight=np.array([[0.3, 0.3, 0.3], [0.0, 0.0, 0.0]]),
        floor=np.array([0.2, 1.0]), trans=np.ones((1, 2)), magnitude=np.array([10.0, 5.0]))


def triple_cells(n=200, seed=0) -> MultiomeData:
    """Cells where each group member of `triple_truth` is open with probability 0.8 and the single enhancers always:
    a pair of members is worth the group's effect in the ~20 % of cells where the third is closed (0.2 < 0.3, a
    single's), one member in ~4 %: from the three singles, every one-peak swap loses."""
    rng = np.random.default_rng(seed)
    x = (rng.random((n, len(CHROM))) < 0.3).astype(np.uint8)
    x[:, [A, B, E]] = rng.random((n, 3)) < 0.8
    x[:, [C, D, F]] = 1
    return cells(x)


class RequiredOnly:
    """`model` seen through the protocol's required members alone: no capability, no fast path, no read peaks."""

    def __init__(self, model):
        self.gene_names, self.n_peaks, self.n_genes, self.device = (model.gene_names, model.n_peaks, model.n_genes,
                                                                    model.device)
        self.gene_index, self.predict, self.dense, self.evaluating = (model.gene_index, model.predict, model.dense,
                                                                      model.evaluating)
