"""Random control: one seeded draw per job (seed, cell type, gene, L), reproducible, L distinct valid peaks."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from datasets.data import MultiomeData, assign_split
from methods.random_subset import RandomPeaks
from tests.toy_models import TARGET

N_PEAKS = 500  # two draws of 10 from 500 coincide with probability 1 / C(500, 10) ≈ 4e-21


def two_type_data(n=40, seed=0) -> MultiomeData:
    rng = np.random.default_rng(seed)
    x = (rng.random((n, N_PEAKS)) < 0.05).astype(np.uint8)
    obs = pd.DataFrame({"cell_type": pd.Categorical(["A", "B"] * (n // 2))}, index=[f"c{i}" for i in range(n)])
    obs["split"] = assign_split(obs["cell_type"], 0)
    peaks = pd.DataFrame({"chrom": ["chr1"] * N_PEAKS, "start": np.arange(N_PEAKS) * 1000,
                          "end": np.arange(N_PEAKS) * 1000 + 500})
    genes = pd.DataFrame({"chrom": ["chr1", "chr1"], "tss": [0, 0]}, index=["g1", "g2"])
    return MultiomeData(sp.csr_matrix(x), np.zeros((n, 2), np.float32), obs, peaks, genes)


def draw(data, gene="g1", L=10, seed=0, cell_type="A"):
    view = data if cell_type is None else data.cells(cell_type, "train")
    return RandomPeaks(seed=seed).explain(None, view, gene, L)


@pytest.mark.parametrize("L", [1, 10, N_PEAKS])
def test_returns_L_distinct_valid_peaks(L):
    e = draw(two_type_data(), L=L)
    e.check(N_PEAKS, L)
    assert e.status == "ok"


def test_identical_inputs_give_identical_draws():
    d = two_type_data()
    np.testing.assert_array_equal(draw(d).peaks, draw(d).peaks)
    np.testing.assert_array_equal(draw(d).peaks, draw(two_type_data()).peaks)  # a rebuilt data set, same draw


def test_each_job_field_changes_the_draw():
    d = two_type_data()
    base = draw(d).peaks
    for other in (draw(d, gene="g2"), draw(d, cell_type="B"), draw(d, seed=1)):
        assert set(other.peaks) != set(base)
    assert set(draw(d, L=11).peaks[:10]) != set(base)  # L keys the draw: not the L=10 subset plus one


def test_several_cell_types_key_the_draw_by_their_sorted_labels():
    d = two_type_data()
    both = draw(d, cell_type=None).peaks
    assert set(both) != set(draw(d, cell_type="A").peaks) and set(both) != set(draw(d, cell_type="B").peaks)
    reversed_cells = d.subset(np.arange(d.n_cells)[::-1])  # "B" now appears first
    assert str(reversed_cells.obs["cell_type"].iloc[0]) == "B"
    np.testing.assert_array_equal(draw(reversed_cells, cell_type=None).peaks, both)


def test_random_ignores_the_toy_surrogate_and_picks_every_peak_equally_often():
    """On the toy whose one regulating peak every explainer must find, Random does not find it more often than
    chance: over 400 seeds of L = 4 from 40 peaks each peak is picked ~40 times (χ² test, 39 d.o.f.)."""
    from scipy.stats import chisquare

    from tests.toy_models import toy_problem

    toy = toy_problem()
    counts = np.zeros(toy.train.n_peaks)
    for seed in range(400):
        e = RandomPeaks(seed=seed).explain(toy.surrogate, toy.train, TARGET, 4)
        counts[e.peaks] += 1
    assert counts.sum() == 1600
    assert chisquare(counts).pvalue > 1e-3
    assert counts[toy.strong] < 40 + 4 * np.sqrt(40)  # no pull towards the regulating peak
