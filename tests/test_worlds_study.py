"""Every explainer in every regulatory world (bench/studies/worlds.py, `bench.worlds`, `python -m bench worlds`).

1. the pure tables on hand-made job records (no simulation): `world_table`'s Avg is the mean over cell types of
   each cell type's gene mean; `world_ranking_tau` is +1 / −1 for worlds that order the explainers alike / in
   reverse and leaves the controls out; `best_per_world` picks the highest % of optimum among the non-controls and
   its paired differences are the ones computed by hand; `methods_by_world` bolds that cell and marks the control;
   `tier_agreement`; `check_worlds`; `worlds_header`;
2. a tiny end-to-end study (two worlds, truth tier): worlds.csv has one row per (world, tier, method, L) in
   `COLUMNS`, % of optimum never exceeds 100, every output is written, and a second identical call (through
   `bench.worlds`) reuses every job and returns the same table; one world with the surrogate tier writes the
   τ(surrogate tier, truth tier) section;
3. the command line: bad --worlds / --tiers / --L / --methods exit 2 with one `error:` line, `--help` lists the
   flags, and a tiny run prints worlds.md.
"""

import gzip
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bench
from bench.cli import main
from bench.errors import UserError
from bench.studies.worlds import (
    COLUMNS,
    best_markdown,
    best_per_world,
    check_worlds,
    methods_by_world,
    run_worlds,
    tier_agreement,
    world_ranking_tau,
    world_table,
    worlds_header,
)
from datasets.worlds import WORLDS

# ------------------------------------------------------------------------------------------------ hand-made records
# Cell type A has one marker gene and B three, so the Avg over cell types (each type's gene mean, then the mean of
# the types) differs from the plain mean over the four jobs: a table that averaged jobs would fail.
JOBS = [("A", "a1"), ("B", "b1"), ("B", "b2"), ("B", "b3")]
PCT = {  # truth tier, L = 3: % of optimum per job, in JOBS order
    "redundant": {"grids": [90, 80, 70, 60], "saliency": [70, 60, 50, 30], "random": [10, 0, 5, 10]},
    "synergy": {"grids": [50, 80, 60, 90], "saliency": [90, 60, 70, 80], "random": [0, 0, 0, 0]},
}
# by hand: Avg = (A's value + mean of B's three) / 2
AVG = {"redundant": {"grids": (90 + 70) / 2, "saliency": (70 + 140 / 3) / 2, "random": (10 + 5) / 2},
       "synergy": {"grids": (50 + 230 / 3) / 2, "saliency": (90 + 70) / 2, "random": 0.0}}


def _rec(world, method, job, pct, tier="truth", rel=None, L=3):
    cell_type, gene = job
    rel = -pct / 4 if rel is None else rel
    return {"world": world, "tier": tier, "method": method, "L": L, "cell_type": cell_type, "gene": gene, "seed": 0,
            "status": "ok", "rel_delta_pct": rel, "pct_of_optimum": pct if tier == "truth" else np.nan,
            "oracle_rel_delta_pct": rel, "off_target_pct": 0.0, "info": {}}


def _records(pct=PCT):
    return [_rec(w, m, job, float(v)) for w, per in pct.items() for m, values in per.items()
            for job, v in zip(JOBS, values)]


def _row(markdown: str, first: str) -> list[str]:
    """The cells of the markdown table row whose first cell is `first`."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in\n{markdown}")


def test_world_table_avg_is_the_mean_over_cell_types_of_gene_means():
    table = world_table(_records())
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == 6 and not table.duplicated(["world", "tier", "method", "L"]).any()
    for r in table.itertuples():
        assert r.tier == "truth" and r.L == 3 and r.n_scored == 4 and r.status == "ok"
        assert r.pct_of_optimum == pytest.approx(AVG[r.world][r.method], abs=1e-9)
        assert r.rel_delta_pct == pytest.approx(-AVG[r.world][r.method] / 4, abs=1e-9)
        # the CI is a t-interval over the two cell-type means
        type_means = np.array([PCT[r.world][r.method][0], np.mean(PCT[r.world][r.method][1:])])
        half = stats.t.ppf(0.975, 1) * type_means.std(ddof=1) / np.sqrt(2)
        assert r.pct_of_optimum_ci95 == pytest.approx(half, abs=1e-9)
    # the plain job mean would differ: the test can tell the two apart
    assert np.mean(PCT["redundant"]["saliency"]) != pytest.approx(AVG["redundant"]["saliency"])


def test_world_ranking_tau_is_plus_one_alike_minus_one_reversed_and_leaves_controls_out():
    # a third world with redundant's order (every value 5 points lower)
    pct = {**PCT, "additive": {m: [v - 5 for v in values] for m, values in PCT["redundant"].items()}}
    table = world_table(_records(pct))
    tau = world_ranking_tau(table, 3, {"random"})
    assert list(tau.index) == list(tau.columns) == ["redundant", "synergy", "additive"]
    assert np.allclose(np.diag(tau.to_numpy(dtype=float)), 1.0)
    assert tau.loc["redundant", "additive"] == pytest.approx(1.0)
    # redundant: grids > saliency; synergy: saliency > grids
    assert tau.loc["redundant", "synergy"] == pytest.approx(-1.0)
    assert tau.loc["synergy", "redundant"] == pytest.approx(-1.0)
    # with the control counted, random (last in both worlds) makes 2 of 3 pairs concordant: τ = 1/3
    assert world_ranking_tau(table, 3, ())["synergy"]["redundant"] == pytest.approx(1 / 3)
    # no truth-tier rows at that L: all NaN, no crash
    assert world_ranking_tau(table, 10, {"random"}).empty


def test_best_per_world_picks_highest_pct_and_paired_differences_by_hand():
    best = best_per_world(_records(), 3, {"random"})
    assert set(best["world"]) == {"redundant", "synergy"}
    leaders = best.groupby("world")["best_method"].first()
    assert leaders["redundant"] == "grids" and leaders["synergy"] == "saliency"
    rows = best.set_index(["world", "method"])
    for world, method, leader in [("redundant", "saliency", "grids"), ("redundant", "random", "grids"),
                                  ("synergy", "grids", "saliency"), ("synergy", "random", "saliency")]:
        d = np.subtract(PCT[world][method], PCT[world][leader], dtype=float)
        half = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
        r = rows.loc[(world, method)]
        assert r["mean_diff"] == pytest.approx(d.mean(), abs=1e-9), (world, method)
        assert r["ci_low"] == pytest.approx(d.mean() - half, abs=1e-9)
        assert r["ci_high"] == pytest.approx(d.mean() + half, abs=1e-9)
        assert (r["n_better"], r["n_tied"], r["n_worse"]) == ((d > 0).sum(), (d == 0).sum(), (d < 0).sum())
    assert rows.loc[("redundant", "saliency"), "mean_diff"] == pytest.approx(-22.5)  # (-20 -20 -20 -30) / 4
    assert rows.loc[("synergy", "grids"), "mean_diff"] == pytest.approx(-5.0)  # (-40 +20 -10 +10) / 4
    assert rows.loc[("redundant", "grids"), "mean_diff"] == 0.0  # the best's own row

    md = best_markdown(best, {"random"})
    red, syn = _row(md, "redundant"), _row(md, "synergy")
    assert red[1] == "grids" and red[2].startswith("saliency: −22.5 [") and red[2].endswith("(0/0/4)")
    assert red[3] == "none"  # saliency's CI stays below 0 in redundant
    assert syn[1] == "saliency" and syn[2].startswith("grids: −5.0 [") and syn[2].endswith("(2/0/2)")
    assert syn[3] == "grids"  # its CI reaches 0: not separated from the best
    assert "random" not in md  # the control is never the runner-up


def test_a_control_with_the_highest_score_is_never_the_best():
    pct = {w: dict(per) for w, per in PCT.items()}
    pct["redundant"]["random"] = [100, 100, 100, 100]
    records = _records(pct)
    best = best_per_world(records, 3, {"random"})
    assert set(best[best["world"] == "redundant"]["best_method"]) == {"grids"}
    md = methods_by_world(world_table(records), "truth", 3, "pct_of_optimum")
    random = _row(md, "random (control)")
    assert not any("**" in c for c in random)


def test_methods_by_world_bolds_the_best_explainer_and_marks_the_control():
    table = world_table(_records())
    md = methods_by_world(table, "truth", 3, "pct_of_optimum")
    header = _row(md, "Method")
    assert header == ["Method", "redundant", "synergy", "mean over worlds"]
    grids, saliency, random = _row(md, "grids"), _row(md, "saliency"), _row(md, "random (control)")
    assert grids[1].startswith("**80") and grids[1].endswith("**") and "**" not in grids[2]
    assert saliency[2].startswith("**80") and "**" not in saliency[1]
    assert not any("**" in c for c in random)
    assert sum(line.count("**") for line in md.splitlines()) == 4  # exactly one bold cell per world
    # Rel Δ: the lowest (most negative) is best, and it is signed
    rel = methods_by_world(table, "truth", 3, "rel_delta_pct")
    assert _row(rel, "grids")[1].startswith("**−20") and _row(rel, "saliency")[2].startswith("**−20")
    # nothing at that tier / L: nothing to render
    assert methods_by_world(table, "surrogate", 3, "rel_delta_pct") == ""
    assert methods_by_world(table, "truth", 10, "pct_of_optimum") == ""


def test_tier_agreement_per_world():
    truth = _records()
    # surrogate tier: redundant ranks like the truth (a smaller effect), synergy in reverse
    surrogate = [_rec(r["world"], r["method"], (r["cell_type"], r["gene"]), np.nan, tier="surrogate",
                      rel=r["rel_delta_pct"] / 10 if r["world"] == "redundant" else -r["rel_delta_pct"])
                 for r in truth]
    agree = tier_agreement(truth + surrogate, ["grids", "saliency"], 3, n_boot=50).set_index("world")
    assert agree.loc["redundant", "tau"] == pytest.approx(1.0)
    assert agree.loc["synergy", "tau"] == pytest.approx(-1.0)
    assert (agree["n_jobs"] == 4).all() and (agree["L"] == 3).all()
    assert (agree["low"] <= agree["tau"] + 1e-12).all() and (agree["tau"] <= agree["high"] + 1e-12).all()
    assert tier_agreement(truth, ["grids", "saliency"], 3).empty  # one tier only: nothing to agree on


def test_check_worlds():
    with pytest.raises(UserError) as exc:
        check_worlds(["redundant", "flat", "nowhere"])
    message = str(exc.value)
    assert "flat" in message and "nowhere" in message and "--worlds" in message
    assert all(w in message for w in WORLDS)
    assert check_worlds(["synergy", "redundant", "synergy"]) == ["synergy", "redundant"]
    assert check_worlds(None) == list(WORLDS) == check_worlds([])


def test_worlds_header_says_what_was_reused():
    facts = {"scale": "tiny", "seed": 0, "worlds": ["redundant", "synergy"], "tiers": ["truth"], "Ls": [3, 10],
             "n_methods": 3, "wall_seconds": 90.0, "n_jobs": 48, "reused": 0, "surrogates_reused": 0}
    fresh = worlds_header(facts)
    assert "redundant, synergy" in fresh and "L 3, 10" in fresh and "1.5 min" in fresh and "nothing reused" in fresh
    again = worlds_header({**facts, "reused": 48})
    assert "48 of 48 jobs" in again and "not a run time" in again


# ------------------------------------------------------------------------------------------------ end to end (tiny)
METHODS = ["saliency", "input-x-gradient", "random"]


def test_tiny_worlds_study_writes_everything_and_a_rerun_reuses_every_job(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDS_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "worlds"
    table = run_worlds("tiny", worlds=["redundant", "synergy"], tiers=("truth",), methods=METHODS, Ls=(3,),
                       out=out, progress=False)
    csv = pd.read_csv(out / "worlds.csv")
    assert list(csv.columns) == list(COLUMNS)
    assert len(csv) == 2 * 1 * 3 * 1 and not csv.duplicated(["world", "tier", "method", "L"]).any()
    assert set(csv["world"]) == {"redundant", "synergy"} and set(csv["tier"]) == {"truth"}
    assert set(csv["method"]) == set(METHODS) and set(csv["L"]) == {3}
    assert (csv["pct_of_optimum"] <= 100 + 1e-6).all() and csv["pct_of_optimum"].notna().all()
    assert (csv["rel_delta_pct"] <= 1e-9).all()  # the truth tier closes peaks of an activating model
    assert np.allclose(csv["pct_of_optimum"], table["pct_of_optimum"], rtol=0, atol=1e-9)

    for name in ("worlds.md", "worlds.png", "report.html", "regime.csv", "run.json", "jobs.jsonl.gz"):
        assert (out / name).stat().st_size > 0, name
    facts = json.loads((out / "run.json").read_text())
    assert facts["reused"] == 0 and facts["worlds_done"] == ["redundant", "synergy"] and facts["Ls"] == [3]
    jobs = [json.loads(line) for line in gzip.decompress((out / "jobs.jsonl.gz").read_bytes()).splitlines()]
    assert len(jobs) == facts["n_jobs"] == int(csv["n_scored"].sum())
    assert {(j["world"], j["tier"]) for j in jobs} == {("redundant", "truth"), ("synergy", "truth")}
    assert list(pd.read_csv(out / "regime.csv")["world"]) == ["redundant", "synergy"]
    md = (out / "worlds.md").read_text()
    assert "nothing reused" in md and "Truth tier: % of the exact optimum at L = 3" in md
    assert "Does the ranking survive a change of world?" in md and "Closure composition in the synergy world" in md

    # the same study again, through the API: every job from the cache, the same table
    again = bench.worlds("tiny", worlds=["redundant", "synergy"], tiers=("truth",), methods=METHODS, L=(3,),
                         out=out, progress=False)
    facts2 = json.loads((out / "run.json").read_text())
    assert facts2["reused"] == facts2["n_jobs"] == facts["n_jobs"]
    assert f"{facts['n_jobs']} of {facts['n_jobs']} jobs" in (out / "worlds.md").read_text()
    assert list(again.columns) == list(table.columns) and len(again) == len(table)
    assert (again[["world", "tier", "method", "L", "status"]].to_numpy()
            == table[["world", "tier", "method", "L", "status"]].to_numpy()).all()
    numeric = [c for c in COLUMNS[4:] if c != "status"]
    assert np.allclose(again[numeric].to_numpy(float), table[numeric].to_numpy(float), rtol=0, atol=1e-12,
                       equal_nan=True)


def test_tiny_surrogate_tier_writes_the_tier_agreement(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDS_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "worlds"
    table = run_worlds("tiny", worlds=["synergy"], tiers=("truth", "surrogate"), methods=METHODS, Ls=(3,),
                       out=out, progress=False)
    assert len(table) == 1 * 2 * 3 * 1 and set(table["tier"]) == {"truth", "surrogate"}
    surrogate = table[table["tier"] == "surrogate"]
    assert surrogate["pct_of_optimum"].isna().all()  # no optimum on a surrogate
    assert surrogate["oracle_rel_delta_pct"].notna().all() and surrogate["rel_delta_pct"].notna().all()
    assert (table["pct_of_optimum"].dropna() <= 100 + 1e-6).all()
    md = (out / "worlds.md").read_text()
    for section in ("Surrogate tier: Avg Rel Δ (%) at L = 3", "Surrogate tier's peaks under the truth",
                    "Does the surrogate's verdict agree with the truth?", "τ(surrogate tier, truth tier)"):
        assert section in md, section
    agreement = md.split("Does the surrogate's verdict agree with the truth?")[1].split("## ")[0]
    row = _row(agreement, "synergy")  # one agreement row: world, L, τ [CI], jobs
    assert row[1] == "3" and row[3] == "16" and "[" in row[2]
    assert "Does the ranking survive a change of world?" not in md  # one world: no τ between worlds
    assert json.loads((out / "run.json").read_text())["tiers"] == ["truth", "surrogate"]


# ------------------------------------------------------------------------------------------------ command line
RESULTS = ("worlds.csv", "worlds.md", "worlds.png", "report.html", "regime.csv", "run.json", "jobs.jsonl.gz")


@pytest.mark.parametrize("argv, message", [(["--worlds", "flat"], "flat"),
                                           (["--tiers", "nonsense"], "--tiers"),
                                           (["--L", "ten"], "--L"),
                                           (["--methods", "gridz"], "gridz")])
def test_bad_worlds_arguments_are_one_error_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDS_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "x"
    assert main(["worlds", "--scale", "tiny", *argv, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.strip().count("\n") == 0 and message in err and "Traceback" not in err
    if argv[0] == "--worlds":
        assert all(w in err for w in WORLDS)
    assert not any((out / name).exists() for name in RESULTS)


def test_bad_worlds_argument_creates_no_output_folder(tmp_path, monkeypatch):
    """The selections are checked before the output folder's lock is taken (which would create the folder)."""
    monkeypatch.setenv("GRIDS_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "x"
    assert main(["worlds", "--scale", "tiny", "--worlds", "flat", "--out", str(out), "--no-progress"]) == 2
    assert not out.exists()


def test_a_bad_cell_type_is_caught_before_any_surrogate_trains(tmp_path, monkeypatch):
    """Every tier's plan is checked before the surrogate tier trains (minutes at quick scale)."""
    monkeypatch.setenv("GRIDS_BENCH_CACHE", str(tmp_path / "cache"))
    import bench.studies.worlds as study

    def no_training(*args, **kwargs):
        raise AssertionError("a surrogate was trained before the plan was checked")

    monkeypatch.setattr(study, "fit_surrogate", no_training)
    code = main(["worlds", "--scale", "tiny", "--worlds", "redundant", "--tiers", "surrogate", "--cell-types",
                 "Neuron", "--out", str(tmp_path / "o"), "--no-progress"])
    assert code == 2


def test_the_api_takes_comma_separated_strings_like_the_command_line():
    from bench.studies.worlds import check_study

    worlds, tiers, methods, Ls = check_study("additive,redundant", "truth", "saliency,random", "3,10")
    assert (worlds, tiers, methods, Ls) == (["additive", "redundant"], ["truth"], ["saliency", "random"], (3, 10))


def test_worlds_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["worlds", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--worlds", "--tiers", "--L", "--methods", "--quick", "--scale", "--seed", "--out", "--cell-types",
                 "--genes", "--surrogate", "--no-progress"):
        assert flag in out, flag


def test_tiny_worlds_from_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GRIDS_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "w"
    assert main(["worlds", "--scale", "tiny", "--worlds", "additive", "--tiers", "truth", "--methods",
                 "saliency,random", "--L", "3", "--cell-types", "Oligo,Astro", "--seed", "1", "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "# Explainers across regulatory worlds" in printed and "wrote worlds.csv" in printed
    facts = json.loads((out / "run.json").read_text())
    assert facts["worlds"] == ["additive"] and facts["Ls"] == [3] and facts["tiers"] == ["truth"]
    assert facts["seed"] == 1 and facts["n_methods"] == 2
    csv = pd.read_csv(out / "worlds.csv")
    assert len(csv) == 2 and set(csv["method"]) == {"saliency", "random"}
    jobs = [json.loads(line) for line in gzip.decompress((out / "jobs.jsonl.gz").read_bytes()).splitlines()]
    assert {j["cell_type"] for j in jobs} == {"Oligo", "Astro"}


def test_a_method_with_failed_jobs_is_neither_bold_nor_best():
    """A method whose other jobs failed would win on its easy part: the table's bold, the ranking τ and the
    best-per-world table all skip it, by the leaderboard's own rule (a number for every job)."""
    pct = {"synergy": {"grids": [99, 99, 0, 0], "saliency": [90, 60, 70, 80], "random": [0, 0, 0, 0]}}
    records = _records(pct)
    for r in records:
        if r["method"] == "grids" and r["gene"] in ("b2", "b3"):
            r.update(status="failed", rel_delta_pct=None, pct_of_optimum=None)
    table = world_table(records)
    md = methods_by_world(table, "truth", 3, "pct_of_optimum")
    assert "**" not in _row(md, "grids")[1] and _row(md, "saliency")[1].startswith("**")
    assert best_per_world(records, 3, {"random"})["best_method"].iloc[0] == "saliency"
