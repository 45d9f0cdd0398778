"""The truth model's closed form (surrogates/truth.py `_ClosedForm`, the `ClosedForm` fast path of
surrogates/protocol.py) against the generic path it replaces, in every world (tiny scale, development seed 1):

* `local_dense` equals `dense` (plain autograd over the same formula) in value and in gradient at real-valued x
  inside and outside [0, 1] (IG paths, SmoothGrad noise), float64, to 1e-9: OR, AND, single and silencer units and
  the promoter;
* `reads` / `readers` agree with the planted truth, and a gene's output does not move when a peak it does not read
  changes;
* GRIDS on the closed form (`_LocalSearch`) picks the same peaks as on the generic path, scores within 1e-9, for the
  eq. 2 objective on every gene, on a gene sample (with and without sampled gains) and the mean objective;
* the deterministic gradient explainers (Saliency, Input × Gradient, Integrated Gradients, Expected Gradients) give
  the same peaks, scores within float32 rounding; the evaluator's closure gradients are the same.
"""

import functools

import numpy as np
import pytest
import torch

from bench.scoring.evaluate import evaluate_selection
from datasets.markers import PAPER_MARKERS
from datasets.synthetic import scale_with, simulate
from datasets.worlds import WORLDS
from methods import registry
from methods.grids import Grids
from surrogates.protocol import ClosedForm, cell_types_of, fast_path, without_fast_paths
from surrogates.truth import TruthModel

SEED = 1


@functools.cache
def _world(world: str):
    data, truth = simulate(scale_with("tiny", {"world": world}), seed=SEED)
    return data, truth, TruthModel(truth, data.n_peaks)


def _marker(data, truth):
    """The first paper marker present, with its home type's training cells."""
    for ct, genes in PAPER_MARKERS.items():
        for gene in genes:
            if gene in truth.genes and ct in data.cell_types and data.cells(ct, "train").n_cells >= 10:
                return ct, gene
    raise AssertionError("no marker in the tiny simulation")


@pytest.mark.parametrize("world", sorted(WORLDS))
def test_closed_form_equals_autograd_in_value_and_gradient(world):
    data, _, model = _world(world)
    assert fast_path(model, ClosedForm) is model and fast_path(without_fast_paths(model), ClosedForm) is None
    types = cell_types_of(data)[:24]
    rng = np.random.default_rng(0)
    base = data.atac[:24].toarray().astype(np.float64)
    genes = np.arange(model.n_genes)
    peaks = model.reads(genes)
    for x_np in (base, np.clip(base + rng.normal(0, 0.3, base.shape), -0.3, 1.3), rng.random(base.shape)):
        x = torch.as_tensor(x_np).requires_grad_(True)
        y = model.dense(x, cell_types=types)
        w = torch.as_tensor(rng.normal(size=y.shape))
        (g_auto,) = torch.autograd.grad((y * w).sum(), x)
        x_loc = torch.as_tensor(x_np[:, peaks]).requires_grad_(True)
        y_loc = model.local_dense(x_loc, peaks, genes, cell_types=types)
        (g_loc,) = torch.autograd.grad((y_loc * w).sum(), x_loc)
        np.testing.assert_allclose(y_loc.detach().numpy(), y.detach().numpy(), rtol=0, atol=1e-9)
        np.testing.assert_allclose(g_loc.numpy(), g_auto.numpy()[:, peaks], rtol=0, atol=1e-9)
        assert not g_auto.numpy()[:, np.setdiff1d(np.arange(data.n_peaks), peaks)].any()  # background reads nothing


@pytest.mark.parametrize("world", ["redundant", "mixed"])
def test_reads_and_readers_follow_the_planted_truth(world):
    data, truth, model = _world(world)
    types = cell_types_of(data)[:8]
    for gene in truth.genes[:40]:
        gi = truth.gene_index(gene)
        read = model.reads([gi])
        np.testing.assert_array_equal(read, np.sort(truth.planted_peaks(gene)))
        assert all(gi in model.readers([p]) for p in read)
        # a gene's output from its own peaks only: the rest of the row does not matter
        x = torch.as_tensor(data.atac[:8].toarray(), dtype=torch.float64)
        full = model.dense(x, genes=[gene], cell_types=types)[:, 0]
        local = model.local_dense(x[:, read], read, [gi], cell_types=types)[:, 0]
        np.testing.assert_allclose(local.numpy(), full.detach().numpy(), rtol=0, atol=1e-12)
    background = np.setdiff1d(np.arange(data.n_peaks), model.input_support())[:50]
    assert model.readers(background).size == 0


GRIDS_VARIANTS = {"eq. 2": {}, "gene sample": {"off_target_genes": 5},
                  "gene sample, sampled gains": {"off_target_genes": 5, "sampled_gains": True},
                  "mean": {"objective": "mean"}}


@pytest.mark.parametrize("world", ["redundant", "synergy", "silencer", "mixed"])
@pytest.mark.parametrize("variant", sorted(GRIDS_VARIANTS))
def test_grids_closed_form_matches_the_generic_path(world, variant):
    data, truth, model = _world(world)
    ct, gene = _marker(data, truth)
    cells = data.cells(ct, "train")
    fast = Grids(steps=60, seed=3, **GRIDS_VARIANTS[variant]).explain(model, cells, gene, 5)
    slow = Grids(steps=60, seed=3, **GRIDS_VARIANTS[variant]).explain(without_fast_paths(model), cells, gene, 5)
    assert fast.info["path"] == "closed form" and slow.info["path"] == "generic"
    np.testing.assert_array_equal(fast.peaks, slow.peaks)
    np.testing.assert_allclose(fast.scores, slow.scores, rtol=0, atol=1e-9)
    assert fast.info["swaps"] == slow.info["swaps"]
    np.testing.assert_allclose(fast.info["final_loss"], slow.info["final_loss"], rtol=0, atol=1e-9)


@pytest.mark.parametrize("method", ["saliency", "input-x-gradient", "integrated-gradients", "expected-gradients"])
def test_gradient_explainers_on_the_closed_form_match_the_generic_path(method):
    data, truth, model = _world("redundant")
    ct, gene = _marker(data, truth)
    cells = data.cells(ct, "train")
    spec = registry.get(method)
    extra = {}
    if spec.needs_background:
        mask = (data.obs["split"] == "train").to_numpy() & (data.obs["cell_type"] != ct).to_numpy()
        extra = {"background": data.subset(mask), "nsamples": 20}
    fast = spec.cls(seed=0, **extra).explain(model, cells, gene, 10)
    slow = spec.cls(seed=0, **extra).explain(without_fast_paths(model), cells, gene, 10)
    np.testing.assert_array_equal(fast.peaks, slow.peaks)
    np.testing.assert_allclose(fast.scores, slow.scores, rtol=1e-5, atol=1e-9)  # float32 gradients of x


def test_the_evaluator_s_closure_gradients_use_the_closed_form():
    data, truth, model = _world("redundant")
    ct, gene = _marker(data, truth)
    test = data.cells(ct, "test")
    peaks = truth.planted_peaks(gene)[:6]
    fast = evaluate_selection(model, test, gene, peaks, truth)
    slow = evaluate_selection(without_fast_paths(model), test, gene, peaks, truth)
    assert fast["first_order_rel_delta_pct"] == pytest.approx(slow["first_order_rel_delta_pct"], abs=1e-6)
    assert fast["rel_delta_pct"] == pytest.approx(slow["rel_delta_pct"], abs=1e-9)


class _SupportOnly:
    """The truth model with the required members and `input_support` only (a user's model that declares which
    peaks it reads): GRIDS's generic path then takes its gains on those columns."""

    def __init__(self, model):
        self.gene_names, self.n_peaks, self.n_genes, self.device = (model.gene_names, model.n_peaks, model.n_genes,
                                                                    model.device)
        self.gene_index, self.predict, self.dense, self.evaluating = (model.gene_index, model.predict, model.dense,
                                                                      model.evaluating)
        self.input_support = model.input_support


def test_a_declared_input_support_narrows_the_generic_path_without_changing_answers():
    data, truth, model = _world("redundant")
    ct, gene = _marker(data, truth)
    cells = data.cells(ct, "train")
    narrow = Grids(steps=40, seed=2).explain(_SupportOnly(model), cells, gene, 5)
    wide = Grids(steps=40, seed=2).explain(without_fast_paths(model), cells, gene, 5)
    assert narrow.info["path"] == wide.info["path"] == "generic"
    np.testing.assert_array_equal(narrow.peaks, wide.peaks)
    np.testing.assert_allclose(narrow.scores, wide.scores, rtol=0, atol=1e-9)
    saliency = registry.get("saliency").cls(seed=0)
    np.testing.assert_array_equal(saliency.explain(_SupportOnly(model), cells, gene, 10).peaks,
                                  saliency.explain(without_fast_paths(model), cells, gene, 10).peaks)
