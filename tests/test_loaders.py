"""datasets.loaders: each real input format → a valid, preprocessed MultiomeData; clear InputErrors otherwise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import f_oneway

from datasets.loaders import InputError, load_multiome
from tests.multiome_files import (TOY_DE_GENES, TOY_MARKERS, toy_multiome, write_10x_h5, write_h5ad_pair,
                                  write_h5mu, write_labels_csv)

MARKERS = [g for gs in TOY_MARKERS.values() for g in gs]


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDS_BENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def toy():
    return toy_multiome()


def _load(spec, **kw):
    msgs: list[str] = []
    return load_multiome(spec, report=msgs.append, **kw), msgs


def _check_matches_toy(data, toy, barcodes=None):
    """Shapes, binary ATAC in genome order, and RNA = log1p(counts per 1e5) against the toy's own numbers."""
    barcodes = toy.barcodes if barcodes is None else barcodes
    assert data.obs.index.tolist() == barcodes
    assert (data.n_peaks, data.n_genes) == (40, 30)
    assert set(np.unique(data.atac.toarray())) <= {0, 1}
    assert data.peaks["chrom"].tolist() == ["chr2"] * 20 + ["chr10"] * 20  # natural order: chr2 before chr10
    for chrom in ("chr2", "chr10"):
        assert data.peaks.loc[data.peaks["chrom"] == chrom, "start"].is_monotonic_increasing
    # the ATAC column of a peak still holds that peak's cells after sorting
    col = int(np.flatnonzero((data.peaks["chrom"] == "chr10") & (data.peaks["start"] == 500))[0])
    src = next(j for j, (c, s) in enumerate(zip(toy.peak_chrom, toy.peak_start)) if (c, s) == ("chr10", 500))
    rows = [toy.barcodes.index(b) for b in barcodes]
    np.testing.assert_array_equal(data.atac[:, col].toarray().ravel(), (toy.atac[rows, src] > 0).astype(np.uint8))
    # one value by hand: cell 0, AQP4
    i, g = toy.barcodes.index(barcodes[0]), toy.gene_names.index("AQP4")
    expected = np.log1p(toy.counts[i, g] / toy.counts[i].sum() * 1e5)
    assert data.rna[0, data.gene_index("AQP4")] == pytest.approx(expected, rel=1e-6)
    assert set(data.obs["split"]) == {"train", "val", "test"}
    assert data.obs["cell_type"].tolist() == [toy.cell_types[toy.barcodes.index(b)] for b in barcodes]


# ---------------------------------------------------------------------------------------------------- formats
def test_10x_h5_with_labels_csv(tmp_path, toy):
    spec = write_10x_h5(tmp_path / "filtered_feature_bc_matrix.h5")
    labels = write_labels_csv(tmp_path / "labels.csv", toy.barcodes, toy.cell_types)
    data, msgs = _load(spec, labels_csv=labels)
    _check_matches_toy(data, toy)
    assert data.cell_types == ["Astro", "Oligo", "Zeta"]  # paper types first, then others
    g = toy.gene_names.index("GJA1")
    assert data.genes.loc["GJA1", "chrom"] == toy.gene_chrom[g]
    assert data.genes.loc["GJA1", "tss"] == toy.gene_start[g]  # interval start (strand unknown)
    assert data.uns["format"] == "10x" and data.uns["preprocessing"]
    assert any("raw counts" in m for m in msgs) and any("sorted into genome order" in m for m in msgs)


def test_10x_outs_folder_is_accepted(tmp_path, toy):
    write_10x_h5(tmp_path / "outs" / "filtered_feature_bc_matrix.h5")
    labels = write_labels_csv(tmp_path / "labels.csv", toy.barcodes, toy.cell_types)
    data, _ = _load(str(tmp_path / "outs"), labels_csv=labels)
    assert data.n_cells == 60


def test_h5ad_pair_drops_unmatched_cells(tmp_path, toy):
    spec = write_h5ad_pair(tmp_path, rna_only=3, atac_only=2)
    data, msgs = _load(spec, label_key="cell_type")
    _check_matches_toy(data, toy)
    assert any("dropped 3 RNA-only and 2 ATAC-only" in m for m in msgs)


@pytest.mark.parametrize("kw", [{"peak_sep": "-"}, {"peak_columns": True}])
def test_h5ad_peak_coordinates(tmp_path, toy, kw):
    data, _ = _load(write_h5ad_pair(tmp_path, **kw), label_key="cell_type")
    _check_matches_toy(data, toy)


def test_h5mu(tmp_path, toy):
    data, _ = _load(write_h5mu(tmp_path / "data.h5mu"), label_key="cell_type")
    _check_matches_toy(data, toy)
    assert data.uns["format"] == "h5mu"


def test_h5mu_custom_modality_names(tmp_path, toy):
    spec = write_h5mu(tmp_path / "data.h5mu", rna_mod="gex", atac_mod="peaks")
    data, _ = _load(spec, label_key="cell_type", rna_mod="gex", atac_mod="peaks")
    assert data.n_cells == 60


def test_labels_csv_with_missing_cells_drops_them(tmp_path, toy):
    spec = write_h5ad_pair(tmp_path, label_key=None)
    labels = write_labels_csv(tmp_path / "l.csv", toy.barcodes[:50] + ["NOTACELL-1"], toy.cell_types[:50] + ["Astro"])
    data, msgs = _load(spec, labels_csv=labels)
    assert data.obs.index.tolist() == toy.barcodes[:50]
    assert any("dropped 10 of 60 cells without a cell-type label" in m for m in msgs)


def test_lognormalised_rna_is_kept(tmp_path, toy):
    lognorm = np.log1p(toy.counts / toy.counts.sum(1, keepdims=True) * 1e4).astype(np.float32)
    data, msgs = _load(write_h5ad_pair(tmp_path, rna_x=lognorm), label_key="cell_type")
    np.testing.assert_allclose(data.rna, lognorm, rtol=1e-6)
    assert any("assumed already log-normalised" in m for m in msgs)


# ---------------------------------------------------------------------------------------------------- genes
def test_markers_kept_when_n_top_genes_small(tmp_path):
    data, msgs = _load(write_h5ad_pair(tmp_path), label_key="cell_type", n_top_genes=2)
    assert set(data.gene_names) == set(TOY_DE_GENES) | set(MARKERS)
    assert any("top 2 by between-cell-type F statistic" in m for m in msgs)


def test_gene_ranking_is_anova_f(tmp_path, toy):
    data, _ = _load(write_h5ad_pair(tmp_path), label_key="cell_type", n_top_genes=6, markers={})
    x = np.log1p(toy.counts / toy.counts.sum(1, keepdims=True) * 1e5)
    labels = np.array(toy.cell_types)
    f = f_oneway(*[x[labels == ct] for ct in sorted(set(labels))]).statistic
    assert set(data.gene_names) == {toy.gene_names[i] for i in np.argsort(-f)[:6]}


# ---------------------------------------------------------------------------------------------------- cache
def test_second_call_loads_cache(tmp_path, toy):
    spec = write_h5ad_pair(tmp_path)
    first, msgs1 = _load(spec, label_key="cell_type")
    second, msgs2 = _load(spec, label_key="cell_type")
    assert not any("loaded cached" in m for m in msgs1)
    assert msgs2 == [m for m in msgs2 if m.startswith("loaded cached")] and len(msgs2) == 1
    assert second.fingerprint() == first.fingerprint()
    assert list((tmp_path / "cache" / "data").glob("*.h5mu"))  # default dir from $GRIDS_BENCH_CACHE
    _, msgs3 = _load(spec, label_key="cell_type", split_seed=1)  # another option → another cache entry
    assert not any("loaded cached" in m for m in msgs3)


def test_explicit_cache_dir(tmp_path):
    spec = write_h5ad_pair(tmp_path / "in")
    _load(spec, label_key="cell_type", cache_dir=tmp_path / "mine")
    assert len(list((tmp_path / "mine" / "data").glob("*.h5mu"))) == 1


# ---------------------------------------------------------------------------------------------------- errors
def _csv(tmp_path, toy, columns=("barcode", "cell_type")):
    path = tmp_path / "labels.csv"
    pd.DataFrame({columns[0]: toy.barcodes, columns[1]: toy.cell_types}).to_csv(path, index=False)
    return str(path)


def test_error_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_multiome(str(tmp_path / "nope.h5"), label_key="x")


def test_error_unknown_format(tmp_path):
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(InputError, match=r"unknown input format.*\.h5mu"):
        load_multiome(str(tmp_path / "data.csv"), label_key="x")


def test_error_single_h5ad(tmp_path):
    rna = write_h5ad_pair(tmp_path).split(",")[0]
    with pytest.raises(InputError, match="two files"):
        load_multiome(rna, label_key="cell_type")


@pytest.mark.parametrize("kind", ["Peaks", "Gene Expression"])
def test_error_10x_without_feature_type(tmp_path, toy, kind):
    other = "Gene Expression" if kind == "Peaks" else "Peaks"
    spec = write_10x_h5(tmp_path / "m.h5", feature_types=(other,))
    with pytest.raises(InputError, match=f"no '{kind}' features"):
        load_multiome(spec, labels_csv=_csv(tmp_path, toy))


def test_error_10x_with_label_key(tmp_path):
    with pytest.raises(InputError, match="--labels"):
        load_multiome(write_10x_h5(tmp_path / "m.h5"), label_key="cell_type")


def test_error_non_numeric_matrix(tmp_path, toy):
    strings = np.full(toy.counts.shape, "x", dtype=object)
    with pytest.raises(InputError, match="not numeric"):
        load_multiome(write_h5ad_pair(tmp_path, rna_x=strings), label_key="cell_type")


def test_error_no_common_barcodes(tmp_path, toy):
    spec = write_h5ad_pair(tmp_path, atac_barcode_prefix="sampleB_")
    with pytest.raises(InputError, match="share no cell barcodes") as err:
        load_multiome(spec, label_key="cell_type")
    assert toy.barcodes[0] in str(err.value) and f"sampleB_{toy.barcodes[0]}" in str(err.value)


def test_error_labels_csv_matches_no_cell(tmp_path, toy):
    labels = write_labels_csv(tmp_path / "l.csv", [b[:-2] for b in toy.barcodes], toy.cell_types)
    with pytest.raises(InputError, match="match"):
        load_multiome(write_10x_h5(tmp_path / "m.h5"), labels_csv=labels)


def test_error_missing_label_column(tmp_path):
    with pytest.raises(InputError, match=r"'celltype'.*available columns.*cell_type"):
        load_multiome(write_h5ad_pair(tmp_path), label_key="celltype")


def test_error_labels_csv_missing_column(tmp_path, toy):
    labels = _csv(tmp_path, toy, columns=("barcode", "label"))
    with pytest.raises(InputError, match=r"missing \['cell_type'\]"):
        load_multiome(write_10x_h5(tmp_path / "m.h5"), labels_csv=labels)


def test_error_no_labels(tmp_path):
    with pytest.raises(InputError, match=r"--label-key.*--labels"):
        load_multiome(write_h5mu(tmp_path / "d.h5mu"))


def test_error_small_cell_type(tmp_path):
    with pytest.raises(InputError, match=r"'Zeta' has 15 cells.*min_cells_per_type"):
        load_multiome(write_h5ad_pair(tmp_path), label_key="cell_type", min_cells_per_type=20)


def test_error_absent_markers(tmp_path):
    markers = {"Astro": ("ALDH1A1", "NOTAGENE", "FAKE2"), "Micro": ("CX3CR1",)}  # Micro absent: not checked
    with pytest.raises(InputError, match=r"Astro: NOTAGENE, FAKE2.*--markers FILE") as err:
        load_multiome(write_h5ad_pair(tmp_path), label_key="cell_type", markers=markers)
    assert "CX3CR1" not in str(err.value)


def test_error_negative_rna(tmp_path, toy):
    with pytest.raises(InputError, match="negative"):
        load_multiome(write_h5ad_pair(tmp_path, rna_x=toy.counts - 1.5), label_key="cell_type")


def test_error_missing_modality(tmp_path):
    with pytest.raises(InputError, match=r"no modality 'gex'"):
        load_multiome(write_h5mu(tmp_path / "d.h5mu"), label_key="cell_type", rna_mod="gex")


def test_data_validation_error_becomes_input_error(tmp_path, toy):
    lognorm = np.log1p(toy.counts / toy.counts.sum(1, keepdims=True) * 1e4)
    lognorm[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        load_multiome(write_h5ad_pair(tmp_path, rna_x=lognorm), label_key="cell_type")
