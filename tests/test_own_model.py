"""bench/studies/own_model.py: the surrogate against its own network as a plain module (`bench perf --own-model`).

* `summarise` on a hand-built table: mean seconds per model, their ratio, matching peaks counted per job;
* at tiny scale the two models are the same function: Saliency picks the same peaks on both, GRIDS takes the
  embedding-bag path on the surrogate and the generic path on the module, and the three files are written;
* an unknown method is one clear error before anything runs.
"""

import json

import pandas as pd
import pytest

from bench.cli import main
from bench.studies.own_model import FAST, OWN, own_model_paths, summarise


def test_summarise_by_hand():
    long = pd.DataFrame([
        {"method": "m", "model": FAST, "explain_seconds": 1.0, "peaks": [1, 2], "rel_delta_pct": -2.0,
         "status": "ok", "path": None},
        {"method": "m", "model": OWN, "explain_seconds": 3.0, "peaks": [1, 2], "rel_delta_pct": -2.0,
         "status": "ok", "path": None},
        {"method": "m", "model": FAST, "explain_seconds": 3.0, "peaks": [3, 4], "rel_delta_pct": -4.0,
         "status": "ok", "path": None},
        {"method": "m", "model": OWN, "explain_seconds": 9.0, "peaks": [4, 3], "rel_delta_pct": -1.0,
         "status": "time_limit", "path": None},
    ])
    row = summarise(long).iloc[0]
    assert row.fast_s == 2.0 and row.own_module_s == 6.0 and row.own_over_fast == 3.0
    assert row.same_peaks == "1/2"  # the order of the peaks is part of the answer
    assert row.rel_delta_fast == -3.0 and row.rel_delta_own == -1.5
    assert row.statuses_own == "ok,time_limit"


def test_tiny_run_writes_its_files_and_the_same_function_gives_the_same_first_order_answer(tmp_path):
    summary = own_model_paths("tiny", methods=("saliency", "grids"), n_genes=1, out=tmp_path, progress=False)
    by = summary.set_index("method")
    assert by.loc["saliency", "same_peaks"] == "1/1"
    assert by.loc["grids", "path_fast"] == "embedding bags"
    long = pd.read_csv(tmp_path / "own_model.csv")
    assert set(long[long.method == "grids"].path) == {"embedding bags", "generic"}
    assert json.loads((tmp_path / "own_model.json").read_text())["scale"] == "tiny"
    assert "plain torch module" in (tmp_path / "own_model.md").read_text()


def test_unknown_method_is_one_error(tmp_path, capsys):
    assert main(["perf", "--own-model", "--scale", "tiny", "--methods", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
