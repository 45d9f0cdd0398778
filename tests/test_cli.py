"""End-to-end CLI: the tiny profile runs the whole pipeline in seconds; user mistakes exit 2 with one line."""

import json

import pandas as pd
import pytest

from bench.cli import main


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDS_BENCH_CACHE", str(tmp_path / "cache"))


def test_list_shows_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert {"grids", "random", "oracle", "input-x-gradient", "saliency"} <= set(rows)
    assert "synthetic only" in rows["oracle"] and "synthetic only" not in rows["grids"]


def test_help_mentions_flags(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--quick", "--methods", "--cell-types", "--genes", "--L", "--seeds", "--out", "--device",
                 "--scheduler", "--data"):
        assert flag in out


@pytest.mark.parametrize("args, message", [
    (["--methods", "grids,nosuch"], "unknown method"),
    (["--genes", "NOTAGENE"], "not in the data"),
    (["--cell-types", "Neuron"], "unknown cell type"),
    (["--L", "0"], "L must be between 1"),
    (["--L", "999999"], "L must be between 1"),
    (["--L", "ten"], "comma-separated integers"),
    (["--seeds", "0"], "--seeds"),
])
def test_bad_input_exits_2_without_writing(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    code = main(["run", "--scale", "tiny", "--no-progress", "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err
    assert err.strip().count("\n") == 0 and err.startswith("error: ")
    assert not out.exists()


def test_tiny_run_writes_leaderboard_and_reuses_cache(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["run", "--scale", "tiny", "--no-progress", "--out", str(out), "--methods", "random,grids,saliency",
            "--cell-types", "Astro,Oligo", "--L", "3,6"]
    assert main(argv) == 0
    for name in ("leaderboard.md", "leaderboard.csv", "headline.csv", "discrimination.csv", "jobs.jsonl",
                 "report.html", "rel_delta_vs_L.png"):
        assert (out / name).exists(), name
    long = pd.read_csv(out / "leaderboard.csv")
    assert {"method", "L", "cell_type", "gene", "seed", "avg_delta", "rel_delta_pct", "status"} <= set(long.columns)
    avg = long[long["cell_type"] == "Avg"]
    assert len(avg) == 3 * 2 and (avg["gene"] == "*").all()
    jobs = [json.loads(line) for line in (out / "jobs.jsonl").read_text().splitlines()]
    assert len(jobs) == 3 * 5 * 2  # methods × (Astro 3 + Oligo 2 markers) × L
    assert all(len(set(j["peaks"])) == j["L"] for j in jobs)
    md = (out / "leaderboard.md").read_text()
    assert "## L = 3" in md and "## L = 6" in md and "Rel Δ (%) ↓" in md
    head = pd.read_csv(out / "headline.csv")
    assert list(head["method"]) == list(avg[avg["L"] == 6].sort_values("rel_delta_pct")["method"])  # ranked at L=6
    for L in (3, 6):  # the bold Avg Rel Δ is the lowest one in leaderboard.csv
        section = md.split(f"### Rel Δ (%) by cell type at L = {L}")[1].split("###")[0]
        best = avg[avg["L"] == L].sort_values("rel_delta_pct").iloc[0]
        bold_rows = [line for line in section.splitlines() if line.startswith("| ") and line.rstrip(" |").endswith("**")]
        assert len(bold_rows) == 1 and bold_rows[0].startswith(f"| {best['method']} "), (best["method"], section)
    assert "### Discrimination at L = 3" in md and "### Discrimination at L = 6" in md
    disc = pd.read_csv(out / "discrimination.csv")
    assert set(disc["method"]) == {"random", "grids", "saliency"} and "random" not in set(disc["best_method"])
    capsys.readouterr()
    assert main(argv) == 0  # second run: every job from the cache
    assert all(json.loads(line).get("cached") for line in (out / "jobs.jsonl").read_text().splitlines())


def test_failing_method_is_recorded_not_fatal(tmp_path, monkeypatch):
    from methods.saliency import Saliency

    def boom(self, *a, **k):
        raise RuntimeError("synthetic failure")

    monkeypatch.setattr(Saliency, "explain", boom)
    out = tmp_path / "out"
    assert main(["run", "--scale", "tiny", "--no-progress", "--out", str(out), "--methods", "random,saliency",
                 "--cell-types", "Oligo", "--L", "3"]) == 0
    jobs = [json.loads(line) for line in (out / "jobs.jsonl").read_text().splitlines()]
    failed = [j for j in jobs if j["method"] == "saliency"]
    assert failed and all(j["status"] == "failed" and "synthetic failure" in j["error"] for j in failed)
    assert "failed 2/2" in (out / "leaderboard.md").read_text()


@pytest.mark.parametrize("style", ["paired", "reference"])
def test_fit_writes_fidelity_with_the_interventional_panel(tmp_path, capsys, style):
    assert main(["fit", "--scale", "tiny", "--no-progress", "--surrogate", style, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "R²" in out and "Interventional fidelity" in out
    for name in ("fidelity.png", "fidelity.md", "fidelity.csv", "interventional.csv"):
        assert (tmp_path / name).exists(), name
    summary = json.loads((tmp_path / "fidelity.json").read_text())
    assert summary["surrogate"] == style
    assert {"marker_r2", "interventional_spearman", "group_member_ratio_surrogate",
            "group_member_ratio_oracle"} <= set(summary)


def test_reference_surrogate_runs_end_to_end(tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--scale", "tiny", "--no-progress", "--surrogate", "reference", "--out", str(out),
                 "--methods", "random,oracle,input-x-gradient", "--cell-types", "Oligo", "--L", "3,8"]) == 0
    md = (out / "leaderboard.md").read_text()
    assert "reference style" in md and "Discrimination" in md
    jobs = [json.loads(line) for line in (out / "jobs.jsonl").read_text().splitlines()]
    oracle = [j for j in jobs if j["method"] == "oracle"]  # the harness handed it the truth: planted peaks only
    assert oracle and all(j["info"]["planted_closed"] == j["L"] for j in oracle)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is present: --device cuda is valid here")
def test_device_cuda_without_a_gpu_is_a_user_error(tmp_path, capsys):
    assert main(["fit", "--scale", "tiny", "--no-progress", "--device", "cuda", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --device cuda was requested but no CUDA GPU") and "Traceback" not in err
    assert not (tmp_path / "o").exists()
