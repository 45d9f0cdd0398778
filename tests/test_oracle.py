"""The oracle control: the best closure of L planted peaks under a hand-built truth, topped up at large L."""

import itertools

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from datasets.data import MultiomeData, assign_split
from datasets.synthetic import SyntheticTruth
from methods import registry
from methods.oracle import Oracle
from tests.hand_models import A, B, C, D, cells_with_all_open, redundant_pair_model
from tests.hand_models import pair_truth


def test_registered_as_a_control_that_needs_the_truth():
    spec = registry.get("oracle")
    assert spec.is_baseline and spec.needs_truth and spec.kind == "control"
    assert "oracle" not in registry.default_methods(truth_available=False)
    assert "oracle" in registry.default_methods(truth_available=True)


def test_without_truth_it_says_why():
    with pytest.raises(ValueError, match="synthetic data only"):
        Oracle().explain(redundant_pair_model(), cells_with_all_open(), "target", 2)


def random_truth(rng, n_cells: int = 30):
    """A random gene with a promoter, 2–3 redundant groups of 2–4 members and 1–3 singles, and cells
    whose planted peaks are open at random (≤ 16 planted of 18 peaks): where a greedy heuristic can go wrong."""
    sizes = rng.integers(2, 5, size=rng.integers(2, 4))
    n_single = int(rng.integers(1, 4))
    n = 1 + sizes.sum() + n_single
    idx = rng.permutation(18)[:n]
    group = np.full((1, 3, 4), -1)
    start = 1
    for k, size in enumerate(sizes):
        group[0, k, :size] = idx[start:start + size]
        start += size
    single = np.full((1, 3), -1)
    single[0, :n_single] = idx[start:]
    truth = SyntheticTruth(
        genes=["g"], cell_types=["T"], promoter=idx[:1], promoter_left=rng.uniform(0.3, 0.9, 1),
        group=group, group_weight=np.where(group[:, :, 0] >= 0, rng.uniform(0.5, 1.5, (1, 3)), 0.0),
        single=single, single_weight=np.where(single >= 0, rng.uniform(0.1, 0.8, (1, 3)), 0.0),
        floor=rng.uniform(0.02, 0.2, 1), trans=np.ones((1, 1)), magnitude=np.array([100.0]))
    x = (rng.random((n_cells, 18)) < rng.uniform(0.4, 0.9)).astype(np.uint8)
    obs = pd.DataFrame({"cell_type": pd.Categorical(["T"] * n_cells)}, index=[f"c{i}" for i in range(n_cells)])
    obs["split"] = assign_split(obs["cell_type"], 0)
    peaks = pd.DataFrame({"chrom": "chr1", "start": np.arange(18) * 1000, "end": np.arange(18) * 1000 + 500})
    genes = pd.DataFrame({"chrom": ["chr1"], "tss": [0]}, index=["g"])
    cells = MultiomeData(sp.csr_matrix(x), np.zeros((n_cells, 1), np.float32), obs, peaks, genes)
    return truth, cells


@pytest.mark.parametrize("seed", range(6))
def test_best_closure_is_exact_on_random_genes(seed):
    rng = np.random.default_rng(seed)
    truth, cells = random_truth(rng)
    planted = truth.planted_peaks("g")
    base = truth.expression(cells, genes=["g"]).mean()
    for L in (2, 4, 6):
        brute = min(truth.expression(cells, closed=list(combo), genes=["g"]).mean()
                    for k in range(1, L + 1) for combo in itertools.combinations(planted, k))
        peaks, left = truth.best_closure(cells, "g", L)
        assert len(peaks) <= L
        assert left == pytest.approx(brute / base, rel=1e-9)
        assert truth.expression(cells, closed=peaks, genes=["g"]).mean() / base == pytest.approx(left, rel=1e-9)


def test_best_closure_matches_brute_force():
    truth, cells = pair_truth(), cells_with_all_open()
    planted = truth.planted_peaks("target")

    def f(closed):
        return truth.expression(cells, closed=list(closed), genes=["target"]).mean()

    base = f([])
    for L in (1, 2, 3):
        brute = min(f(combo) for combo in itertools.combinations(planted, L))
        peaks, left = truth.best_closure(cells, "target", L)
        assert left == pytest.approx(brute / base)
    peaks, _ = truth.best_closure(cells, "target", 2)
    assert set(peaks.tolist()) == {A, B}  # the redundant pair, not the single enhancer C with the promoter


def test_oracle_closes_the_pair_and_tops_up_with_random_peaks():
    truth, cells = pair_truth(), cells_with_all_open()
    expl = Oracle(truth=truth, seed=0).explain(redundant_pair_model(), cells, "target", 2)
    assert set(expl.peaks.tolist()) == {A, B}
    big = Oracle(truth=truth, seed=0).explain(redundant_pair_model(), cells, "target", 7)
    big.check(cells.n_peaks, 7)
    assert {A, B, C, D} <= set(big.peaks.tolist()) and big.info["planted_closed"] == 4
    again = Oracle(truth=truth, seed=0).explain(redundant_pair_model(), cells, "target", 7)
    assert big.peaks.tolist() == again.peaks.tolist()  # the top-up is seeded per job
