"""The model protocol (surrogates/protocol.py): every registered method runs on every model kind, the generic paths
give the fast paths' answers, a user's torch module can be explained, and no explainer reads the truth's labels.

* contract: each registered method on the trained surrogate, on the same surrogate with its fast paths hidden, on
  the simulator's truth model and on a user's torch module (tiny scale, one gene, L = 8): a valid explanation, not
  `failed`; on the truth model no job exceeds 100 % of the optimum;
* fast = generic: the tiny golden grid on the surrogate with its fast paths hidden selects the committed peaks and
  reproduces the committed leaderboard within the golden tolerances; per method, the explanation's scores agree
  within 1e-4 relative;
* a user's model: `bench.run(model=...)` with a short torch module runs GRIDS, Integrated Gradients and Random;
  a wrong output shape is one clear error; its cache key follows its weights.
"""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import bench
from bench.config import PROFILES
from bench.errors import UserError
from bench.running.runner import Job, make_explainer, run_task
from datasets.synthetic import simulate
from methods import registry
from surrogates.protocol import (ExplainedModel, ModelOutputError, TorchModel, as_model, state_hash,
                                 without_fast_paths)
from surrogates.truth import TruthModel
from tests.hand_models import RequiredOnly
from tests.test_golden_leaderboard import DATA, _pinned_methods, assert_same_leaderboard, assert_same_selections, \
    selections

CELL_TYPE, GENE, L = "Oligo", "MOG", 8


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny data, its truth and the tiny profile's paired surrogate (trained once, in a private cache)."""
    from bench.running.pipeline import fit_surrogate

    cache = tmp_path_factory.mktemp("cache")
    data, truth = simulate("tiny", seed=0)
    surrogate = fit_surrogate(PROFILES["tiny"], data, "paired", device="cpu", cache_dir=cache, progress=False)
    return data, truth, surrogate, cache


class Linear(nn.Module):
    """A user's model: log-expression = softplus(x W + b), columns in the data's gene order."""

    def __init__(self, n_peaks: int, n_genes: int, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(n_peaks, n_genes, generator=gen) * 0.05)
        self.bias = nn.Parameter(torch.ones(n_genes))

    def forward(self, x):
        return nn.functional.softplus(x @ self.weight + self.bias)


def _models(data, truth, surrogate):
    return {"surrogate": surrogate, "generic": without_fast_paths(surrogate),
            "truth": TruthModel(truth, data.n_peaks),
            "torch": TorchModel(Linear(data.n_peaks, data.n_genes), data.gene_names, data.n_peaks)}


@pytest.mark.parametrize("kind", ["surrogate", "generic", "truth", "torch"])
def test_every_method_runs_on_every_model_kind(tiny, kind):
    data, truth, surrogate, _ = tiny
    model = _models(data, truth, surrogate)[kind]
    assert isinstance(model, ExplainedModel)
    profile = PROFILES["tiny"].for_truth_tier() if kind == "truth" else PROFILES["tiny"]
    for spec in registry.specs():
        job = Job(spec.name, CELL_TYPE, GENE, L, 0)
        result = run_task([job], profile.method_params.get(spec.name, {}), profile.budget_for(spec.name), model,
                          data, truth)[0]
        assert result.status not in ("failed",), f"{spec.name} on {kind}: {result.error}\n{result.traceback}"
        if result.status != "no_estimate":
            assert len(set(result.peaks)) == L
        if kind == "truth":
            assert result.metrics["pct_of_optimum"] <= 100 + 1e-6, spec.name
            assert result.metrics["rel_delta_pct"] >= result.metrics["optimum_rel_delta_pct"] - 1e-6, spec.name


# Scores that are differences of two O(1) float32 objectives (GRIDS's leave-one-out: the eq. 2 loss, ~1, with one
# member re-opened minus without, ~3e-5 on the tiny surrogate) carry float32's ~1e-7 absolute rounding on either
# path, i.e. ~0.3 % of their size: they are compared in the loss's unit instead of relatively.
SCORE_ATOL = {"grids": 1e-6, "grids-mean": 1e-6, "grids-groups": 1e-6}


def test_fast_and_generic_paths_explain_alike(tiny):
    """Per method: the same peaks and scores within 1e-4 relative (`SCORE_ATOL` for differences of losses), fast
    paths on or hidden."""
    data, truth, surrogate, _ = tiny
    train = data.cells(CELL_TYPE, "train")
    generic = without_fast_paths(surrogate)
    params = PROFILES["tiny"].method_params
    for spec in registry.specs():
        answers = []
        for model in (surrogate, generic):
            with surrogate.evaluating():
                explainer = make_explainer(spec.name, 0, None, params.get(spec.name, {}), data, CELL_TYPE, truth)
                answers.append(explainer.explain(model, train, GENE, L))
        fast, slow = answers
        if spec.cls.__module__ == "methods.grids":  # the surrogate really took the fast path (any Python version)
            assert (fast.info["path"], slow.info["path"]) == ("embedding bags", "generic")
        assert set(fast.peaks) == set(slow.peaks), spec.name
        if fast.scores is not None:
            np.testing.assert_allclose(np.sort(slow.scores), np.sort(fast.scores), rtol=1e-4,
                                       atol=SCORE_ATOL.get(spec.name, 1e-4 * float(np.abs(fast.scores).max())),
                                       err_msg=spec.name)


def test_the_tiny_golden_grid_without_fast_paths(tiny, tmp_path):
    """The golden run's grid (tests/test_golden_leaderboard.py) on the generic paths: the committed peaks, and the
    committed leaderboard within the golden tolerances."""
    data, truth, surrogate, cache = tiny
    expected = "tiny_leaderboard.csv"
    bench.run("tiny", model=without_fast_paths(surrogate), methods=_pinned_methods(expected), cell_types=["Oligo"],
              L=[3, 8], cache_dir=cache, out=tmp_path / "out", progress=False)
    assert_same_selections(selections(tmp_path / "out" / "jobs.jsonl"), expected)
    assert_same_leaderboard(pd.read_csv(tmp_path / "out" / "leaderboard.csv"), pd.read_csv(DATA / expected))


def test_bring_your_own_torch_module(tiny, tmp_path):
    data, truth, surrogate, cache = tiny
    module = Linear(data.n_peaks, data.n_genes)
    long = bench.run("tiny", model=module, methods=["grids", "integrated-gradients", "random"],
                     cell_types=["Oligo"], L=[5], cache_dir=cache, out=tmp_path / "mine", progress=False)
    records = long.attrs["records"]
    assert {r["method"] for r in records} == {"grids", "integrated-gradients", "random"}
    assert all(r["status"] == "ok" and len(r["peaks"]) == 5 for r in records)
    header = (tmp_path / "mine" / "leaderboard.md").read_text()
    assert "your model `tests.test_protocol.Linear`" in header and state_hash(module) in header
    again = bench.run("tiny", model=module, methods=["random"], cell_types=["Oligo"], L=[5], cache_dir=cache,
                      progress=False)
    assert all(r.get("cached") for r in again.attrs["records"])  # same class and weights: reused
    other = bench.run("tiny", model=Linear(data.n_peaks, data.n_genes, seed=1), methods=["random"],
                      cell_types=["Oligo"], L=[5], cache_dir=cache, progress=False)
    assert not any(r.get("cached") for r in other.attrs["records"])  # retrained: never another model's jobs


def test_a_wrong_model_is_one_clear_error(tiny):
    data, *_ = tiny

    class Wrong(nn.Module):
        def forward(self, x):
            return x[:, :3]

    with pytest.raises(ModelOutputError, match=r"log-expression \[cells × 40 genes\].*returned \(2, 3\)"):
        TorchModel(Wrong(), data.gene_names, data.n_peaks)
    with pytest.raises(UserError, match="returned"):
        bench.run("tiny", model=Wrong(), methods=["random"], cell_types=["Oligo"], L=[5], progress=False)
    with pytest.raises(TypeError, match="missing: .*predict"):
        as_model(object(), data)


def test_the_truth_tier_needs_the_simulator():
    with pytest.raises(UserError, match="synthetic data only"):
        bench.run("tiny", surrogate="truth", data="rna.h5ad,atac.h5ad")


def test_no_explainer_but_the_oracle_reads_the_truth_s_group_labels(tiny):
    """Surrogate tier, data and surrogate fixed: shuffling which planted peaks form which group (and which is the
    promoter) changes no other method's answer; the harness hands the truth to `needs_truth` methods only."""
    import copy

    data, truth, surrogate, _ = tiny
    shuffled = copy.deepcopy(truth)
    rng = np.random.default_rng(0)
    g = shuffled.gene_index(GENE)
    slots = np.concatenate([[shuffled.promoter[g]], shuffled.group[g].ravel(), shuffled.single[g]])
    real = slots >= 0
    slots[real] = rng.permutation(slots[real])
    shuffled.promoter[g] = slots[0]
    shuffled.group[g] = slots[1:1 + shuffled.group[g].size].reshape(shuffled.group[g].shape)
    shuffled.single[g] = slots[1 + shuffled.group[g].size:]
    for spec in registry.specs():
        if spec.needs_truth:
            continue
        params, budget = PROFILES["tiny"].method_params.get(spec.name, {}), PROFILES["tiny"].budget_for(spec.name)
        job = Job(spec.name, CELL_TYPE, GENE, L, 0)
        a = run_task([job], params, budget, surrogate, data, truth)[0]
        b = run_task([job], params, budget, surrogate, data, shuffled)[0]
        assert a.peaks == b.peaks, spec.name


def test_fit_has_nothing_to_train_on_the_truth(capsys):
    from bench.cli import main

    assert main(["fit", "--scale", "tiny", "--surrogate", "truth", "--no-progress"]) == 0
    assert "nothing to train" in capsys.readouterr().err


def test_the_tiers_never_share_cached_jobs(tiny, tmp_path):
    """Same data, same cache, same jobs: the truth tier does not reuse the surrogate tier's records, nor the
    reverse; each reuses its own on a second run; the header names the explained model."""
    data, truth, surrogate, cache = tiny
    common = dict(methods=["random", "input-x-gradient"], cell_types=["Oligo"], L=[5], cache_dir=cache,
                  progress=False)
    first = bench.run("tiny", surrogate="paired", **common)
    truth_run = bench.run("tiny", surrogate="truth", out=tmp_path / "truth", **common)
    assert not any(r.get("cached") for r in truth_run.attrs["records"])
    assert all(r["pct_of_optimum"] is not None for r in truth_run.attrs["records"])
    assert "Explained model: the simulator's exact expression function" in (tmp_path / "truth" /
                                                                            "leaderboard.md").read_text()
    assert all(r.get("cached") for r in bench.run("tiny", surrogate="truth", **common).attrs["records"])
    assert all(r.get("cached") for r in bench.run("tiny", surrogate="paired", **common).attrs["records"])
    assert all("pct_of_optimum" not in r for r in first.attrs["records"])
    with pytest.raises(UserError, match="surrogate-seeds"):
        bench.run("tiny", surrogate="truth", surrogate_seeds=2, **common)


def test_the_surrogate_offers_its_fast_paths():
    from surrogates.protocol import AdditiveHidden, EmbeddingBags, offers

    data, _ = simulate("tiny", seed=0)
    from surrogates.train import build_surrogate
    from surrogates.model import SurrogateConfig

    s = build_surrogate(data, SurrogateConfig(hidden=16))
    assert offers(s, ExplainedModel) and offers(s, AdditiveHidden) and offers(s, EmbeddingBags)
    assert not offers(without_fast_paths(s), AdditiveHidden) and offers(without_fast_paths(s), ExplainedModel)


def test_on_the_truth_tier_explainers_need_nothing_but_the_protocol(tiny):
    """Every method but the oracle gives the same peaks on the truth model and on a view of it that has only the
    protocol's required members: none reads the truth it wraps, its optimum or its labels, and its fast paths (input
    support, closed form) change no answer."""
    from surrogates.protocol import CAPABILITIES, FAST_PATHS, offers

    data, truth, _, _ = tiny
    model = TruthModel(truth, data.n_peaks)
    view = RequiredOnly(model)
    assert offers(view, ExplainedModel) and not any(offers(view, c) for c in (*FAST_PATHS, *CAPABILITIES))
    generic = without_fast_paths(model)  # hides the input support, keeps the optimum (not an explainer's to read)
    assert not hasattr(generic, "truth") and hasattr(generic, "best_closure") and not hasattr(generic, "input_support")
    train = data.cells(CELL_TYPE, "train")
    params = PROFILES["tiny"].method_params
    for spec in registry.specs():
        if spec.needs_truth:
            continue
        a, b = (make_explainer(spec.name, 0, None, params.get(spec.name, {}), data, CELL_TYPE).explain(m, train, GENE, L)
                for m in (model, view))
        assert list(a.peaks) == list(b.peaks), spec.name


def test_a_generic_view_of_the_truth_model_keeps_its_optimum(tiny):
    """`without_fast_paths` hides what is about speed only: a GRIDS job on the truth model seen without its fast
    paths still gets the optimum and its % of it, the same as on the model itself (same peaks, same metrics)."""
    data, truth, _, _ = tiny
    model = TruthModel(truth, data.n_peaks)
    profile = PROFILES["tiny"].for_truth_tier()
    job = Job("grids", CELL_TYPE, GENE, L, 0)
    fast, generic = (run_task([job], profile.method_params.get("grids", {}), profile.budget_for("grids"), m, data,
                              truth)[0] for m in (model, without_fast_paths(model)))
    assert generic.status == fast.status == "ok" and generic.peaks == fast.peaks
    for key in ("optimum_rel_delta_pct", "pct_of_optimum", "rel_delta_pct"):
        assert key in generic.metrics, key
        assert generic.metrics[key] == pytest.approx(fast.metrics[key], rel=1e-12, abs=1e-12), key
    assert 0 < generic.metrics["pct_of_optimum"] <= 100 + 1e-6


def test_a_generic_view_hides_the_fast_paths_and_keeps_every_other_capability(tiny):
    """On every model kind: no fast path through the view; each other capability the model has, the view has too
    (`cell_state` and `cpu` always: a fallback to predictions, and a view that stays put); asking `fast_path` for a
    capability that is not about speed, or `capability` for a fast path, is a TypeError."""
    import copy

    from surrogates.protocol import (CAPABILITIES, FAST_PATHS, AdditiveHidden, CellState, KnownOptimum, Movable,
                                     cache_key_of, capability, fast_path, meta_of)

    data, truth, surrogate, _ = tiny
    for kind, model in _models(data, truth, surrogate).items():
        view = without_fast_paths(model)
        assert all(fast_path(view, c) is None for c in FAST_PATHS), kind
        for cap in CAPABILITIES:
            always = cap in (CellState, Movable)
            assert (capability(view, cap) is not None) == (always or capability(model, cap) is not None), (kind, cap)
        assert meta_of(view) == meta_of(model) and cache_key_of(view) == cache_key_of(model), kind
    assert capability(without_fast_paths(TruthModel(truth, data.n_peaks)), KnownOptimum) is not None
    moved = copy.deepcopy(without_fast_paths(surrogate)).cpu()  # what the harness sends to dask workers
    assert moved.device.type == "cpu" and fast_path(moved, AdditiveHidden) is None
    assert fast_path(surrogate, AdditiveHidden) is surrogate  # the original is untouched
    with pytest.raises(TypeError, match="not a fast path"):
        fast_path(surrogate, KnownOptimum)
    with pytest.raises(TypeError, match="not a capability"):
        capability(surrogate, AdditiveHidden)


class _Bare:
    """A user's model with the protocol's members only (no meta, no cache_key): a linear model in numpy terms."""

    def __init__(self, data):
        self.gene_names, self.n_peaks, self.n_genes = list(data.gene_names), data.n_peaks, data.n_genes
        self.w = torch.as_tensor(np.random.default_rng(0).normal(0, 0.05, (data.n_peaks, data.n_genes)))
        self.device = torch.device("cpu")

    def gene_index(self, gene):
        return self.gene_names.index(gene)

    def dense(self, x, genes=None, cell_types=None):
        y = nn.functional.softplus(x.double() @ self.w + 1.0)
        return y if genes is None else y[:, [self.gene_index(g) for g in genes]]

    def predict(self, atac, closed=None, genes=None, cell_types=None):
        from surrogates.protocol import close_columns

        with torch.no_grad():
            return self.dense(torch.as_tensor(close_columns(atac, closed).toarray()), genes)

    def evaluating(self):
        import contextlib

        return contextlib.nullcontext()


def test_a_bare_protocol_object_runs_uncached_and_reports(tiny, tmp_path):
    data, *_ , cache = tiny
    long = bench.run("tiny", model=_Bare(data), methods=["grids", "random"], cell_types=["Oligo"], L=[4],
                     cache_dir=cache, out=tmp_path / "bare", progress=False)
    assert all(r["status"] == "ok" and not r.get("cached") for r in long.attrs["records"])
    assert "no cache key" in (tmp_path / "bare" / "leaderboard.md").read_text()


def test_counting_model_counts_rows_through_the_outputs_and_changes_no_answer():
    from methods.saliency import Saliency
    from surrogates.protocol import AdditiveHidden, CountingModel, fast_path
    from tests.toy_models import TARGET, toy_problem

    p = toy_problem()
    counted = CountingModel(p.surrogate)
    assert fast_path(counted, AdditiveHidden) is counted  # fast paths pass through
    counted.predict(p.train.atac, genes=[TARGET])
    assert counted.evaluations == p.train.n_cells
    batch = counted.sparse_batch(p.train.atac[:5])
    counted.head(counted.first_hidden(batch))  # intermediate layers are not counted, the output is
    assert counted.evaluations == p.train.n_cells + 5
    e = Saliency().explain(counted, p.train, TARGET, 3)
    assert counted.evaluations == 2 * p.train.n_cells + 5  # one dense pass per cell
    np.testing.assert_array_equal(e.peaks, Saliency().explain(p.surrogate, p.train, TARGET, 3).peaks)
