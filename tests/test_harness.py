"""The job runner: ranking methods are computed once per (cell type, gene, seed) and shared across L."""

import json

import numpy as np
import torch

from methods.base import Budget
from bench.running.harness import ResultCache, run_grid, tasks_of
from bench.running.runner import Job, JobResult, run_job
from datasets.synthetic import simulate
from methods.input_x_gradient import InputXGradient
from surrogates.model import SurrogateConfig
from surrogates.train import build_surrogate


def test_tasks_group_ranking_methods_only():
    jobs = [Job("input-x-gradient", "Astro", "AQP4", L, 0) for L in (3, 7)] + \
           [Job("grids", "Astro", "AQP4", L, 0) for L in (3, 7)]
    assert tasks_of(jobs, list(range(4))) == [[0, 1], [2], [3]]


def test_ranking_is_computed_once_and_each_L_gets_its_prefix(tmp_path, monkeypatch):
    data, truth = simulate("tiny", seed=0)
    model = build_surrogate(data, SurrogateConfig(hidden=16, latent=4)).eval()
    calls = []
    explain = InputXGradient.explain

    def counting(self, surrogate, cells, gene, L):
        calls.append(L)
        return explain(self, surrogate, cells, gene, L)

    monkeypatch.setattr(InputXGradient, "explain", counting)
    jobs = [Job("input-x-gradient", "Astro", "AQP4", L, 0) for L in (3, 7)]
    records = run_grid(jobs, {}, lambda m: Budget(), model, data, truth, ResultCache(tmp_path), {"t": 1},
                       progress=False)
    assert calls == [7]
    small, large = records
    assert small["peaks"] == large["peaks"][:3] and len(large["peaks"]) == 7
    assert small["info"]["ranking_shared_by_L"] == [3, 7]
    assert np.isfinite(small["rel_delta_pct"]) and small["status"] == "ok"


def test_one_runner_one_set_of_fields_for_ok_and_failed_jobs(monkeypatch):
    data, truth = simulate("tiny", seed=0)
    model = build_surrogate(data, SurrogateConfig(hidden=16, latent=4)).eval()
    ok = run_job(Job("input-x-gradient", "Oligo", "MOG", 4, 0), {}, Budget(), model, data, truth)
    assert isinstance(ok, JobResult) and ok.status == "ok" and ok.error is None
    assert ok.explain_seconds <= ok.seconds and ok.peak_rss_mb > 0 and ok.rss_increase_mb >= 0
    assert "rel_delta_pct" in ok.metrics

    modes = []

    def boom(self, surrogate, *a, **k):
        modes.append(surrogate.training)
        raise RuntimeError("broken method")

    monkeypatch.setattr(InputXGradient, "explain", boom)
    model.train()
    bad = run_job(Job("input-x-gradient", "Oligo", "MOG", 4, 0), {}, Budget(), model, data, truth)
    assert bad.status == "failed" and "broken method" in bad.error and bad.metrics == {} and bad.peaks == []
    assert modes == [False] and model.training  # explained in eval mode; the caller's mode restored after the error
    assert bad.explain_seconds >= 0 and bad.peak_rss_mb > 0  # a method that raised is still timed and measured
    measured = {"explain_seconds", "seconds", "peak_rss_mb", "rss_increase_mb"}
    assert measured <= set(ok.record()) and measured <= set(bad.record())
    assert set(bad.record()) - {"traceback"} <= set(ok.record())


def test_records_are_strict_json_without_nan(tmp_path):
    import json

    rec = JobResult(Job("random", "Oligo", "MOG", 4, 0), error="E: never ran").record()
    assert rec["explain_seconds"] is None and rec["peak_rss_mb"] is None
    json.loads(json.dumps(rec), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


# ------------------------------------------------------------------------------------- the versioned job cache
def _grid(tmp_path, params=None, budget=Budget(), **kw):
    data, truth = simulate("tiny", seed=0)
    torch.manual_seed(0)  # the same untrained model every call (nn.Linear draws from the global RNG)
    model = build_surrogate(data, SurrogateConfig(hidden=16, latent=4, seed=0)).eval()
    jobs = [Job(m, "Oligo", "MOG", L, 0) for m in ("input-x-gradient", "saliency") for L in (3, 5)]
    return run_grid(jobs, params or {}, lambda m: budget, model, data, truth, ResultCache(tmp_path / "jobs"),
                    {"t": 1}, progress=False, **kw)


def _reused(records) -> list[str]:
    return [f"{r['method']}@{r['L']}" for r in records if r.get("cached")]


def test_changed_parameters_recompute_that_method_only(tmp_path):
    first = _grid(tmp_path)
    assert _reused(first) == [] and all(r["versions"]["method"] == 1 for r in first)
    again = _grid(tmp_path)
    assert len(_reused(again)) == 4
    assert [r["peaks"] for r in again] == [r["peaks"] for r in first]
    edited = _grid(tmp_path, params={"saliency": {"batch_size": 7}})
    assert _reused(edited) == ["input-x-gradient@3", "input-x-gradient@5"]


def test_a_version_bump_recomputes_that_method_and_says_why(tmp_path, monkeypatch, caplog):
    import dataclasses

    from methods import registry

    _grid(tmp_path)
    spec = registry.get("saliency")
    monkeypatch.setitem(registry._REGISTRY, "saliency", dataclasses.replace(spec, version=spec.version + 1))
    with caplog.at_level("INFO", logger="bench.running.harness"):
        bumped = _grid(tmp_path)
    assert _reused(bumped) == ["input-x-gradient@3", "input-x-gradient@5"]
    assert {r["versions"]["method"] for r in bumped if r["method"] == "saliency"} == {spec.version + 1}
    assert "2 of 4 jobs reused" in caplog.text and "input-x-gradient v1" in caplog.text
    assert (f"2 jobs recomputed: code changed since they were cached (saliency v{spec.version} → "
            f"v{spec.version + 1})") in caplog.text


def test_a_truncated_cache_entry_is_reported_moved_aside_and_recomputed(tmp_path, caplog):
    first = _grid(tmp_path)
    files = sorted((tmp_path / "jobs").glob("*/*.json"))
    assert len(files) == 4
    victim = files[0]
    victim.write_text(victim.read_text()[:40])  # a write cut short (by hand: the cache writes atomically)
    with caplog.at_level("INFO", logger="bench.running.harness"):
        again = _grid(tmp_path)
    assert len(_reused(again)) == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(victim) in warnings[0] and "not valid JSON" in warnings[0]
    assert (tmp_path / "jobs" / "corrupt" / victim.parent.name / victim.name).exists()
    assert victim.exists() and json.loads(victim.read_text())["status"] == "ok"  # recomputed in place
    assert [r["peaks"] for r in again] == [r["peaks"] for r in first]


def test_a_record_of_another_job_is_corrupt_not_reused(tmp_path, caplog):
    _grid(tmp_path)
    files = sorted((tmp_path / "jobs").glob("*/*.json"))
    record = json.loads(files[0].read_text())
    files[0].write_text(json.dumps({**record, "gene": "GFAP"}))
    with caplog.at_level("WARNING", logger="bench.running.harness"):
        again = _grid(tmp_path)
    assert len(_reused(again)) == 3 and "fields gene differ" in caplog.text


def test_force_recomputes_everything(tmp_path, caplog):
    _grid(tmp_path)
    with caplog.at_level("INFO", logger="bench.running.harness"):
        forced = _grid(tmp_path, force=True)
    assert _reused(forced) == [] and "4 jobs recomputed (--force)" in caplog.text


def test_failed_and_time_limited_jobs_are_retried_not_reused(tmp_path, caplog):
    _grid(tmp_path)
    files = sorted((tmp_path / "jobs").glob("*/*.json"))
    for path, status in zip(files[:2], ("failed", "time_limit")):
        path.write_text(json.dumps({**json.loads(path.read_text()), "status": status}))
    with caplog.at_level("INFO", logger="bench.running.harness"):
        again = _grid(tmp_path)
    assert len(_reused(again)) == 2 and "2 jobs that failed or hit the wall-time stop last time retried" in caplog.text
    assert {r["status"] for r in again} == {"ok"}


def test_a_record_without_code_versions_is_corrupt_not_reused(tmp_path, caplog):
    _grid(tmp_path)
    path = sorted((tmp_path / "jobs").glob("*/*.json"))[0]
    record = json.loads(path.read_text())
    del record["versions"]
    path.write_text(json.dumps(record))
    with caplog.at_level("WARNING", logger="bench.running.harness"):
        assert len(_reused(_grid(tmp_path))) == 3
    assert "code versions None" in caplog.text


def test_the_wall_time_stop_is_not_part_of_the_key_but_a_job_it_cut_is_retried(tmp_path):
    """Answers are decided by the evaluation budget, so a longer safety stop reuses finished jobs; a job the clock
    cut before its first estimate (no_estimate) is marked and runs again."""
    cut = _grid(tmp_path, budget=Budget(seconds=0.0))
    assert {r["status"] for r in cut} == {"no_estimate"} and all(r["info"]["cut_by_time"] for r in cut)
    done = _grid(tmp_path, budget=Budget(seconds=100.0))
    assert _reused(done) == [] and {r["status"] for r in done} == {"ok"}
    assert len(_reused(_grid(tmp_path, budget=Budget(seconds=200.0)))) == 4


def test_budget_cut_records_from_before_evaluation_counting_are_computed_again():
    from bench.running.harness import _retried

    assert _retried({"status": "budget_exceeded", "info": {"steps": 3}})  # GRIDS cut before the gradient fill
    assert not _retried({"status": "budget_exceeded", "info": {"steps": 3, "evaluations": 6336}})
    assert not _retried({"status": "ok", "info": {}})  # an uncut answer did not change
