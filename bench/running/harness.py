"""Runs the grid of jobs (method × cell type × gene × L × seed) through the one job runner (bench/running/runner.py),
in-process or on dask.distributed, and caches each result.

A job is a pure function of (its fields, the method's parameters and budget, the data fingerprint, the explained
model — a surrogate by its checkpoint key, another model by its `cache_key` — and the code versions of its method
and the evaluator), so its record is stored under a hash of those and a rerun skips finished jobs. Each record is
written atomically the moment its task ends, so a run killed at any point (even SIGKILL) keeps every finished job and
the next run resumes. A method that raises is recorded as `failed` with the error; the benchmark goes on, and a rerun
retries it (as it retries a job cut by the wall-time safety stop, `time_limit`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from bench.running.runner import Job, job_threads, run_task
from bench.running.versions import describe, job_versions
from datasets.files import atomic_write, move_aside
from methods import registry
from methods.base import STATUSES
from surrogates.protocol import Movable, capability

log = logging.getLogger(__name__)
RETRIED = ("failed", "time_limit")  # cached statuses that are not a method's answer: a rerun runs those jobs again


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
    """One JSON file per finished job, `root/<slot>/<versions>.json`, written atomically.

    The slot hashes what the job computes (the job, data, explained model, parameters, budget); the file name
    hashes the code versions that computed it (bench/running/versions.py). A version bump therefore leaves the old
    record beside the new one, which lets a rerun say why a job ran again. An entry that does not parse or does not
    describe its job is corrupt: it is moved to `root/corrupt/` and the job is recomputed."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, slot: str, versions: dict) -> Path:
        return self.root / slot / f"{_hash(versions)}.json"

    def lookup(self, slot: str, versions: dict, job: Job) -> tuple[dict | None, str]:
        """(record, outcome): outcome is `hit`, `missing`, `retry` (the job failed or the wall-time safety stop cut
        it: neither is the method's deterministic answer, so it runs again), `corrupt` (moved aside, reported) or
        `stale:<old versions>` (only other code versions have a record)."""
        p = self.path(slot, versions)
        if not p.exists():
            return None, self._stale(slot, versions)
        try:
            record = json.loads(p.read_text())
            problem = _problem(record, job, versions)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            problem = f"not valid JSON ({exc})"
        except OSError as exc:
            problem = f"unreadable ({exc})"
        if problem:
            dest = move_aside(p, self.root / "corrupt" / slot)
            log.warning("corrupt cached result %s: %s; %s, recomputing", p, problem,
                        f"moved to {dest}" if dest else "could not move it aside")
            return None, "corrupt"
        return (None, "retry") if _retried(record) else (record, "hit")

    def put(self, slot: str, versions: dict, record: dict) -> None:
        atomic_write(self.path(slot, versions), json.dumps(record))

    def _stale(self, slot: str, versions: dict) -> str:
        """'stale:grids v1' when the slot holds records of other code versions only, else 'missing'."""
        for other in sorted((self.root / slot).glob("*.json")):
            if other.name.startswith("."):  # a write a killed run left unfinished (datasets.files.atomic_path)
                continue
            try:
                old = json.loads(other.read_text())
                changed = {k: v for k, v in old["versions"].items() if versions.get(k) != v}
                name = {"method": old["method"]}
            except (OSError, ValueError, TypeError, KeyError, AttributeError):  # unreadable: not evidence
                continue
            if changed:
                return "stale:" + ", ".join(f"{name.get(k, k)} v{v} → v{versions.get(k)}"
                                            for k, v in sorted(changed.items()))
        return "missing"


class NoCache(ResultCache):
    """The cache of a model that cannot be named (a user's model without `cache_key`): nothing is reused or kept."""

    def __init__(self):
        super().__init__(Path("."))

    def lookup(self, slot: str, versions: dict, job: Job) -> tuple[dict | None, str]:
        return None, "missing"

    def put(self, slot: str, versions: dict, record: dict) -> None:
        pass


def _problem(record, job: Job, versions: dict) -> str | None:
    """Why a cached record cannot be the result of `job` computed by code `versions`, or None."""
    if not isinstance(record, dict):
        return f"expected a JSON object, found {type(record).__name__}"
    mismatched = [k for k, v in asdict(job).items() if record.get(k) != v]
    if mismatched:
        return f"it belongs to another job (fields {', '.join(mismatched)} differ)"
    if record.get("status") not in STATUSES:
        return f"unknown status {record.get('status')!r}"
    if record.get("versions") != versions:
        return f"its code versions {record.get('versions')} are not the ones its file name says ({versions})"
    return None


def _retried(record: dict) -> bool:
    """A record that is not the method's deterministic answer: it failed, or the wall-time safety stop cut it
    (`time_limit`, or `no_estimate` because the clock ran out first; bench/running/runner.py marks those), or its budget
    cut it before the runner counted evaluations (no `info.evaluations`): a cut run is where the effort flags and
    GRIDS's gradient fill of unvisited slots change what a method returns, so such a record is computed again
    instead of bumping the versions of methods whose uncut answers did not change."""
    info = record.get("info") or {}
    return (record["status"] in RETRIED or bool(info.get("cut_by_time"))
            or (record["status"] == "budget_exceeded" and "evaluations" not in info))


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def run_grid(jobs: list[Job], method_params: dict, budgets, model, data, truth, cache: ResultCache,
             context: dict, scheduler: str | None = None, progress: bool = True, force: bool = False,
             threads: int | None = None, workers: int | None = None) -> list[dict]:
    """Run every job not already in the cache (all of them with `force`); returns records in job order, each with
    the code `versions` that computed it and `cached` when it was reused. `threads`: torch threads per job
    (default: the model's fixed count); `workers`: the LocalCluster's worker count when `scheduler` is "local"
    (default: one per `threads` cores of this machine).

    `budgets(method) -> Budget` gives each method's per-job budget (a `Profile.budget_for`)."""
    # the evaluation budget decides answers; the wall-time stop does not (a job it cut is retried), so it is not
    # part of the key and changing --budget-seconds reuses finished jobs
    slots = [job.key({**context, "params": method_params.get(job.method, {}),
                      "budget": {"samples": budgets(job.method).samples}}) for job in jobs]
    vers = [job_versions(job.method, synthetic=truth is not None) for job in jobs]
    records: dict[int, dict] = {}
    todo, outcomes = [], Counter()
    for i, job in enumerate(jobs):
        cached, outcome = (None, "forced") if force else cache.lookup(slots[i], vers[i], job)
        outcomes[outcome] += 1
        if cached is not None:
            records[i] = {**cached, "cached": True}
        else:
            todo.append(i)
    _log_reuse(outcomes, [records[i] for i in sorted(records)], len(jobs))
    bar = tqdm(total=len(jobs), initial=len(records), desc="benchmark jobs", unit="job", disable=not progress)
    tasks = tasks_of(jobs, todo)
    store = _Store(cache, slots, vers, records, bar)
    if scheduler:
        _run_dask(jobs, tasks, method_params, budgets, model, data, truth, store, scheduler, threads, workers)
    else:
        for task in tasks:
            job = jobs[task[0]]
            bar.set_postfix_str(f"{job.method} {job.cell_type}/{job.gene} L={','.join(str(jobs[i].L) for i in task)}")
            store(task, run_task([jobs[i] for i in task], method_params.get(job.method, {}), budgets(job.method),
                                 model, data, truth, threads=threads))
    bar.close()
    return [records[i] for i in range(len(jobs))]


def _log_reuse(outcomes: Counter, reused: list[dict], n_jobs: int) -> None:
    """One line on what the cache gave, with the versions reused, and one per reason a job runs again."""
    if reused:
        by_version = Counter(describe({r["method"]: r["versions"]["method"],
                                       **{k: v for k, v in r["versions"].items() if k != "method"}})
                             for r in reused)
        log.info("%d of %d jobs reused from the result cache (computed by %s)", len(reused), n_jobs,
                 "; ".join(f"{v}: {n}" for v, n in sorted(by_version.items())))
    stale = {k[len("stale:"):]: n for k, n in outcomes.items() if k.startswith("stale:")}
    for change, n in sorted(stale.items()):
        log.info("%d jobs recomputed: code changed since they were cached (%s)", n, change)
    for outcome, what in (("corrupt", "corrupt cache entries moved aside and recomputed"),
                          ("retry", "jobs that failed or hit the wall-time stop last time retried"),
                          ("forced", "jobs recomputed (--force)")):
        if outcomes[outcome]:
            log.info("%d %s", outcomes[outcome], what)


class _Store:
    """Keeps a finished task's records (with their code versions) in the cache and the run."""

    def __init__(self, cache, slots, vers, records, bar):
        self.cache, self.slots, self.vers, self.records, self.bar = cache, slots, vers, records, bar

    def __call__(self, task, results) -> None:
        for i, result in zip(task, results):
            self.records[i] = {**result.record(), "versions": self.vers[i]}
            self.cache.put(self.slots[i], self.vers[i], self.records[i])
        self.bar.update(len(task))


def _run_dask(jobs, tasks, method_params, budgets, model, data, truth, store, scheduler, threads=None, workers=None):
    """Same tasks on a dask.distributed cluster (`local` starts a LocalCluster on this machine)."""
    from dask.distributed import Client, LocalCluster, as_completed

    # one worker per `threads` cores: each task runs on a fixed torch thread count (bench/running/runner.py)
    workers = workers or max(1, (os.cpu_count() or 2) // (threads or job_threads(model) or 1))
    # silence_logs: the cluster's own start-up and connection chatter stays out of the run's log
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.WARNING) if scheduler == "local" else None
    client = Client(cluster if cluster is not None else scheduler)
    try:
        # a CPU copy for the workers: `.cpu()` on the caller's model would move a CUDA model off its device
        local = copy.deepcopy(model)
        movable = capability(local, Movable)
        local = movable.cpu() if movable is not None else local
        model, d, t = client.scatter([local, data, truth], broadcast=True)
        futures = {client.submit(run_task, [jobs[i] for i in task], method_params.get(jobs[task[0]].method, {}),
                                 budgets(jobs[task[0]].method), model, d, t, threads=threads, pure=False): k
                   for k, task in enumerate(tasks)}
        for fut in as_completed(futures):
            store(tasks[futures[fut]], fut.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
