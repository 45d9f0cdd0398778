"""The one job runner: explain, validate, time, measure and score an explainer on one (cell type, gene, L, seed).

`run_task` is used by the benchmark grid (bench/running/harness.py, in-process or on dask workers) and by the dimension
sweep (bench/studies/sweep.py). It never raises for a method's failure: an exception or an invalid explanation becomes
status `failed` with the error. Every result carries the same measured fields (`JobResult`):

* `explain_seconds` — wall time of the method's `explain` call;
* `info["evaluations"]` — the model evaluations (cells through the model's output, forward) `explain` made, counted
  by the protocol (`surrogates.protocol.CountingModel`), whatever the method's own bookkeeping (`info["samples"]`);
* `seconds` — wall time of the whole task: explain, validation and the evaluation of every L it serves;
* `peak_rss_mb` — peak resident memory (RSS) of the process during `explain`, in MiB, absolute;
* `rss_increase_mb` — that peak minus the RSS just before `explain`. With `settle_memory` (the sweep, whose
  point is memory vs d) the process first runs `gc.collect()` and glibc's `malloc_trim(0)` so memory freed by
  earlier work goes back to the OS instead of being silently re-used; without it (the grid: the collection costs
  ~0.2 s a task at quick scale, 7 % of a quick run) the increase is a looser lower bound. Either way it includes
  anything else the process allocates meanwhile (bench/running/memory.py samples RSS every 20 ms in a thread, which sees
  torch's and numpy's C allocations that tracemalloc does not).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import traceback
from dataclasses import asdict, dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from bench.running.memory import PeakRSS, release_freed_memory
from bench.scoring.evaluate import evaluate_selection
from methods import registry
from methods.base import Budget
from surrogates.model import torch_threads
from surrogates.protocol import CountingModel, FixedThreads, capability

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


@dataclass
class JobResult:
    """What one job produced; `record()` is its flat, JSON-ready form (jobs.jsonl, the cache, the tables)."""

    job: Job
    status: str = "failed"
    peaks: list[int] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    explain_seconds: float = float("nan")
    seconds: float = float("nan")
    peak_rss_mb: float = float("nan")
    rss_increase_mb: float = float("nan")
    metrics: dict[str, float] = field(default_factory=dict)  # absent for no_estimate and failed jobs

    def record(self) -> dict:
        """Flat fields; a value that was not measured or is undefined (NaN) is None, i.e. JSON null, not NaN."""
        measured = {"explain_seconds": self.explain_seconds, "seconds": self.seconds,
                    "peak_rss_mb": self.peak_rss_mb, "rss_increase_mb": self.rss_increase_mb, **self.metrics}
        out = {**asdict(self.job), "status": self.status, "peaks": self.peaks, "error": self.error,
               "info": self.info, **{k: None if _is_nan(v) else v for k, v in measured.items()}}
        if self.traceback:
            out["traceback"] = self.traceback
        return out


def run_task(jobs: list[Job], params: dict, budget: Budget, model, data, truth=None,
             settle_memory: bool = False, threads: int | None = None) -> list[JobResult]:
    """Explain once, validate and evaluate jobs that share one explanation; never raises for a method's failure.

    A task is one job, or — for a `ranking` method, whose answer for L is the first L peaks of one ranking that
    does not depend on L — every L of one (method, cell type, gene, seed): the method runs once at the largest L
    and each job evaluates its prefix (`info["ranking_shared_by_L"]` lists them; the time and memory are that one
    run's). The explainer sees the training cells of the job's cell type, the evaluation its test cells. Everything
    runs on `threads` torch threads, by default the model's fixed count (`SurrogateConfig.threads`)."""
    L_max = max(job.L for job in jobs)
    threads = threads or job_threads(model)
    # the same answer in-process, on dask workers, on any machine (a model without a thread count keeps torch's);
    # NumPy's BLAS (LIME's ridge fits, SAGE) on as many threads: two jobs side by side each starting a BLAS thread
    # per core ran LIME 4× slower than alone
    with torch_threads(threads) if threads else contextlib.nullcontext(), \
            threadpool_limits(threads) if threads else contextlib.nullcontext():
        results = _run_task(jobs, L_max, params, budget, model, data, truth, settle_memory)
    return results


def job_threads(model) -> int | None:
    """The fixed torch thread count jobs on this model run with (its `threads`, surrogates/protocol.py
    `FixedThreads`: a surrogate's `SurrogateConfig.threads`), if it has one."""
    fixed = capability(model, FixedThreads)
    return fixed.threads if fixed is not None else None


def _run_task(jobs, L_max, params, budget, model, data, truth, settle_memory) -> list[JobResult]:
    first = jobs[0]
    results = [JobResult(job) for job in jobs]
    if settle_memory:
        release_freed_memory()
    mem, t0, explained = PeakRSS(), time.perf_counter(), None
    try:
        explainer = make_explainer(first.method, first.seed, budget, params, data, first.cell_type, truth)
        counted = CountingModel(model)  # the protocol's count of model evaluations, the same unit for every method
        with mem, model.evaluating():  # eval mode for every method, restored even if it raises
            try:
                expl = explainer.explain(counted, data.cells(first.cell_type, "train"), first.gene, L_max)
            finally:  # a method that raised is still timed and measured
                explained = time.perf_counter()
        expl.check(data.n_peaks, L_max)
        info = {**_jsonable(expl.info), "evaluations": counted.evaluations}
        if expl.status == "no_estimate" and _cut_by_time(info, budget):
            info["cut_by_time"] = True  # not the method's answer on a faster machine: the cache retries it
        if len(jobs) > 1:
            info["ranking_shared_by_L"] = sorted(job.L for job in jobs)
        test = data.cells(first.cell_type, "test")
        for result in results:
            peaks = expl.peaks[:result.job.L]
            result.status, result.peaks, result.info = expl.status, [int(p) for p in peaks], info
            if expl.status != "no_estimate":  # no peaks of the method's own: no numbers under its name
                result.metrics = evaluate_selection(model, test, result.job.gene, peaks, truth)
    except Exception as exc:  # noqa: BLE001 - a broken method is a result, not a crash
        log.warning("job %s failed: %s: %s", first, type(exc).__name__, exc)
        failure = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=5)}
        results = [JobResult(result.job, **failure) for result in results]
    for result in results:
        if explained is not None:
            result.explain_seconds = explained - t0
            result.peak_rss_mb, result.rss_increase_mb = mem.peak_mb, mem.delta_mb
        result.seconds = time.perf_counter() - t0
    return results


def run_job(job: Job, params: dict, budget: Budget, model, data, truth=None,
            settle_memory: bool = False) -> JobResult:
    """One job on its own (`run_task` with a single job)."""
    return run_task([job], params, budget, model, data, truth, settle_memory)[0]


def make_explainer(method: str, seed: int, budget: Budget | None, params: dict, data, cell_type: str, truth=None):
    """The registered method's explainer with its parameters and what its spec asks for: the simulator's `truth`
    (`needs_truth`, the oracle) and the other cell types' training cells (`needs_background`)."""
    spec = registry.get(method)
    extra = {"truth": truth} if spec.needs_truth else {}
    if spec.needs_background:
        extra["background"] = _other_types_train(data, cell_type)
    return spec.cls(seed=seed, budget=budget, **extra, **params)


def _other_types_train(data, cell_type: str):
    """The training cells of every cell type but `cell_type` (a background distribution)."""
    mask = (data.obs["split"] == "train").to_numpy() & (data.obs["cell_type"] != cell_type).to_numpy()
    return data.subset(mask)


def _cut_by_time(info: dict, budget: Budget) -> bool:
    """Whether the wall-time safety stop, not the evaluation budget, ended a method (from the `seconds` and
    `samples` its clock reported)."""
    seconds, samples = info.get("seconds"), info.get("samples")
    return seconds is not None and seconds > budget.seconds and (samples is None or samples <= budget.samples)


def _is_nan(value) -> bool:
    return isinstance(value, float) and value != value


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
