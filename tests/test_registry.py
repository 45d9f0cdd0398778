"""Registry-wide checks: every registered method runs on a tiny surrogate and returns L distinct valid peaks."""

import numpy as np
import pytest

from methods.base import Budget
from methods import Explainer, registry
from tests.test_grids import cells_with_all_open, redundant_pair_model


def test_registry_metadata_and_lookup_errors():
    names = registry.available()
    assert {"grids", "random", "saliency", "smoothgrad"} <= set(names)
    assert registry.get("random").is_baseline and not registry.get("grids").is_baseline
    assert registry.get("grids").needs_gradients
    with pytest.raises(KeyError, match="available: .*grids"):
        registry.get("gridz")


def test_duplicate_names_are_rejected():
    with pytest.raises(ValueError, match="already registered"):
        @registry.register("grids", paper="x")
        class Other(Explainer):
            def explain(self, surrogate, data, gene, L):
                raise NotImplementedError


@pytest.mark.parametrize("name", registry.available())
def test_every_method_returns_L_distinct_valid_peaks(name):
    from tests.test_oracle import pair_truth

    m, d = redundant_pair_model(), cells_with_all_open()
    spec = registry.get(name)
    extra = {"truth": pair_truth()} if spec.needs_truth else {}  # controls that read the simulator's truth
    expl = spec.cls(seed=0, budget=Budget(seconds=30, samples=10**7), **extra).explain(m, d, "target", 4)
    expl.check(d.n_peaks, 4)
    assert expl.status in ("ok", "budget_exceeded", "not_converged")
    assert expl.peaks.dtype == np.int64
