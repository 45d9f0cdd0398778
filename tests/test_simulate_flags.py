"""`--simulate KEY=VALUE` on `budget` and `fidelity-curve`: a bad key or world is one error line (exit 2) before
anything is written, the help names the worlds, and the overrides reach the data the studies load (and their
run.json)."""

import json

import pytest

from bench.cli import main
from bench.errors import UserError
from datasets.synthetic import SCALES
from datasets.worlds import WORLDS

WORLD_LIST = ", ".join(WORLDS)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDS_BENCH_CACHE", str(tmp_path / "cache"))


class Loaded(Exception):
    """Raised by the patched `load_inputs`: the study got as far as loading its data."""


def _capture(monkeypatch, module) -> list:
    seen = []

    def load_inputs(inputs):
        seen.append(inputs)
        raise Loaded

    monkeypatch.setattr(module, "load_inputs", load_inputs)
    return seen


@pytest.mark.parametrize("command", ["budget", "fidelity-curve"])
def test_unknown_world_is_one_error_line_and_writes_nothing(command, tmp_path, capsys):
    out = tmp_path / "out"
    code = main([command, "--scale", "tiny", "--simulate", "world=flat", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.strip().count("\n") == 0 and "Traceback" not in err
    assert "unknown world 'flat'" in err and WORLD_LIST in err
    assert not out.exists()


@pytest.mark.parametrize("command", ["budget", "fidelity-curve"])
def test_unknown_key_is_one_error_line(command, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([command, "--scale", "tiny", "--simulate", "wrld=additive", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "unknown key 'wrld'" in err and "world" in err
    assert not out.exists()


@pytest.mark.parametrize("pair, flag", [("n_cells=5000", "--cells"), ("umi_per_cell=2000", "--depths")])
def test_fidelity_curve_refuses_the_grid_keys(pair, flag, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["fidelity-curve", "--scale", "tiny", "--simulate", pair, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.strip().count("\n") == 0 and flag in err
    assert not out.exists()


def test_malformed_pair_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["budget", "--simulate", "world"])
    assert exc.value.code == 2
    assert "KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["budget", "fidelity-curve", "run", "fit", "data"])
def test_help_mentions_simulate_and_the_worlds(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    assert "--simulate" in out and "world=additive" in out
    assert all(name in out for name in WORLDS)


def test_run_budget_curve_loads_the_simulated_data(monkeypatch):
    from bench.studies import budget

    seen = _capture(monkeypatch, budget)
    with pytest.raises(Loaded):
        budget.run_budget_curve("tiny", seed=3, simulate=[("world", "additive"), ("n_genes", "50")], progress=False)
    (inputs,) = seen
    assert inputs.simulate == (("world", "additive"), ("n_genes", "50"))
    assert inputs.seed == 3 and inputs.scale == "tiny"
    seen.clear()
    with pytest.raises(Loaded):  # a dict works too, and no overrides leave the scale's own data
        budget.run_budget_curve("tiny", simulate={"world": "synergy"}, progress=False)
    assert seen[0].simulate == (("world", "synergy"),)
    seen.clear()
    with pytest.raises(Loaded):
        budget.run_budget_curve("tiny", progress=False)
    assert seen[0].simulate == ()


def test_run_budget_curve_checks_simulate_before_loading(monkeypatch):
    from bench.studies import budget

    seen = _capture(monkeypatch, budget)
    with pytest.raises(UserError, match="unknown world 'flat'"):
        budget.run_budget_curve("tiny", simulate=[("world", "flat")], progress=False)
    assert seen == []


def test_cli_budget_passes_simulate_through(monkeypatch, tmp_path):
    from bench.studies import budget

    seen = _capture(monkeypatch, budget)
    with pytest.raises(Loaded):
        main(["budget", "--scale", "tiny", "--simulate", "world=mixed", "--simulate", "open_fraction=0.05",
              "--out", str(tmp_path / "out"), "--no-progress"])
    assert seen[0].simulate == (("world", "mixed"), ("open_fraction", "0.05"))


def test_fidelity_points_merge_the_base_overrides():
    from bench.fidelity.data_curve import CurvePoint, check_simulate

    tiny = SCALES["tiny"]
    own = CurvePoint("paired", tiny.n_cells, tiny.umi_per_cell)
    bigger = CurvePoint("paired", 1200, 2000.0)
    assert own.simulate(tiny) == () and bigger.simulate(tiny) == bigger.overrides(tiny)  # no base: caches shared
    assert own.simulate(tiny, [("world", "additive")]) == (("world", "additive"),)
    assert bigger.simulate(tiny, {"world": "additive"}) == (("world", "additive"), ("n_cells", "1200"),
                                                             ("umi_per_cell", "2000"))
    assert dict(bigger.simulate(tiny, [("n_cells", "5000")]))["n_cells"] == "1200"  # the point's own key wins
    assert check_simulate([("world", "silencer")]) == (("world", "silencer"),)
    with pytest.raises(UserError, match="--cells"):
        check_simulate([("world", "silencer"), ("n_cells", "5000")])


def test_run_data_curve_loads_every_point_with_the_base_overrides(monkeypatch):
    from bench.fidelity import data_curve

    seen = _capture(monkeypatch, data_curve)
    points = [data_curve.CurvePoint("paired", 1200, SCALES["tiny"].umi_per_cell)]
    with pytest.raises(Loaded):
        data_curve.run_data_curve("tiny", points=points, methods=(), simulate=[("world", "synergy")], progress=False)
    assert seen[0].simulate == (("world", "synergy"), ("n_cells", "1200"))
    seen.clear()
    with pytest.raises(UserError, match="unknown world"):  # every point is checked before the first one loads
        data_curve.run_data_curve("tiny", points=points, methods=(), simulate={"world": "flat"}, progress=False)
    with pytest.raises(UserError, match="--depths"):
        data_curve.run_data_curve("tiny", points=points, methods=(), simulate={"umi_per_cell": "100"},
                                  progress=False)
    assert seen == []


def test_cli_fidelity_curve_passes_simulate_through(monkeypatch, tmp_path):
    from bench.fidelity import data_curve

    seen = _capture(monkeypatch, data_curve)
    with pytest.raises(Loaded):
        main(["fidelity-curve", "--scale", "tiny", "--cells", "900", "--depths", "none", "--reference-cells", "none",
              "--styles", "paired", "--methods", "none", "--simulate", "world=additive",
              "--out", str(tmp_path / "out"), "--no-progress"])
    assert seen[0].simulate == (("world", "additive"),)  # 900 cells is the tiny scale's own


def test_tiny_budget_curve_records_its_world(tmp_path, capsys):
    """The truth tier with a control needs no training: the whole command runs in seconds in another world."""
    out = tmp_path / "out"
    assert main(["budget", "--scale", "tiny", "--tiers", "truth", "--methods", "nearest-tss", "--cell-types",
                 "Oligo", "--budgets", "1e3", "--simulate", "world=additive", "--out", str(out),
                 "--no-progress"]) == 0
    assert json.loads((out / "run.json").read_text())["simulate"] == {"world": "additive"}
    assert "tiny scale (--simulate world=additive)" in (out / "budget_curve.md").read_text()
    assert "--simulate world=additive" in (out / "report.html").read_text()


def test_tiny_fidelity_curve_records_its_world(tmp_path):
    out = tmp_path / "out"
    assert main(["fidelity-curve", "--scale", "tiny", "--cells", "900", "--depths", "none", "--reference-cells",
                 "none", "--styles", "paired", "--methods", "none", "--simulate", "world=synergy",
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--no-progress"]) == 0
    assert json.loads((out / "run.json").read_text())["simulate"] == {"world": "synergy"}
    assert "world=synergy" in (out / "fidelity_curve.md").read_text().splitlines()[0]
