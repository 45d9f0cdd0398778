"""Registry-wide checks, parametrised over every registered method (a new method is covered by adding its file):
metadata a table can rely on, L distinct valid peaks, a zero budget, and the `ranking` flag the harness trusts."""

import inspect

import numpy as np
import pytest

from methods import Explainer, registry
from methods.base import Budget
from tests.hand_models import cells_with_all_open, pair_truth, redundant_pair_model

METHODS = registry.available()


def make(name: str, budget: Budget = Budget(seconds=30, samples=10**7), seed: int = 0):
    spec = registry.get(name)
    extra = {"truth": pair_truth()} if spec.needs_truth else {}  # controls that read the simulator's truth
    if spec.needs_background:  # the harness passes the other cell types' training cells; the toy has one type
        extra["background"] = cells_with_all_open(seed=1)
    return spec.cls(seed=seed, budget=budget, **extra)


def test_lookup_errors_list_the_available_methods():
    with pytest.raises(KeyError, match="available: .*grids"):
        registry.get("gridz")


def test_duplicate_names_are_rejected():
    with pytest.raises(ValueError, match="already registered"):
        @registry.register("grids", paper="x")
        class Other(Explainer):
            def explain(self, surrogate, data, gene, L):
                raise NotImplementedError


def test_modules_with_a_leading_underscore_are_not_imported(tmp_path, monkeypatch):
    """A probe package in a temporary folder, read by `import_modules` (the discovery `methods/` goes through):
    each probe module registers itself when imported; under a plain name it is, under `_name` it is not. The
    registry is a copy for the test, so the probe leaves no name behind, and nothing is written to the source tree."""
    import sys

    package = "zz_probe_explainers"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    body = "from methods.random_subset import RandomPeaks\nfrom methods.registry import register\n\n" \
           "@register({name!r}, paper='probe', kind='control', is_baseline=True)\n" \
           "class Probe(RandomPeaks):\n    \"\"\"Probe.\"\"\"\n"
    for stem in ("_zz_probe_helper", "zz_probe_method"):
        (tmp_path / package / f"{stem}.py").write_text(body.format(name=stem))
    before, asked = registry.available(), []
    with monkeypatch.context() as patch:  # the registry's own discovery is this seam, on `methods`
        patch.setattr(registry, "import_modules", lambda package: asked.append(package) or [])
        registry.available()
    assert asked == ["methods"]
    assert set(registry.import_modules("methods")) >= {spec.cls.__module__ for spec in registry.specs()}
    with monkeypatch.context() as patch:
        patch.syspath_prepend(str(tmp_path))
        patch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
        try:
            assert registry.import_modules(package) == [f"{package}.zz_probe_method"]
            assert f"{package}._zz_probe_helper" not in sys.modules
            names = registry.available()
            assert names == before + ["zz_probe_method"]
            assert registry.get("zz_probe_method").cls.__module__ == f"{package}.zz_probe_method"
        finally:
            for name in [m for m in sys.modules if m == package or m.startswith(f"{package}.")]:
                del sys.modules[name]
    assert registry.available() == before  # the probe vanished with the registry's copy


@pytest.mark.parametrize("name", METHODS)
def test_metadata(name):
    spec = registry.get(name)
    assert spec.name == name and spec.cls.spec is spec and issubclass(spec.cls, Explainer)
    assert spec.description and spec.description == inspect.getdoc(spec.cls).splitlines()[0]
    assert spec.is_baseline == (spec.kind == "control")  # controls bound the tables; nothing else is one
    if spec.is_baseline:
        return
    doc = inspect.getdoc(inspect.getmodule(spec.cls))
    assert spec.paper and isinstance(spec.year, int) and 2010 <= spec.year <= 2030
    assert str(spec.year) in doc, "the module docstring cites the paper, with its year"


@pytest.mark.parametrize("name", METHODS)
def test_every_method_returns_L_distinct_valid_peaks(name):
    m, d = redundant_pair_model(), cells_with_all_open()
    expl = make(name).explain(m, d, "target", 4)
    expl.check(d.n_peaks, 4)
    assert expl.status in ("ok", "budget_exceeded", "not_converged")


@pytest.mark.parametrize("name", METHODS)
def test_a_spent_budget_is_reported_not_hidden(name):
    """With no time and no evaluations left, a method that evaluates the surrogate says so (budget_exceeded,
    not_converged or no_estimate with no peaks); one that costs nothing (the controls) still answers `ok`."""
    m, d = redundant_pair_model(), cells_with_all_open()
    expl = make(name, Budget(seconds=0.0, samples=0)).explain(m, d, "target", 4)
    expl.check(d.n_peaks, 4)
    if registry.get(name).is_baseline:
        assert expl.status == "ok" and expl.info["samples"] == 0
    else:
        assert expl.status in ("budget_exceeded", "not_converged", "no_estimate"), expl.status


@pytest.mark.parametrize("name", METHODS)
def test_the_wall_time_safety_stop_is_told_apart_from_the_evaluation_budget(name):
    """A job cut by the clock depends on the machine, so it must say `time_limit` (or `no_estimate` when it had
    nothing yet), never `budget_exceeded`, which promises the same answer on every machine."""
    m, d = redundant_pair_model(), cells_with_all_open()
    expl = make(name, Budget(seconds=0.0, samples=10**9)).explain(m, d, "target", 4)
    expl.check(d.n_peaks, 4)
    allowed = ("ok",) if registry.get(name).is_baseline else ("time_limit", "no_estimate")
    assert expl.status in allowed, expl.status


@pytest.mark.parametrize("name", [n for n in METHODS if registry.get(n).ranking])
def test_ranking_methods_answer_every_L_with_a_prefix_of_one_ranking(name):
    """The harness runs a `ranking` method once at the largest L and scores each L's prefix: that is only right
    if the method's answer for a smaller L is that prefix."""
    m, d = redundant_pair_model(), cells_with_all_open()
    small, large = make(name).explain(m, d, "target", 3), make(name).explain(m, d, "target", 8)
    np.testing.assert_array_equal(small.peaks, large.peaks[:3])


@pytest.mark.parametrize("name", METHODS)
def test_needs_gradients_says_whether_the_method_differentiates_through_the_surrogate(name):
    """Every path through the surrogate passes `enc_a_rest`; a method that takes gradients through the surrogate
    runs it with autograd recording at least once, one that does not (LIME, SAGE, CXPlain's Granger stage, the
    controls) only ever under torch.no_grad."""
    m, d = redundant_pair_model(), cells_with_all_open()
    recorded = []
    handle = m.enc_a_rest.register_forward_hook(lambda mod, inp, out: recorded.append(out.requires_grad))
    try:
        make(name).explain(m, d, "target", 4)
    finally:
        handle.remove()
    assert any(recorded) == registry.get(name).needs_gradients
