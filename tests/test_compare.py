"""`bench compare`: methods aligned on shared jobs, paired differences hand-computed, a ranking change and a method
present in one run only; the committed example runs compare from the command line."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bench
from bench.cli import main
from bench.reporting.comparison import compare_runs, load_run
from bench.reporting.report import write_report
from tests.toy_models import toy_facts

EXAMPLES = Path(__file__).parent.parent / "results" / "examples"


def run_dir(tmp_path, name: str, values: dict) -> Path:
    """A results folder whose jobs have the given Rel Δ per method: {method: [(cell type, gene, value), ...]}."""
    records = [{"method": m, "L": 10, "cell_type": ct, "gene": g, "seed": 0, "rel_delta_pct": v,
                "avg_delta": v / 10, "status": "ok", "seconds": 1.0}
               for m, jobs in values.items() for ct, g, v in jobs]
    write_report(records, tmp_path / name, toy_facts(name), list(values), figure=False)
    return tmp_path / name


def test_aligned_on_shared_jobs_with_a_ranking_change_and_a_method_in_one_run(tmp_path):
    first = run_dir(tmp_path, "first", {"a": [("X", "g1", -10), ("X", "g2", -20), ("Y", "g3", -30)],
                                        "b": [("X", "g1", -12), ("X", "g2", -14), ("Y", "g3", -40)],
                                        "only": [("X", "g1", -99)]})
    second = run_dir(tmp_path, "second", {"a": [("X", "g1", -30), ("X", "g2", -40), ("Y", "g3", -50)],
                                          "b": [("X", "g1", -13), ("X", "g2", -15)]})  # b has no Y/g3 here
    table = compare_runs({"first": load_run(first), "second": load_run(second)}).set_index(["method", "L"])
    a, b, only = table.loc[("a", 10)], table.loc[("b", 10)], table.loc[("only", 10)]
    # a: all 3 jobs shared; Avg = mean of per-type means: first (−15, −30) → −22.5, second (−35, −50) → −42.5
    assert a["n_shared"] == 3 and a["avg@first"] == pytest.approx(-22.5) and a["avg@second"] == pytest.approx(-42.5)
    d = np.array([-20.0, -20.0, -20.0])  # paired differences: no spread
    assert a["diff@second"] == pytest.approx(d.mean()) and a["ci_low@second"] == pytest.approx(-20.0)
    # b: only X/g1, X/g2 are shared: first −13, second −14 → b beats a in the first run, not in the second
    assert b["n_shared"] == 2 and b["avg@first"] == pytest.approx(-13.0) and b["avg@second"] == pytest.approx(-14.0)
    assert (a["rank@first"], b["rank@first"]) == (1, 2)  # a −22.5 < b −13 ... (lower is better)
    assert (a["rank@second"], b["rank@second"]) == (1, 2)
    assert only["runs_with_method"] == "first" and np.isnan(only["rank@first"]) and np.isnan(only["avg@second"])
    md = bench.compare(first, second).attrs["markdown"]
    assert "only ‡" in md and "‡ not in every run: only (only first)" in md


def test_a_ranking_change_is_reported(tmp_path):
    first = run_dir(tmp_path, "p", {"a": [("X", "g1", -10)], "b": [("X", "g1", -5)]})
    second = run_dir(tmp_path, "q", {"a": [("X", "g1", -4)], "b": [("X", "g1", -6)]})
    table = bench.compare(first, second, out=tmp_path / "cmp")
    assert table.set_index("method")["rank_changed"].to_dict() == {"a": True, "b": True}
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "Rankings changed: a (1 → 2), b (2 → 1)." in md
    assert len(pd.read_csv(tmp_path / "cmp" / "compare.csv")) == 2


def test_cli_compares_the_committed_paired_and_reference_runs(capsys):
    assert main(["compare", str(EXAMPLES / "quick"), str(EXAMPLES / "quick-reference"),
                 "--names", "paired,reference"]) == 0
    out = capsys.readouterr().out
    assert "## L = 10" in out and "## L = 128" in out and "(Δ " in out and "Rankings changed:" in out
    assert "| grids " in out and "| random " in out


@pytest.mark.parametrize("argv, message", [
    (["compare", "nowhere"], "at least two runs"),
    (["compare", "nowhere", "elsewhere"], "no leaderboard.csv"),
])
def test_bad_compare_input_is_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_a_surrogate_seeds_run_enters_with_each_jobs_mean(tmp_path):
    records = [{"method": "a", "L": 10, "cell_type": "X", "gene": "g1", "seed": 0, "surrogate_seed": s,
                "rel_delta_pct": v, "status": "ok", "seconds": 1.0} for s, v in ((0, -10.0), (1, -20.0))]
    write_report(records, tmp_path / "multi", toy_facts("multi"), ["a"], figure=False)
    single = run_dir(tmp_path, "single", {"a": [("X", "g1", -5)]})
    row = compare_runs({"single": load_run(single), "multi": load_run(tmp_path / "multi")}).iloc[0]
    assert row["n_shared"] == 1 and row["avg@multi"] == pytest.approx(-15.0) and row["diff@multi"] == pytest.approx(-10)
