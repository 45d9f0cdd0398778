"""`datasets.describe` and `python -m bench data`: every number checked against an independent computation."""

import json

import numpy as np
import pytest

from bench.cli import main
from datasets.describe import describe, render_markdown
from datasets.markers import PAPER_MARKERS
from datasets.synthetic import simulate
from tests.multiome_files import TOY_MARKERS, TOY_TYPE_SIZES, TOY_TYPES, toy_multiome, write_h5mu

BASE_KEYS = {"n_cells", "n_peaks", "n_genes", "n_chromosomes", "cells_per_type", "cells_per_split", "open_per_cell",
             "open_per_type", "open_fraction", "rna_zero_fraction", "rna_mean", "marker_genes"}
TRUTH_KEYS = {"planted_peaks_total", "background_share", "markers"} | {
    f"{k}_{s}" for k in ("best10_left", "all_planted_left") for s in ("mean", "min", "max")}
MARKER_KEYS = {"cell_type", "gene", "test_cells", "planted_peaks", "redundant_groups", "cooperative_units",
               "silencers", "shared_peaks", "best10_left",
               "all_planted_left"}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDS_BENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny():
    return simulate("tiny", 0)


@pytest.fixture(scope="module")
def summary(tiny):
    return describe(*tiny)


def test_counts_and_accessibility_match_dense_computation(tiny, summary):
    data, _ = tiny
    dense = data.atac.toarray().astype(bool)
    per_cell = dense.sum(axis=1)
    assert (summary["n_cells"], summary["n_peaks"], summary["n_genes"]) == dense.shape + (data.rna.shape[1],)
    assert summary["n_chromosomes"] == data.peaks["chrom"].nunique()
    assert summary["open_per_cell"]["mean"] == pytest.approx(data.atac.nnz / data.n_cells)
    for key, q in (("median", 50), ("p5", 5), ("p95", 95)):
        assert summary["open_per_cell"][key] == pytest.approx(np.percentile(per_cell, q))
    assert summary["open_fraction"] == pytest.approx(dense.mean())
    labels = data.obs["cell_type"].astype(str).to_numpy()
    for ct in data.cell_types:
        assert summary["cells_per_type"][ct] == (labels == ct).sum()
        assert summary["open_per_type"][ct] == pytest.approx(per_cell[labels == ct].mean())
        splits = data.obs["split"].astype(str).to_numpy()[labels == ct]
        assert summary["cells_per_split"][ct] == {s: int((splits == s).sum()) for s in ("train", "val", "test")}
    assert summary["rna_zero_fraction"] == pytest.approx(np.count_nonzero(data.rna == 0) / data.rna.size)
    assert summary["rna_mean"] == pytest.approx(float(np.mean(data.rna, dtype=np.float64)), rel=1e-9)


def test_truth_numbers_match_the_oracle(tiny, summary):
    data, truth = tiny
    planted = truth.planted_mask(data.n_peaks)
    dense = data.atac.toarray().astype(bool)
    assert summary["planted_peaks_total"] == planted.sum()
    assert summary["background_share"] == pytest.approx(dense[:, ~planted].sum() / dense.sum())
    pairs = [(ct, g) for ct, genes in PAPER_MARKERS.items() for g in genes]
    assert [(m["cell_type"], m["gene"]) for m in summary["markers"]] == pairs
    for m in summary["markers"]:
        test = data.cells(m["cell_type"], "test")
        peaks = truth.planted_peaks(m["gene"])
        assert set(m) == MARKER_KEYS
        assert m["test_cells"] == test.n_cells > 0
        assert m["planted_peaks"] == len(peaks)
        assert m["redundant_groups"] == len(truth.redundant_groups(m["gene"]))
        # all planted closed, through the full oracle rather than the closure search
        base = truth.expression(test, genes=[m["gene"]]).mean()
        closed = truth.expression(test, closed=peaks, genes=[m["gene"]]).mean()
        assert m["all_planted_left"] == pytest.approx(closed / base, rel=1e-9)
        assert m["all_planted_left"] <= m["best10_left"] <= 1.0
    best10 = [m["best10_left"] for m in summary["markers"]]
    assert summary["best10_left_mean"] == pytest.approx(np.mean(best10))
    assert (summary["best10_left_min"], summary["best10_left_max"]) == (min(best10), max(best10))
    assert summary["all_planted_left_max"] == max(m["all_planted_left"] for m in summary["markers"])


def test_keys_are_stable_documented_and_json_ready(summary):
    assert set(summary) == BASE_KEYS | TRUTH_KEYS
    for key in BASE_KEYS | TRUTH_KEYS | MARKER_KEYS:
        assert f"`{key}`" in describe.__doc__, key
    assert set(summary["open_per_cell"]) == {"mean", "median", "p5", "p95"}
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary  # plain Python types, no NaN


def test_custom_markers_and_missing_gene(tiny):
    data, truth = tiny
    out = describe(data, truth, markers={"Astro": ("AQP4",), "NotAType": ("MOG",)})
    assert [(m["cell_type"], m["gene"]) for m in out["markers"]] == [("Astro", "AQP4")]  # absent types skipped
    assert out["marker_genes"] == {"Astro": ["AQP4"]}
    with pytest.raises(ValueError, match="NOTAGENE"):
        describe(data, truth, markers={"Astro": ("NOTAGENE",)})


def test_markdown_has_every_section(summary):
    md = render_markdown(summary, "Data: tiny")
    assert md.startswith("# Data: tiny")
    for text in ("open peaks per cell", "background share", "## Cell types", "## Marker genes", "mean (min–max)"):
        assert text in md
    no_truth = render_markdown({k: v for k, v in summary.items() if k in BASE_KEYS})
    assert "## Cell types" in no_truth and "Marker genes" not in no_truth and "background" not in no_truth


def test_cli_json_on_synthetic_data(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["data", "--scale", "tiny", "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)  # stdout holds one JSON object and nothing else
    assert printed["data"] == "synthetic (tiny scale, seed 0)"
    assert set(printed) == BASE_KEYS | TRUTH_KEYS | {"data"}
    assert json.loads((out / "data.json").read_text()) == printed
    assert "## Marker genes" in (out / "data.md").read_text()


def test_cli_markdown_by_default_and_help(capsys):
    assert main(["data", "--scale", "tiny"]) == 0
    assert "# Data: synthetic (tiny scale, seed 0)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["data", "--help"])
    assert exc.value.code == 0
    assert "regime" in capsys.readouterr().out


def test_cli_real_data_has_no_truth_keys(tmp_path, capsys):
    toy = toy_multiome()
    path = write_h5mu(tmp_path / "toy.h5mu", toy)
    assert main(["data", "--data", path, "--label-key", "cell_type", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) == BASE_KEYS | {"data"}
    assert summary["cells_per_type"] == dict(zip(TOY_TYPES, TOY_TYPE_SIZES))
    assert summary["n_peaks"] == toy.atac.shape[1]
    # the loader binarises fragment counts: open = at least one fragment
    assert summary["open_per_cell"]["mean"] == pytest.approx((toy.atac > 0).sum(axis=1).mean())
    assert summary["marker_genes"] == {ct: list(genes) for ct, genes in TOY_MARKERS.items()}


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "--data", str(tmp_path / "nope.h5mu"), "--label-key", "cell_type"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and err.strip().count("\n") == 0
    markers = tmp_path / "markers.csv"
    markers.write_text("cell_type,gene\nAstro,NOTAGENE\n")
    assert main(["data", "--scale", "tiny", "--markers", str(markers)]) == 2
    err = capsys.readouterr().err
    assert "NOTAGENE" in err and err.strip().count("\n") == 0
