import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from datasets.data import DataValidationError, MultiomeData, assign_split
from datasets.io import load_h5mu, save_h5mu


def tiny(n_cells=30, n_peaks=12, n_genes=5, seed=0, **override):
    rng = np.random.default_rng(seed)
    parts = dict(
        atac=sp.csr_matrix((rng.random((n_cells, n_peaks)) < 0.3).astype(np.uint8)),
        rna=rng.random((n_cells, n_genes)).astype(np.float32),
        obs=pd.DataFrame({"cell_type": pd.Categorical(np.repeat(["A", "B", "C"], n_cells // 3))},
                         index=[f"c{i}" for i in range(n_cells)]),
        peaks=pd.DataFrame({"chrom": ["chr1"] * (n_peaks // 2) + ["chr2"] * (n_peaks - n_peaks // 2),
                            "start": np.arange(n_peaks) * 100, "end": np.arange(n_peaks) * 100 + 50}),
        genes=pd.DataFrame({"chrom": ["chr1"] * n_genes, "tss": np.arange(n_genes) * 1000},
                           index=[f"G{i}" for i in range(n_genes)]),
    )
    parts["obs"]["split"] = assign_split(parts["obs"]["cell_type"], seed)
    parts.update(override)
    return MultiomeData(**parts)


def test_valid_data_and_views():
    d = tiny()
    assert d.atac.dtype == np.uint8 and d.atac.indices.dtype == np.int32
    view = d.cells("A", "train")
    assert set(view.obs["cell_type"]) == {"A"} and set(view.obs["split"]) == {"train"}
    assert sp.issparse(view.atac) and view.n_peaks == d.n_peaks
    with pytest.raises(KeyError, match="available"):
        d.cells("Nope")
    with pytest.raises(KeyError, match="not in the data"):
        d.gene_index("NOPE")


def test_split_is_reproducible_and_stratified():
    types = pd.Series(np.repeat(["A", "B"], [100, 50]))
    s1, s2, s3 = assign_split(types, 7), assign_split(types, 7), assign_split(types, 8)
    assert list(s1) == list(s2)
    assert list(s1) != list(s3)
    counts = pd.crosstab(types, np.asarray(s1))
    assert counts.loc["A", "train"] == 70 and counts.loc["A", "val"] == 10 and counts.loc["A", "test"] == 20
    assert counts.loc["B", "test"] == 10


@pytest.mark.parametrize("override, message", [
    (dict(atac=sp.csr_matrix(np.full((30, 12), 2, dtype=np.uint8))), "binary"),
    (dict(rna=np.zeros((29, 5), dtype=np.float32)), "same cells"),
    (dict(rna=np.full((30, 5), np.nan, dtype=np.float32)), "NaN"),
])
def test_bad_matrices_raise_one_clear_error(override, message):
    with pytest.raises(DataValidationError, match=message):
        tiny(**override)


def test_unknown_split_label_and_empty_cell_type():
    d = tiny()
    obs = d.obs.copy()
    obs["split"] = obs["split"].astype(str).replace({"val": "validation"})
    with pytest.raises(DataValidationError, match="unknown split label.*validation"):
        MultiomeData(d.atac, d.rna, obs, d.peaks, d.genes)
    obs = d.obs.copy()
    obs["cell_type"] = obs["cell_type"].cat.add_categories(["Ghost"])
    with pytest.raises(DataValidationError, match="Ghost.*no cells"):
        MultiomeData(d.atac, d.rna, obs, d.peaks, d.genes)


def test_save_load_roundtrip_is_exact(tmp_path):
    d = tiny()
    d.uns["source"] = "unit test"
    path = tmp_path / "d.h5mu"
    save_h5mu(d, path)
    e = load_h5mu(path)
    assert (d.atac != e.atac).nnz == 0 and e.atac.dtype == d.atac.dtype
    np.testing.assert_array_equal(d.rna, e.rna)
    assert e.rna.dtype == np.float32
    pd.testing.assert_frame_equal(d.obs[["cell_type", "split"]], e.obs[["cell_type", "split"]])
    pd.testing.assert_frame_equal(d.peaks.reset_index(drop=True), e.peaks.reset_index(drop=True), check_dtype=False)
    assert list(d.genes.index) == list(e.genes.index)
    np.testing.assert_array_equal(d.genes["tss"].to_numpy(float), e.genes["tss"].to_numpy(float))
    assert e.uns["source"] == "unit test"
    assert d.fingerprint() == e.fingerprint()
