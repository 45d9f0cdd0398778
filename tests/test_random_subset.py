"""Random control: one seeded draw per job (seed, cell type, gene, L), reproducible, L distinct valid peaks."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from datasets.data import MultiomeData, assign_split
from methods import registry
from methods.random_subset import RandomPeaks

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


def test_flagged_as_control():
    assert registry.get("random").is_baseline


@pytest.mark.parametrize("L", [1, 10, N_PEAKS])
def test_returns_L_distinct_valid_peaks(L):
    e = draw(two_type_data(), L=L)
    e.check(N_PEAKS, L)
    assert e.status == "ok" and e.peaks.dtype == np.int64


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
