"""Orchestration of the commands, without argparse: load the inputs, fit or reuse the surrogate, run a plan's
grid of jobs. `bench.cli` parses flags and calls these; user-facing input errors come back as `UserError`."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from bench.config import Profile
from bench.errors import UserError
from bench.running.harness import NoCache, ResultCache, make_jobs, run_grid
from bench.running.plan import RunPlan
from datasets.files import cache_root
from datasets.guides import check_guide_options, load_screen
from datasets.loaders import InputError, load_multiome
from datasets.markers import PAPER_MARKERS, read_marker_table
from datasets.synthetic import scale_with, simulate
from surrogates.checkpoint import checkpoint_key, fit_or_load
from surrogates.fidelity import fidelity_report
from surrogates.locus import NoCisWindowError
from surrogates.screen import NoScreenError
from surrogates.model import STYLES as SURROGATE_STYLES  # trained; "truth" and "user" name the other models
from surrogates.protocol import cache_key_of
from surrogates.train import DeviceUnavailableError, resolve_device

log = logging.getLogger("bench")


@dataclass(frozen=True)
class Inputs:
    """Where a run's data comes from: the synthetic simulator at `scale` (default) or the user's files."""

    scale: str = "default"
    seed: int = 0
    data: str | None = None  # a 10x ARC .h5, 'rna.h5ad,atac.h5ad' or a .h5mu
    labels: str | None = None
    label_key: str | None = None
    markers: str | None = None
    min_cells: int = 10
    rna_mod: str = "rna"
    atac_mod: str = "atac"
    cache_dir: str | None = None
    # a perturbation screen of the user's data (datasets/guides.py): the guide → target table and where the cells'
    # guides are (an obs column / obsm entry of the input, or a 10x protospacer calls file)
    guides: str | None = None
    guide_key: str | None = None
    guide_calls: str | None = None
    # `--simulate key=value` changes to the synthetic scale, as (key, text) pairs in the order given
    simulate: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        changed = "".join(f", {k}={v}" for k, v in self.simulate)
        return self.data or f"synthetic ({self.scale} scale{changed}, seed {self.seed})"

    def simulation_scale(self):
        """The simulator's scale: the profile's name, or a `SimulationScale` with the overrides (UserError when one
        is unknown or out of range)."""
        try:
            return scale_with(self.scale, dict(self.simulate))
        except ValueError as exc:
            raise UserError(str(exc)) from None


def simulate_pairs(simulate) -> tuple[tuple[str, str], ...]:
    """`--simulate` overrides (pairs, as the command line gives them, or a dict, as the API takes them) as the
    (key, text) pairs `Inputs.simulate` holds, in order; a repeated key keeps its last value."""
    items = simulate.items() if isinstance(simulate, dict) else (simulate or ())
    return tuple({str(k): str(v) for k, v in items}.items())


def load_inputs(inputs: Inputs):
    """(data, truth or None, marker table); input errors become UserError."""
    try:
        markers = read_marker_table(inputs.markers) if inputs.markers else PAPER_MARKERS
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    if inputs.data and inputs.simulate:
        raise UserError("--simulate changes the synthetic simulator; it does not apply to --data (drop one of them)")
    try:  # flags that cannot work together fail before the data is loaded
        check_guide_options(inputs.data, inputs.guides, inputs.guide_key, inputs.guide_calls)
    except InputError as exc:
        raise UserError(str(exc)) from exc
    if inputs.data:
        try:
            data = load_multiome(inputs.data, label_key=inputs.label_key, labels_csv=inputs.labels, markers=markers,
                                 min_cells_per_type=inputs.min_cells, split_seed=inputs.seed, rna_mod=inputs.rna_mod,
                                 atac_mod=inputs.atac_mod, cache_dir=cache_root(inputs.cache_dir), report=log.info)
            if inputs.guides:  # after the loader (and its cache), which holds every cell, screened or not
                data = load_screen(data, inputs.data, inputs.guides, guide_key=inputs.guide_key,
                                   guide_calls=inputs.guide_calls, rna_mod=inputs.rna_mod, atac_mod=inputs.atac_mod,
                                   seed=inputs.seed, report=log.info)
        except InputError as exc:
            raise UserError(str(exc)) from exc
        return data, None, markers
    if inputs.labels or inputs.label_key:
        raise UserError("--labels/--label-key need --data (the synthetic data carries its own labels)")

    scale = inputs.simulation_scale()
    t0 = time.perf_counter()
    try:
        data, truth = simulate(scale, seed=inputs.seed)
    except ValueError as exc:  # overrides that fit each key's range but not each other (too few peaks for the genes)
        raise UserError(f"--simulate {' '.join(f'{k}={v}' for k, v in inputs.simulate)}: {exc}") from None
    log.info("synthetic data (%s): %r in %.1fs", inputs.describe(), data, time.perf_counter() - t0)
    return data, truth, markers


def fit_surrogate(profile: Profile, data, style: str, device: str = "auto", cache_dir=None, retrain: bool = False,
                  progress: bool = True):
    """The cached surrogate of the profile's configuration in `style`, trained if there is none."""
    try:
        return fit_or_load(data, profile.surrogate_config(style), device=device, cache_dir=cache_dir,
                           retrain=retrain, progress=progress)
    except (DeviceUnavailableError, NoCisWindowError, NoScreenError) as exc:
        raise UserError(str(exc)) from exc


def run_plan(plan: RunPlan, model, data, truth, style: str, cache_dir=None, scheduler: str | None = None,
             progress: bool = True, force: bool = False) -> list[dict]:
    """Every job of the plan on the explained `model`, through the result cache (finished jobs of the same code
    versions are reused, none with `force`); records in job order. The cache key names the model: a surrogate by
    its checkpoint key, the truth model and a user's model by their `cache_key`; a model without one is not cached
    (every run computes its jobs again)."""
    jobs = make_jobs(plan.methods, plan.pairs, plan.Ls, plan.seeds)
    log.info("%d jobs: %d methods × %d (cell type, gene) × L %s × %d seed(s)", len(jobs), len(plan.methods),
             len(plan.pairs), list(plan.Ls), len(plan.seeds))
    key = model_key(model, data, plan.profile, style)
    if key is None:
        log.info("the model has no cache_key: its jobs are computed and not cached")
    cache = ResultCache(cache_root(cache_dir) / "jobs") if key is not None else NoCache()
    # explainers and the evaluation read the observational cells only: a screen changes a job through its model
    context = {"data": data.fingerprint(screen=False), **(key or {})}
    threads, _ = side_by_side(plan.profile, model)
    if threads is not None:  # jobs on their own thread count: another count may round to other answers
        context["job_threads"] = threads
    workers = local_workers(plan.profile, model, scheduler)
    if workers > 1:
        scheduler = "local"
        log.info("jobs run %d at a time on %d torch thread(s) each (profile %s)", workers, threads,
                 plan.profile.name)
    return run_grid(jobs, plan.profile.method_params, plan.profile.budget_for, model, data, truth, cache,
                    context, scheduler=scheduler, progress=progress, force=force, threads=threads,
                    workers=workers if workers > 1 else None)


def side_by_side(profile: Profile, model=None) -> tuple[int | None, int]:
    """(torch threads per job, jobs at a time) of a profile with `job_threads`: as many jobs as fit in the cores the
    run trains on (`SurrogateConfig.threads`) and this machine has; (None, 1) for a profile without it (jobs on
    the model's own thread count, one at a time) and for a model on a GPU (its jobs stay on the GPU, in this
    process: worker processes get a CPU copy)."""
    if not profile.job_threads or (model is not None and model.device.type != "cpu"):
        return None, 1
    cores = min(profile.surrogate.threads, os.cpu_count() or 1)
    return profile.job_threads, max(1, cores // profile.job_threads)


def local_workers(profile: Profile, model=None, scheduler: str | None = None) -> int:
    """Jobs at a time on the LocalCluster a run starts by itself for a side-by-side profile; 1 when it starts none
    (no `job_threads`, one core's worth, a model on a GPU, or an explicit `scheduler`, which keeps its own worker
    count)."""
    _, workers = side_by_side(profile, model)
    return workers if scheduler is None else 1


def model_key(model, data, profile: Profile, style: str) -> dict | None:
    """What names the explained model in every job's cache key: {"surrogate": checkpoint key} for a trained
    surrogate (as before the protocol existed, so cached surrogate-tier jobs stay valid), {"model": cache_key} for
    the truth model or a user's model, None for a model without a `cache_key` (its jobs are not cached)."""
    if style in SURROGATE_STYLES:
        return {"surrogate": checkpoint_key(data, profile.surrogate_config(style))}
    key = cache_key_of(model)
    return None if key is None else {"model": str(key)}


def marker_fidelity(model, data, markers: dict):
    """`surrogates.fidelity.fidelity_report` over the marker genes present in the data, or None when there are none
    (a data set whose cell types or genes are not in the marker table)."""
    genes = list(dict.fromkeys(g for _, g in marker_genes_in(data, markers)))
    return fidelity_report(model, data, genes) if genes else None


def marker_genes_in(data, markers: dict, among=None) -> list[tuple[str, str]]:
    """(cell type, gene) pairs of the marker table present in the data (and in `among`, when given)."""
    names = set(data.genes.index) if among is None else set(among)
    return [(ct, g) for ct, gs in markers.items() if ct in data.cell_types for g in gs if g in names]


def check_device(device: str) -> None:
    """A UserError when `device` cannot be used here (e.g. cuda without a GPU): the last input error a run checks
    before it creates and locks its output folder."""
    try:
        resolve_device(device)
    except DeviceUnavailableError as exc:
        raise UserError(str(exc)) from None
