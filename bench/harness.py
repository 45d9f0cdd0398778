"""Runs the grid of jobs (method × cell type × gene × L × seed) and caches each result.

A job is a pure function of (its fields, the method's parameters and budget, the data fingerprint, the surrogate
checkpoint), so its result is stored under a hash of those and a rerun skips finished jobs. A method that raises
is recorded as `failed` with the error; the benchmark goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from bench.config import Budget
from bench.evaluate import evaluate_selection
from bench.memory import PeakRSS
from methods import registry

log = logging.getLogger(__name__)
METRIC_KEYS = ("avg_delta", "rel_delta_pct")


@dataclass(frozen=True)
class Job:
    method: str
    cell_type: str
    gene: str
    L: int
    seed: int

    def key(self, context: dict) -> str:
        payload = json.dumps({"job": asdict(self), **context}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:20]


def make_jobs(methods, pairs, Ls, seeds) -> list[Job]:
    return [Job(m, ct, g, int(L), int(s)) for m in methods for ct, g in pairs for L in Ls for s in seeds]


def run_job(job: Job, params: dict, budget: Budget, surrogate, data, truth=None) -> dict:
    """Explain, validate and evaluate one job; never raises for a method's failure."""
    record = {**asdict(job), "status": "failed", "peaks": [], "error": None, "info": {}}
    t0 = time.perf_counter()
    try:
        spec = registry.get(job.method)
        explainer = spec.cls(seed=job.seed, budget=budget, **params)
        with PeakRSS() as mem:
            expl = explainer.explain(surrogate, data.cells(job.cell_type, "train"), job.gene, job.L)
        expl.check(data.n_peaks, job.L)
        record.update(status=expl.status, peaks=[int(p) for p in expl.peaks], info=_jsonable(expl.info))
        record["explain_seconds"] = time.perf_counter() - t0
        record["peak_rss_mb"] = mem.peak_mb
        record.update(evaluate_selection(surrogate, data.cells(job.cell_type, "test"), job.gene, expl.peaks, truth))
    except Exception as exc:  # a broken method is a result, not a crash
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc(limit=5)
        log.warning("job %s failed: %s", job, record["error"])
    record["seconds"] = time.perf_counter() - t0
    return record


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


class ResultCache:
    """One JSON file per finished job under `root`, written atomically."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> dict | None:
        p = self.path(key)
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError:
            return None

    def put(self, key: str, record: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".json", dir=self.root)
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh)
        os.replace(tmp, self.path(key))


def run_grid(jobs: list[Job], method_params: dict, budgets, surrogate, data, truth, cache: ResultCache,
             context: dict, scheduler: str | None = None, progress: bool = True) -> list[dict]:
    """Run every job not already in the cache; returns records in job order.

    `budgets(method) -> Budget` gives each method's per-job budget (a `Profile.budget_for`)."""
    keys = [job.key({**context, "params": method_params.get(job.method, {}), "budget": asdict(budgets(job.method))})
            for job in jobs]
    records: dict[int, dict] = {}
    todo = []
    for i, key in enumerate(keys):
        cached = cache.get(key)
        if cached is not None and cached.get("status") != "failed":
            records[i] = {**cached, "cached": True}
        else:
            todo.append(i)
    if len(records):
        log.info("%d of %d jobs reused from the result cache", len(records), len(jobs))
    bar = tqdm(total=len(jobs), initial=len(records), desc="benchmark jobs", unit="job", disable=not progress)
    if scheduler:
        _run_dask(jobs, todo, keys, method_params, budgets, surrogate, data, truth, cache, records, bar, scheduler)
    else:
        for i in todo:
            job = jobs[i]
            bar.set_postfix_str(f"{job.method} {job.cell_type}/{job.gene} L={job.L}")
            rec = run_job(job, method_params.get(job.method, {}), budgets(job.method), surrogate, data, truth)
            cache.put(keys[i], rec)
            records[i] = rec
            bar.update()
    bar.close()
    return [records[i] for i in range(len(jobs))]


def _run_dask(jobs, todo, keys, method_params, budgets, surrogate, data, truth, cache, records, bar, scheduler):
    """Same jobs on a dask.distributed cluster (`local` starts a LocalCluster on this machine)."""
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = LocalCluster(n_workers=max(1, (os.cpu_count() or 2) // 2), threads_per_worker=1,
                           processes=True, dashboard_address=None) if scheduler == "local" else None
    client = Client(cluster if cluster is not None else scheduler)
    try:
        model, d, t = client.scatter([surrogate.cpu(), data, truth], broadcast=True)
        futures = {client.submit(run_job, jobs[i], method_params.get(jobs[i].method, {}), budgets(jobs[i].method),
                                 model, d, t,
                                 pure=False): i for i in todo}
        for fut in as_completed(futures):
            i = futures[fut]
            rec = fut.result()
            cache.put(keys[i], rec)
            records[i] = rec
            bar.update()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
