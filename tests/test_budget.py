"""Anytime curves (bench/studies/budget.py): lifted stopping rules, the per-budget table by hand, a tiny end-to-end
run."""

import json

import pandas as pd
import pytest

from bench.studies.budget import COALITION_CAP, STEP_CAP, anytime_params, curve_table
from bench.cli import main


def test_anytime_params_lift_each_methods_own_stop():
    assert anytime_params("grids", 10_000, {"sweeps": 2}) == {"steps": STEP_CAP}
    assert anytime_params("grids-groups", 10_000, {"sweeps": 2}) == {"steps": STEP_CAP}
    assert anytime_params("shapiq-fsii", 10_000, {}) == {"n_coalitions": COALITION_CAP}
    assert anytime_params("fimap", 64_000, {"steps": 100}) == {"steps": 1_000}  # warm-up spans the budget
    assert anytime_params("lime", 10, {"n_cells": 6})["n_cells"] >= 10 ** 6
    assert anytime_params("cxplain", 10, {"max_cells": 24, "epochs": 6}) == {"max_cells": None, "epochs": 6}
    assert anytime_params("expected-gradients", 10, {"n_cells": 32, "nsamples": 100}) == {"n_cells": None,
                                                                                           "nsamples": 100}
    assert anytime_params("saliency", 10, {}) == {}  # one pass per cell: nothing to lift


def _record(tier, budget, method, gene, rel, evals, status="ok", effort=()):
    return {"tier": tier, "budget": budget, "method": method, "L": 10, "cell_type": gene[:1], "gene": gene,
            "seed": 0, "rel_delta_pct": rel, "status": status, "explain_seconds": 2.0,
            "info": {"evaluations": evals, **({"effort": list(effort)} if effort else {})}}


def test_curve_table_by_hand():
    recs = [_record("surrogate", 100, "m", "A1", -10.0, 90), _record("surrogate", 100, "m", "B1", -20.0, 110,
                                                                     status="budget_exceeded"),
            _record("surrogate", 1000, "m", "A1", -30.0, 900, effort=["fewer_cells"]),
            _record("surrogate", 1000, "m", "B1", -50.0, 1000)]
    table = curve_table(recs).set_index("budget")
    assert table.loc[100, "rel_delta_pct"] == pytest.approx(-15.0)  # Avg over the two cell types
    assert table.loc[100, "evaluations_median"] == pytest.approx(100.0)
    assert table.loc[100, "status"] == "budget_exceeded 1/2"
    assert table.loc[1000, "rel_delta_pct"] == pytest.approx(-40.0) and table.loc[1000, "evaluations_max"] == 1000
    assert table.loc[1000, "status"] == "ok; effort: fewer_cells 1/2"


def test_tiny_budget_curve_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDS_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "curve"
    assert main(["budget", "--scale", "tiny", "--methods", "grids,saliency,nearest-tss", "--cell-types", "Oligo",
                 "--budgets", "1e3,3e4", "--out", str(out), "--no-progress"]) == 0
    table = pd.read_csv(out / "budget_curve.csv")
    assert set(table["tier"]) == {"surrogate", "truth"} and set(table["budget"]) == {1000, 30000}
    grids = table[(table["method"] == "grids") & (table["tier"] == "surrogate")].set_index("budget")
    # one GRIDS step costs more than 1,000 evaluations: the first step runs, then the budget ends it before it
    # visits every slot, so the unvisited slots come from its gradient ranking and the curve says so
    assert "partial_pass" in grids.loc[1000, "status"] and "budget_exceeded" in grids.loc[1000, "status"]
    assert grids.loc[1000, "evaluations_median"] < grids.loc[30000, "evaluations_median"] <= 30000 * 1.1
    assert (table[table["method"] == "nearest-tss"]["evaluations_max"] == 0).all()
    for name in ("budget_curve.md", "budget_curve.png", "report.html", "jobs.jsonl", "run.json"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "run.json").read_text())["budgets"] == [1000, 30000]
    assert "Truth tier" in (out / "budget_curve.md").read_text()


@pytest.mark.parametrize("argv, message", [(["--budgets", "lots"], "--budgets takes numbers"),
                                           (["--budgets", "0"], "positive"),
                                           (["--tiers", "model"], "--tiers"),
                                           (["--methods", "gridz"], "gridz")])
def test_bad_budget_arguments_are_one_error_line(argv, message, capsys, tmp_path):
    assert main(["budget", "--scale", "tiny", *argv, "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and not (tmp_path / "x").exists()
