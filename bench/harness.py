"""Runs the grid of jobs (method × cell type × gene × L × seed) through the one job runner (bench/runner.py),
in-process or on dask.distributed, and caches each result.

A job is a pure function of (its fields, the method's parameters and budget, the data fingerprint, the surrogate
checkpoint), so its record is stored under a hash of those and a rerun skips finished jobs. A method that raises
is recorded as `failed` with the error; the benchmark goes on.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from bench.runner import Job, run_task
from datasets.files import atomic_write
from methods import registry

log = logging.getLogger(__name__)


def make_jobs(methods, pairs, Ls, seeds) -> list[Job]:
    return [Job(m, ct, g, int(L), int(s)) for m in methods for ct, g in pairs for L in Ls for s in seeds]


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
        atomic_write(self.path(key), json.dumps(record))


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


def _store(task, results, keys, cache, records, bar) -> None:
    for i, result in zip(task, results):
        records[i] = result.record()
        cache.put(keys[i], records[i])
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
