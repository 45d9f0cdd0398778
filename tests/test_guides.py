"""Reading real perturbation screens (datasets/guides.py): the guide → target table, the three conventions of
per-cell guide assignments, attaching the screen to the loaded data, and `python -m bench data` on it."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from bench.cli import main
from datasets.describe import describe, render_markdown
from datasets.guides import (
    attach_screen,
    check_guide_options,
    guides_from_strings,
    is_non_targeting,
    load_screen,
    read_guide_calls,
    read_guide_key,
    read_guide_table,
)
from datasets.loaders import InputError, load_multiome
from tests.multiome_files import (
    add_guides_to_h5ad,
    add_guides_to_h5mu,
    toy_guides,
    toy_multiome,
    write_10x_h5,
    write_guide_table,
    write_h5ad_pair,
    write_h5mu,
    write_labels_csv,
    write_protospacer_calls,
)


@pytest.fixture(scope="module")
def toy():
    return toy_multiome()


@pytest.fixture(scope="module")
def screen(toy):
    return toy_guides(toy)  # ({barcode: guides}, guide table)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, toy, screen):
    """An AnnData pair with the guides as an obs column of the RNA file, and the loaded data."""
    d = tmp_path_factory.mktemp("pair")
    spec = write_h5ad_pair(d / "in", toy)
    add_guides_to_h5ad(d / "in" / "rna.h5ad", screen[0], key="guide")
    return spec, load_multiome(spec, label_key="cell_type", cache_dir=d / "cache")


def _as_sets(barcodes, names, m) -> dict[str, set[str]]:
    m = sp.csr_matrix(m)
    return {b: {names[j] for j in m.indices[m.indptr[i]:m.indptr[i + 1]]}
            for i, b in enumerate(barcodes) if m.indptr[i + 1] > m.indptr[i]}


def _expected(calls) -> dict[str, set[str]]:
    return {b: set(gs) for b, gs in calls.items() if gs}


# ---------------------------------------------------------------------------------------------------- readers
def test_strings_split_on_every_separator_and_skip_empty_cells():
    barcodes, names, m = guides_from_strings(["a", "b", "c", "d", "e", "f", "g"],
                                             ["g1|g2", "g3; g1", "g2,ntc1", "g4+g5", "", None, np.nan])
    assert list(barcodes) == list("abcdefg") and names == sorted(names)
    assert m.dtype == np.uint8 and m.shape == (7, len(names))
    assert _as_sets(barcodes, names, m) == {"a": {"g1", "g2"}, "b": {"g1", "g3"}, "c": {"g2", "ntc1"},
                                            "d": {"g4", "g5"}}


@pytest.mark.parametrize("where", ["rna obs", "atac obsm array", "rna obsm frame"])
def test_guide_key_in_an_anndata_pair(tmp_path, toy, screen, where):
    spec = write_h5ad_pair(tmp_path, toy)
    file, how = where.split(" ", 1)
    add_guides_to_h5ad(tmp_path / f"{file}.h5ad", screen[0], key="perturbation",
                       how={"obs": "obs", "obsm array": "obsm-array", "obsm frame": "obsm-frame"}[how])
    barcodes, names, m = read_guide_key(spec, "perturbation")
    assert len(barcodes) == len(toy.barcodes) and sp.issparse(m) and m.dtype == np.uint8
    assert _as_sets(barcodes, names, m) == _expected(screen[0])


@pytest.mark.parametrize("how,mod", [("obs", None), ("obsm-frame", None), ("obs", "rna"), ("obsm-array", "atac")])
def test_guide_key_in_a_mudata(tmp_path, toy, screen, how, mod):
    spec = add_guides_to_h5mu(write_h5mu(tmp_path / "d.h5mu", toy), screen[0], key="sgRNA", how=how, mod=mod)
    assert _as_sets(*read_guide_key(spec, "sgRNA")) == _expected(screen[0])


def test_guide_key_looks_in_obs_before_obsm(tmp_path, toy, screen):
    spec = write_h5ad_pair(tmp_path, toy)
    add_guides_to_h5ad(tmp_path / "atac.h5ad", {toy.barcodes[0]: ["g1"]}, key="guide", how="obsm-frame")
    add_guides_to_h5ad(tmp_path / "atac.h5ad", screen[0], key="guide", how="obs")
    assert _as_sets(*read_guide_key(spec, "guide")) == _expected(screen[0])


def test_protospacer_calls(tmp_path, screen):
    calls = dict(screen[0])
    path = write_protospacer_calls(tmp_path / "protospacer_calls_per_cell.csv", calls)
    barcodes, names, m = read_guide_calls(path)
    assert _as_sets(barcodes, names, m) == _expected(calls)
    # a barcode listed twice gets both rows' guides
    b = next(iter(calls))
    with open(path, "a") as f:
        f.write(f"{b},1,g6,3\n")
    assert _as_sets(*read_guide_calls(path))[b] == set(calls[b]) | {"g6"}


# ---------------------------------------------------------------------------------------------------- guide table
PEAKS = pd.DataFrame({"chrom": ["chr1", "chr1", "chr1", "chr2"], "start": [100, 300, 1000, 500],
                      "end": [200, 400, 1500, 900]})


def _table(tmp_path, text: str) -> pd.DataFrame:
    path = tmp_path / "guides.csv"
    path.write_text(text)
    return read_guide_table(path, PEAKS)


def test_table_with_peak_names_in_every_spelling(tmp_path):
    table = _table(tmp_path, "guide,peak\na,chr1:100-200\nb,chr1-300-400\nc,chr1_1000_1500\nd,chr2:500-900\n"
                             "n1,non-targeting\nn2,NTC\nn3,Control\nn4,Non_Targeting\n")
    assert table["peak"].to_dict() == {"a": 0, "b": 1, "c": 2, "d": 3, "n1": -1, "n2": -1, "n3": -1, "n4": -1}
    assert table["peak"].dtype == np.int64 and table.index.name == "guide"


def test_table_with_coordinates_and_a_control_in_the_chrom_column(tmp_path):
    table = _table(tmp_path, "guide,chrom,start,end\na,chr1,300,400\nb,chr2,600,650\nn,NTC,,\n")
    assert table["peak"].to_dict() == {"a": 1, "b": 3, "n": -1}


def test_a_target_maps_to_the_peak_it_overlaps_most(tmp_path):
    # 150-320 overlaps peak 0 by 50 bp and peak 1 by 20; 1200-1250 lies inside peak 2; 390-1010 overlaps 1 by 10, 2 by 10
    table = _table(tmp_path, "guide,peak\na,chr1:150-320\nb,chr1:1200-1250\nc,chr1:250-1100\n")
    assert table["peak"].to_dict() == {"a": 0, "b": 2, "c": 1}


def test_non_targeting_words():
    assert all(map(is_non_targeting, ["non-targeting", "NTC", "control", " Non-Targeting ", "nontargeting"]))
    assert not any(map(is_non_targeting, ["chr1:1-2", "", None, "safe-targeting"]))


@pytest.mark.parametrize("text,message", [
    ("guide,peak\na,chr1:100-200\nb,\n",
     "guide table guides.csv: guide(s) ['b'] have no target (empty peak and no chrom/start/end)"),
    ("guide,peak\na,chr7:100-200\n",
     "guide table guides.csv: 1 target(s) overlap no peak of the data (a → chr7:100-200)"),
    ("guide,peak\na,chr1:210-290\n", "overlap no peak of the data"),
    ("guide,peak\na,promoter of MYC\n", "target 'promoter of MYC' of guide 'a' is not a peak like chr1:100-200"),
    ("guide,target\na,chr1:100-200\n", "guide table guides.csv needs columns guide,peak"),
    ("guide,peak\na,chr1:100-200\na,chr1:300-400\n", "gives guide 'a' more than one target"),
])
def test_table_errors(tmp_path, text, message):
    with pytest.raises(InputError, match=re.escape(message)):
        _table(tmp_path, text)


# ---------------------------------------------------------------------------------------------------- attach
def _attach(pair, screen, folder, calls=None, table=None, seed=0):
    """(loaded data, the data with `calls` attached under `table`), both defaulting to the toy screen's."""
    data = pair[1]
    calls = screen[0] if calls is None else calls
    path = write_guide_table(folder / "guides.csv", screen[1] if table is None else table)
    barcodes = list(calls)
    return data, attach_screen(data, *guides_from_strings(barcodes, ["|".join(calls[b]) for b in barcodes]),
                               read_guide_table(path, data.peaks), seed, source={"guides": "guides.csv"})


def test_attach_moves_targeted_cells_into_the_screen(pair, screen, tmp_path):
    calls, table = screen
    data, out = _attach(pair, screen, tmp_path)
    targeting = set(table["guide"][~table["peak"].isin(["non-targeting", "NTC"])])
    screened = [b for b in data.obs.index if set(calls.get(b, ())) & targeting]
    controls = [b for b in data.obs.index if b in calls and not set(calls[b]) & targeting]
    assert len(screened) == 18 and len(controls) == 8
    assert list(out.screen.obs.index) == screened
    assert set(out.obs.index) == set(data.obs.index) - set(screened) and set(controls) <= set(out.obs.index)
    assert out.n_cells + out.screen.n_cells == data.n_cells
    # the observational cells are exactly those of the data, split as they were
    keep = ~data.obs.index.isin(screened)
    alone = data.subset(keep)
    assert out.fingerprint(screen=False) == alone.fingerprint() == out.without_screen().fingerprint()
    assert out.fingerprint() != out.fingerprint(screen=False)
    assert (out.obs["split"].astype(str) == data.obs["split"][keep].astype(str)).all()
    # the screened cells keep their own matrices and labels; their guides are the called ones
    rows = data.obs.index.get_indexer(screened)
    assert (out.screen.atac != data.atac[rows]).nnz == 0 and np.array_equal(out.screen.rna, data.rna[rows])
    assert list(out.screen.obs["cell_type"].astype(str)) == list(data.obs["cell_type"].astype(str).iloc[rows])
    assert set(out.screen.obs["split"]) <= {"train", "val"} and (out.screen.obs["split"] == "val").sum() == 2
    assert _as_sets(screened, list(out.screen.guide_table.index), out.screen.guides) == \
        {b: set(calls[b]) for b in screened}
    summary = out.screen.summary()
    assert summary["screened_cells"] == 18 and summary["non_targeting_guides"] == 2 and summary["targeted_peaks"] == 6
    assert out.uns["screen"]["guides"] == "guides.csv" and out.uns["screen"]["non_targeting_only_cells"] == 8
    assert "screen" not in data.uns  # the loaded data is left as it was


def test_attach_is_seeded(pair, screen, tmp_path):
    a = _attach(pair, screen, tmp_path, seed=0)[1].screen.obs["split"]
    assert a.equals(_attach(pair, screen, tmp_path, seed=0)[1].screen.obs["split"])
    assert not a.equals(_attach(pair, screen, tmp_path, seed=1)[1].screen.obs["split"])


def test_attach_errors(pair, screen, toy, tmp_path):
    table = screen[1]
    with pytest.raises(InputError, match=r"2 of the 9 guides called in the data's cells \(\d+ cells carry them\) are "
                                         r"not in the guide table: \['g6', 'g7'\]"):
        _attach(pair, screen, tmp_path, table=table[~table["guide"].isin(["g6", "g7"])])
    with pytest.raises(InputError, match="none of the 2 barcodes with guides match the data's cells"):
        _attach(pair, screen, tmp_path, calls={"XX-1": ["g1"], "XX-2": ["g2"]})
    with pytest.raises(InputError, match="every cell of the data received a targeting guide"):
        _attach(pair, screen, tmp_path, calls={b: ["g1"] for b in toy.barcodes})
    with pytest.raises(InputError, match="no cell of the data received a targeting guide"):
        _attach(pair, screen, tmp_path, calls={b: ["ntc1"] for b in toy.barcodes[:5]})


@pytest.mark.parametrize("kw,message", [
    ({"data_spec": None, "guides": "g.csv"}, "need --data; the simulator makes screens with --simulate screen_cells=N"),
    ({"guide_key": "guide", "guide_calls": "c.csv"}, "pass either --guide-key or --guide-calls, not both"),
    ({"guide_key": "guide"}, "--guide-key/--guide-calls need --guides FILE"),
    ({"guides": "g.csv"}, "--guides needs the cells' guide assignments too"),
    ({"guides": "g.csv", "guide_key": "x"}, "--guides file g.csv does not exist"),
])
def test_option_errors(kw, message):
    args = {"data_spec": "d.h5mu", "guides": None, "guide_key": None, "guide_calls": None, **kw}
    with pytest.raises(InputError, match=re.escape(message)):
        check_guide_options(**args)


def test_guide_key_errors(tmp_path, toy, screen, pair):
    spec, data = pair
    guides = write_guide_table(tmp_path / "guides.csv", screen[1])
    with pytest.raises(InputError, match=r"--guide-key 'sgrna' is neither an obs column nor an obsm entry "
                                         r"\(rna.h5ad: obs \[.*'guide'.*\], obsm \[\]; atac.h5ad"):
        load_screen(data, spec, guides, guide_key="sgrna")
    h5 = write_10x_h5(tmp_path / "filtered_feature_bc_matrix.h5", toy)
    with pytest.raises(InputError, match="10x .h5 files carry no cell metadata, so --guide-key cannot be used"):
        read_guide_key(h5, "guide")
    bad = tmp_path / "calls.csv"
    bad.write_text("barcode,guide\nAAAC-1,g1\n")
    with pytest.raises(InputError, match=r"guide calls file calls.csv needs columns cell_barcode,feature_call \(10x "
                                         r"protospacer_calls_per_cell.csv\); missing \['cell_barcode', "
                                         r"'feature_call'\]"):
        load_screen(data, spec, guides, guide_calls=str(bad))


# ---------------------------------------------------------------------------------------------------- end to end
def test_bench_data_shows_the_screen(tmp_path, toy, screen, capsys):
    spec = write_h5ad_pair(tmp_path / "pair", toy)
    add_guides_to_h5ad(tmp_path / "pair" / "rna.h5ad", screen[0], key="guide")
    guides = write_guide_table(tmp_path / "guides.csv", screen[1])
    base = ["data", "--data", spec, "--label-key", "cell_type", "--cache-dir", str(tmp_path / "cache")]
    assert main([*base, "--guides", guides, "--guide-key", "guide"]) == 0
    md = capsys.readouterr().out
    assert "## Perturbation screen" in md and "| screened cells" in md and "42 × 40 × 30" in md
    assert main([*base, "--guides", guides, "--guide-key", "guide", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_cells"] == 42 and summary["screen"]["screened_cells"] == 18
    assert summary["screen"]["guides"] == 9 and summary["screen"]["non_targeting_guides"] == 2
    # without --guides: the data as before, no screen anywhere
    assert main(base) == 0
    plain = capsys.readouterr().out
    assert "Perturbation screen" not in plain and "60 × 40 × 30" in plain


def test_bench_data_with_10x_calls(tmp_path, toy, screen, capsys):
    h5 = write_10x_h5(tmp_path / "filtered_feature_bc_matrix.h5", toy)
    labels = write_labels_csv(tmp_path / "labels.csv", toy.barcodes, toy.cell_types)
    calls = write_protospacer_calls(tmp_path / "protospacer_calls_per_cell.csv", screen[0])
    guides = write_guide_table(tmp_path / "guides.csv", screen[1])
    assert main(["data", "--data", h5, "--labels", labels, "--guides", guides, "--guide-calls", calls, "--json",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    assert json.loads(capsys.readouterr().out)["screen"]["screened_cells"] == 18


def test_describe_without_a_screen_is_unchanged(pair):
    summary = describe(pair[1])
    assert "screen" not in summary and "Perturbation screen" not in render_markdown(summary)
