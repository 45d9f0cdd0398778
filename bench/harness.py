"""Runs the grid of jobs (method × cell type × gene × L × seed) and caches each result.

A job is a pure function of (its fields, the method's parameters and budget, the data fingerprint, the surrogate
checkpoint), so its result is stored under a hash of those and a rerun skips finished jobs. A method that raises
is recorded as `failed` with the error; the benchmark goes on.
"""

from __future__ import annotations

import copy
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

from methods.base import Budget
from bench.evaluate import evaluate_selection
from bench.memory import PeakRSS
from methods import registry

log = logging.getLogger(__name__)


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


def run_task(jobs: list[Job], params: dict, budget: Budget, surrogate, data, truth=None) -> list[dict]:
    """Explain, validate and evaluate jobs that share one explanation; never raises for a method's failure.

    A task is one job, or — for a `ranking` method, whose answer for L is the first L peaks of one ranking that
    does not depend on L — every L of one (method, cell type, gene, seed): the method runs once at the largest L
    and each job evaluates its prefix (`info["ranking_shared_by_L"]` lists them; the time and memory are that one
    run's). A `no_estimate` job is recorded, not evaluated."""
    first = jobs[0]
    L_max = max(job.L for job in jobs)
    base = {"status": "failed", "peaks": [], "error": None, "info": {}}
    records = [{**asdict(job), **base} for job in jobs]
    t0 = time.perf_counter()
    try:
        spec = registry.get(first.method)
        extra = {"truth": truth} if spec.needs_truth else {}
        explainer = spec.cls(seed=first.seed, budget=budget, **extra, **params)
        with PeakRSS() as mem:
            expl = explainer.explain(surrogate, data.cells(first.cell_type, "train"), first.gene, L_max)
        expl.check(data.n_peaks, L_max)
        info = _jsonable(expl.info)
        if len(jobs) > 1:
            info["ranking_shared_by_L"] = sorted(job.L for job in jobs)
        seconds = time.perf_counter() - t0
        test = data.cells(first.cell_type, "test")
        for job, record in zip(jobs, records):
            peaks = expl.peaks[:job.L]
            record.update(status=expl.status, peaks=[int(p) for p in peaks], info=info, explain_seconds=seconds,
                          peak_rss_mb=mem.peak_mb)
            if expl.status != "no_estimate":  # no peaks of the method's own: its metric fields stay absent (NaN)
                record.update(evaluate_selection(surrogate, test, job.gene, peaks, truth))
    except Exception as exc:  # a broken method is a result, not a crash
        log.warning("job %s failed: %s: %s", first, type(exc).__name__, exc)
        for record in records:
            record.update(base, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=5))
    for record in records:
        record["seconds"] = time.perf_counter() - t0
    return records


def run_job(job: Job, params: dict, budget: Budget, surrogate, data, truth=None) -> dict:
    """One job on its own (`run_task` with a single job)."""
    return run_task([job], params, budget, surrogate, data, truth)[0]


def tasks_of(jobs: list[Job], indices: list[int]) -> list[list[int]]:
    """Group job indices into tasks: the Ls of one (method, cell type, gene, seed) share a task when the method
    is a `ranking` method, every other job is a task of its own. Order follows the first job of each task."""
    tasks: dict[tuple, list[int]] = {}
    for i in indices:
        job = jobs[i]
        shared = registry.get(job.method).ranking if job.method in registry.available() else False
        key = (job.method, job.cell_type, job.gene, job.seed) if shared else ("job", i)
        tasks.setdefault(key, []).append(i)
    return list(tasks.values())


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
    tasks = tasks_of(jobs, todo)
    if scheduler:
        _run_dask(jobs, tasks, keys, method_params, budgets, surrogate, data, truth, cache, records, bar, scheduler)
    else:
        for task in tasks:
            job = jobs[task[0]]
            bar.set_postfix_str(f"{job.method} {job.cell_type}/{job.gene} L={','.join(str(jobs[i].L) for i in task)}")
            recs = run_task([jobs[i] for i in task], method_params.get(job.method, {}), budgets(job.method),
                            surrogate, data, truth)
            _store(task, recs, keys, cache, records, bar)
    bar.close()
    return [records[i] for i in range(len(jobs))]


def _store(task, recs, keys, cache, records, bar) -> None:
    for i, rec in zip(task, recs):
        cache.put(keys[i], rec)
        records[i] = rec
    bar.update(len(task))


def _run_dask(jobs, tasks, keys, method_params, budgets, surrogate, data, truth, cache, records, bar, scheduler):
    """Same tasks on a dask.distributed cluster (`local` starts a LocalCluster on this machine)."""
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = LocalCluster(n_workers=max(1, (os.cpu_count() or 2) // 2), threads_per_worker=1,
                           processes=True, dashboard_address=None) if scheduler == "local" else None
    client = Client(cluster if cluster is not None else scheduler)
    try:
        # a CPU copy for the workers: `.cpu()` on the caller's model would move a CUDA model off its device
        model, d, t = client.scatter([copy.deepcopy(surrogate).cpu(), data, truth], broadcast=True)
        futures = {client.submit(run_task, [jobs[i] for i in task], method_params.get(jobs[task[0]].method, {}),
                                 budgets(jobs[task[0]].method), model, d, t, pure=False): k
                   for k, task in enumerate(tasks)}
        for fut in as_completed(futures):
            task = tasks[futures[fut]]
            _store(task, fut.result(), keys, cache, records, bar)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
