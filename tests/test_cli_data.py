"""`python -m bench run --data ...` end to end on small files of each real format, and its error messages."""

import json

import numpy as np
import pytest

from bench.cli import main
from tests.multiome_files import toy_multiome, write_10x_h5, write_h5ad_pair, write_h5mu, write_labels_csv

RUN = ["run", "--quick", "--no-progress", "--methods", "random,grids,saliency", "--L", "3"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDS_BENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def toy():
    return toy_multiome()


def _inputs(kind, tmp_path, toy):
    if kind == "10x":
        labels = write_labels_csv(tmp_path / "labels.csv", toy.barcodes, toy.cell_types)
        return [write_10x_h5(tmp_path / "filtered_feature_bc_matrix.h5", toy), "--labels", labels]
    if kind == "h5ad":
        return [write_h5ad_pair(tmp_path / "pair", toy), "--label-key", "cell_type"]
    return [write_h5mu(tmp_path / "sample.h5mu", toy), "--label-key", "cell_type"]


@pytest.mark.parametrize("kind", ["10x", "h5ad", "h5mu"])
def test_full_pipeline_on_each_format(tmp_path, toy, kind, capsys):
    out = tmp_path / "out"
    data, *labels = _inputs(kind, tmp_path, toy)
    assert main([*RUN, "--data", data, *labels, "--out", str(out)]) == 0
    jobs = [json.loads(line) for line in (out / "jobs.jsonl").read_text().splitlines()]
    # Astro (3 markers) and Oligo (2) are evaluated; Zeta has no markers and is not
    assert {(j["cell_type"], j["gene"]) for j in jobs} == {("Astro", "ALDH1A1"), ("Astro", "AQP4"),
                                                           ("Astro", "GJA1"), ("Oligo", "MOBP"), ("Oligo", "MOG")}
    assert all(j["status"] == "ok" for j in jobs)
    assert all(np.isfinite(j["frac_on_target_chrom"]) for j in jobs)  # coordinates were parsed
    assert "Rel Δ" in (out / "leaderboard.md").read_text()


def _error(argv, capsys, tmp_path):
    out = tmp_path / "out"
    code = main([*RUN, "--out", str(out), *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.strip().count("\n") == 0 and "Traceback" not in err
    assert not out.exists()
    return err


def test_missing_file_and_wrong_format(tmp_path, capsys):
    assert "does not exist" in _error(["--data", str(tmp_path / "nope.h5"), "--labels", "x.csv"], capsys, tmp_path)
    bad = tmp_path / "table.csv"
    bad.write_text("a,b\n1,2\n")
    assert "unknown input format" in _error(["--data", str(bad), "--label-key", "x"], capsys, tmp_path)


def test_truth_controls_are_refused_on_real_data(tmp_path, toy, capsys):
    data, *labels = _inputs("h5mu", tmp_path, toy)
    err = _error(["--data", data, *labels, "--methods", "random,oracle"], capsys, tmp_path)
    assert "synthetic data only" in err and "oracle" in err


def test_no_peaks_features(tmp_path, toy, capsys):
    path = write_10x_h5(tmp_path / "rna_only.h5", toy, feature_types=("Gene Expression",))
    labels = write_labels_csv(tmp_path / "labels.csv", toy.barcodes, toy.cell_types)
    assert "Peaks" in _error(["--data", path, "--labels", labels], capsys, tmp_path)


def test_non_numeric_matrix(tmp_path, toy, capsys):
    text = np.full(toy.counts.shape, "x", dtype=object)
    spec = write_h5ad_pair(tmp_path / "pair", toy, rna_x=text)
    assert "not numeric" in _error(["--data", spec, "--label-key", "cell_type"], capsys, tmp_path)


def test_barcode_mismatch_leaves_no_cells(tmp_path, toy, capsys):
    spec = write_h5ad_pair(tmp_path / "pair", toy, atac_barcode_prefix="sampleB_")
    assert "share no cell barcodes" in _error(["--data", spec, "--label-key", "cell_type"], capsys, tmp_path)


def test_missing_label_column(tmp_path, toy, capsys):
    spec = write_h5mu(tmp_path / "s.h5mu", toy)
    err = _error(["--data", spec, "--label-key", "celltype"], capsys, tmp_path)
    assert "celltype" in err and "available" in err


def test_cell_type_with_too_few_cells(tmp_path, toy, capsys):
    spec = write_h5mu(tmp_path / "s.h5mu", toy)
    err = _error(["--data", spec, "--label-key", "cell_type", "--min-cells", "20"], capsys, tmp_path)
    assert "Zeta" in err and "15" in err


def test_absent_marker_gene_is_listed(tmp_path, toy, capsys):
    spec = write_h5mu(tmp_path / "s.h5mu", toy)
    markers = tmp_path / "markers.csv"
    markers.write_text("cell_type,gene\nAstro,AQP4\nAstro,NOTAGENE\n")
    err = _error(["--data", spec, "--label-key", "cell_type", "--markers", str(markers)], capsys, tmp_path)
    assert "NOTAGENE" in err and "--markers" in err


def test_debug_shows_traceback(tmp_path):
    with pytest.raises(Exception):
        main([*RUN, "--debug", "--data", str(tmp_path / "nope.h5"), "--labels", "x.csv"])


def test_leaderboard_reports_genomic_context(tmp_path, toy):
    out = tmp_path / "out"
    spec = write_h5mu(tmp_path / "s.h5mu", toy)
    assert main([*RUN, "--data", spec, "--label-key", "cell_type", "--out", str(out)]) == 0
    md = (out / "leaderboard.md").read_text()
    assert "### On the gene's chromosome at L = " in md and "On gene's chrom" in md
    assert "### Distance to the TSS at L = " in md and "Median TSS distance" in md
