"""The job runner: ranking methods are computed once per (cell type, gene, seed) and shared across L."""

import numpy as np

from methods.base import Budget
from bench.harness import ResultCache, run_grid, tasks_of
from bench.runner import Job, JobResult, run_job
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
