"""The bad-input table of docs/bad-inputs.md is true: every row names an input mistake whose `error: ...` line
(exit code 2, nothing written) contains the text the page shows. Rows and cases are matched by the table's first
column; `…` in the page's text stands for parts of the message that depend on the input (paths, lists).

Print the current messages with `python -m tests.test_bad_inputs` when a message changes."""

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from bench.cli import main
from datasets.files import folder_lock
from tests.multiome_files import (
    add_guides_to_h5ad,
    toy_guides,
    toy_multiome,
    write_guide_table,
    write_h5ad_pair,
    write_labels_csv,
)

PAGE = Path(__file__).resolve().parent.parent / "docs" / "bad-inputs.md"
TINY = ["run", "--scale", "tiny", "--no-progress"]
LABELS = ["--label-key", "cell_type"]


def _toy_pair(d: Path, **kw) -> str:
    return write_h5ad_pair(d / "toy", **kw)


def _screen(d: Path, rows=(), drop=(), calls=None) -> list[str]:
    """The toy pair with the toy screen's guides in the RNA obs column `guide`, and --guides: the toy's guide table
    with `rows` ((guide, peak) pairs) replacing or adding guides and the guides in `drop` left out. `calls`:
    --guide-calls FILE (this text) instead of --guide-key."""
    guides, table = toy_guides(toy_multiome())
    spec = _toy_pair(d)
    add_guides_to_h5ad(spec.split(",")[0], guides, key="guide")
    table = table[~table["guide"].isin([*drop, *(g for g, _ in rows)])]
    table = pd.concat([table, pd.DataFrame(list(rows), columns=["guide", "peak"])], ignore_index=True)
    where = ["--guide-calls", str(_write(d / "calls.csv", calls))] if calls else ["--guide-key", "guide"]
    return [*TINY, "--data", spec, *LABELS, "--guides", write_guide_table(d / "guides.csv", table), *where]


def _locked(d: Path) -> list[str]:
    return [*TINY, "--methods", "random", "--out", str(d / "busy")]


# table row → argv (given a scratch folder; files it needs are written there)
CASES = {
    "unknown method": lambda d: [*TINY, "--methods", "gridz"],
    "unknown cell type": lambda d: [*TINY, "--cell-types", "Neuron"],
    "gene not in the data": lambda d: [*TINY, "--genes", "NOTAGENE"],
    "L out of range": lambda d: [*TINY, "--L", "0,10"],
    "L not an integer": lambda d: [*TINY, "--L", "10,many"],
    "seeds < 1": lambda d: [*TINY, "--seeds", "0"],
    "surrogate seeds < 1": lambda d: [*TINY, "--surrogate-seeds", "0"],
    "threads < 1": lambda d: [*TINY, "--threads", "0"],
    "output folder in use": _locked,
    "output path is a file": lambda d: [*TINY, "--methods", "random", "--out", str(_touch(d / "results.txt"))],
    "labels without data": lambda d: [*TINY, "--labels", str(d / "labels.csv")],
    "data file missing": lambda d: [*TINY, "--data", str(d / "missing.h5mu")],
    "unknown data format": lambda d: [*TINY, "--data", str(_touch(d / "cells.txt"))],
    "one AnnData file": lambda d: [*TINY, "--data", _toy_pair(d).split(",")[0]],
    "no labels": lambda d: [*TINY, "--data", _toy_pair(d, label_key=None)],
    "label column missing": lambda d: [*TINY, "--data", _toy_pair(d), "--label-key", "celltype"],
    "labels file with wrong columns": lambda d: [*TINY, "--data", _toy_pair(d, label_key=None), "--labels",
                                                 str(_write(d / "labels.csv", "cell,type\nAAAC-1,Astro\n"))],
    "labels that match no cell": lambda d: [*TINY, "--data", _toy_pair(d, label_key=None), "--labels",
                                            write_labels_csv(d / "labels.csv", ["XX-1", "XX-2"], ["Astro", "Oligo"])],
    "no shared barcodes": lambda d: [*TINY, "--data", _toy_pair(d, atac_barcode_prefix="other_"), *LABELS],
    "scaled RNA": lambda d: [*TINY, "--data", _toy_pair(d, rna_x=_negative_rna()), *LABELS],
    "marker file missing": lambda d: [*TINY, "--markers", str(d / "markers.csv")],
    "marker file with wrong columns": lambda d: [*TINY, "--markers",
                                                 str(_write(d / "markers.csv", "type,symbol\nAstro,AQP4\n"))],
    "truth-reading control on real data": lambda d: [*TINY, "--data", _toy_pair(d), *LABELS, "--methods", "oracle"],
    "truth tier on your own data": lambda d: [*TINY, "--data", _toy_pair(d), *LABELS, "--surrogate", "truth"],
    "GPU requested, none present": lambda d: [*TINY, "--device", "cuda", "--methods", "random"],
    "compare with one run": lambda d: ["compare", str(d)],
    "unknown --simulate key": lambda d: [*TINY, "--simulate", "cells=5000"],
    "unknown --simulate world": lambda d: [*TINY, "--simulate", "world=flat"],
    "--simulate value of the wrong type": lambda d: [*TINY, "--simulate", "n_cells=5k"],
    "--simulate value out of range": lambda d: [*TINY, "--simulate", "open_fraction=0.9"],
    "--simulate with your own data": lambda d: [*TINY, "--data", _toy_pair(d), *LABELS, "--simulate", "n_cells=900"],
    "screen style without a screen": lambda d: ["fit", "--scale", "tiny", "--no-progress", "--surrogate", "screen"],
    "unknown screen library": lambda d: [*TINY, "--simulate", "screen_library=exome"],
    "fidelity curve: screen cells via --simulate": lambda d: ["fidelity-curve", "--scale", "tiny", "--simulate",
                                                             "screen_cells=5000"],
    "fidelity curve: negative screen": lambda d: ["fidelity-curve", "--scale", "tiny", "--screen-cells=-5"],
    "guide without a target": lambda d: _screen(d, rows=[("g7", "")]),
    "guide target that is no peak": lambda d: _screen(d, rows=[("g7", "chr7:100-600")]),
    "guide called but not in the table": lambda d: _screen(d, drop=["g6", "g7"]),
    "guide key missing": lambda d: [*_screen(d)[:-1], "sgRNA"],
    "guide calls file with wrong columns": lambda d: _screen(d, calls="barcode,guide\nAAAC-1,g1\n"),
    "guides that match no cell": lambda d: _screen(d, calls="cell_barcode,feature_call\nXX-1,g1|g2\nXX-2,g3\n"),
    "guide assignments without --guides": lambda d: [*TINY, "--data", _toy_pair(d), *LABELS, "--guide-key", "guide"],
    "--guides without guide assignments": lambda d: [*TINY, "--data", _toy_pair(d), *LABELS, "--guides",
                                                     str(_touch(d / "guides.csv"))],
    "--guides on synthetic data": lambda d: [*TINY, "--guides", str(d / "guides.csv"), "--guide-key", "guide"],
    "both --guide-key and --guide-calls": lambda d: [*_screen(d), "--guide-calls", str(d / "calls.csv")],
    "fidelity curve: unknown style": lambda d: ["fidelity-curve", "--scale", "tiny", "--styles", "paried",
                                                "--out", str(d / "out")],
    "fidelity curve: cells via --simulate": lambda d: ["fidelity-curve", "--scale", "tiny", "--simulate",
                                                      "n_cells=5000", "--out", str(d / "out")],
}


def _touch(path: Path) -> Path:
    path.write_text("")
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _negative_rna():
    toy = toy_multiome()
    return sp.csr_matrix(toy.counts.astype(np.float32) - 1.0)


def table_rows() -> dict[str, str]:
    """{input: what you see} from the table between the bad-inputs markers."""
    text = PAGE.read_text()
    block = text.split("<!-- bad-inputs -->")[1].split("<!-- /bad-inputs -->")[0]
    rows = {}
    for line in block.strip().splitlines()[2:]:  # header and rule
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[-1].strip("`")
    return rows


def error_of(argv: list[str], folder: Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        if argv[:1] == ["run"] and "--out" not in argv:
            argv = [*argv, "--out", str(folder / "out")]
        code = main([*argv, "--cache-dir", str(folder / "cache")] if argv[0] == "run" else argv)
    lines = [line for line in err.getvalue().splitlines() if line.startswith("error: ")]
    return code, lines[0][len("error: "):] if lines else err.getvalue()


def _matches(shown: str, message: str) -> bool:
    """The page's text, with `…` for input-dependent parts, found in the message in order."""
    pattern = ".*?".join(re.escape(part.strip()) for part in shown.split("…"))
    return re.search(pattern, message, flags=re.S) is not None


def test_every_readme_row_has_a_case_and_every_case_a_row():
    assert sorted(table_rows()) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_readme_shows_what_the_user_sees(name, tmp_path, monkeypatch):
    if name == "GPU requested, none present":
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    lock = folder_lock(tmp_path / "busy") if name == "output folder in use" else contextlib.nullcontext()
    with lock:
        code, message = error_of(CASES[name](tmp_path), tmp_path)
    assert code == 2, message
    assert "\n" not in message.strip()
    assert _matches(table_rows()[name], message), f"docs/bad-inputs.md: {table_rows()[name]!r}\nactual: {message!r}"
    assert not (tmp_path / "out" / "leaderboard.md").exists()


if __name__ == "__main__":  # the current message of every case, for the page
    import tempfile

    for name, argv in CASES.items():
        with tempfile.TemporaryDirectory() as d:
            with folder_lock(Path(d) / "busy") if name == "output folder in use" else contextlib.nullcontext():
                print(f"| {name} | {error_of(argv(Path(d)), Path(d))[1]} |")
