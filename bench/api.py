"""The Python API for notebooks: `bench.run`, `bench.fit`, `bench.compare`, `bench.report` and `bench.worlds`; the
command line (`python -m bench run / fit / compare / report / worlds`) is a thin layer over them.

    import bench
    long = bench.run("quick", methods=["grids", "input-x-gradient", "random"], L=[10, 128], out="results/mine")
    long[long.cell_type == "Avg"][["method", "L", "rel_delta_pct", "rel_delta_pct_ci95"]]
    fitted = bench.fit("quick")            # the surrogate `run` would explain, and how faithful it is
    fitted.summary["marker_r2"], fitted.summary["interventional_spearman"]
    bench.compare("results/examples/quick", "results/mine")
    table = bench.worlds("quick", worlds=["redundant", "additive"], tiers=["truth"])  # every explainer per world
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from bench.config import DEFAULT_SURROGATE, PAPER_LS, TRUTH_LS, profile_for
from bench.errors import UserError
from bench.fidelity.fit_curve import curve_markdown, fidelity_curve, write_curve
from bench.fidelity.interventional import interventional_fidelity, interventional_markdown
from bench.reporting.comparison import compare_markdown, compare_runs, load_run
from bench.reporting.html import package_versions
from bench.reporting.report import long_table, rerender, run_facts, write_report
from bench.reporting.trust import trust_line
from bench.running.machine import describe_machine
from bench.running.memory import process_peak_rss_mb
from bench.running.pipeline import (
    SURROGATE_STYLES,
    Inputs,
    check_device,
    fit_surrogate,
    load_inputs,
    local_workers,
    marker_fidelity,
    marker_genes_in,
    run_plan,
    side_by_side,
    simulate_pairs,
)
from bench.running.plan import check_methods, plan_run
from bench.running.versions import code_versions
from bench.studies.worlds import WORLD_LS, check_study, is_worlds_folder, rerender_worlds, run_worlds
from datasets.files import FolderLocked, atomic_write, folder_lock
from surrogates.checkpoint import checkpoint_name
from surrogates.fidelity import fidelity_markdown, fidelity_summary, plot_fidelity
from surrogates.protocol import ModelOutputError, as_model, cache_key_of, meta_of
from surrogates.truth import TruthModel

log = logging.getLogger("bench")


def run(scale: str = "quick", *, data: str | None = None, labels: str | None = None, label_key: str | None = None,
        markers: str | None = None, min_cells: int = 10, rna_mod: str = "rna", atac_mod: str = "atac",
        guides: str | None = None, guide_key: str | None = None, guide_calls: str | None = None,
        seed: int = 0, methods=None, cell_types=None, genes=None, L=None, seeds: int = 1,
        surrogate: str = DEFAULT_SURROGATE, surrogate_seeds: int = 1, model=None, simulate: dict | None = None,
        device: str = "auto",
        cache_dir=None, retrain: bool = False, force: bool = False, threads: int | None = None,
        budget_seconds: float | None = None, scheduler: str | None = None, out=None,
        progress: bool = True) -> pd.DataFrame:
    """Run the benchmark; returns `report.long_table` (every job, cell-type row and Avg row), with
    `.attrs["records"]` (one dict per job) and `.attrs["written"]` (files, when `out` is given).

    The arguments are the `python -m bench run` flags (`L` a list of ints, default 10, 128 — and 1, 3, 5, 10, 20 on
    the truth tier; `scale` one of tiny/quick/default/paper; the default here is `quick`, a notebook-sized run,
    where the command line's is `default`).
    `surrogate`: which model the explainers explain — a trained surrogate ("paired", "reference", "locus") or the
    simulator's exact model ("truth", synthetic data only: the truth tier, scored against the known optimum).
    `model`: your own model instead — any object of the protocol in surrogates/protocol.py, or a torch.nn.Module
    mapping a dense float [cells × peaks] batch to log-expression [cells × genes] in the data's gene order; its
    jobs are cached under its `cache_key` (a module: a hash of its class and state_dict).
    `simulate`: changes to the synthetic data's scale, e.g. {"n_cells": 20000, "umi_per_cell": 2000}
    (`datasets.synthetic.SIMULATE_KEYS`); the reference style's training steps scale with the cells.
    `guides` with `guide_key` or `guide_calls`: a perturbation screen of `data` (the `--guides`, `--guide-key`,
    `--guide-calls` flags; datasets/guides.py): cells with a targeting guide go into `data.screen`, out of the
    explained and evaluated cells.
    `surrogate_seeds` > 1 retrains the surrogate with seeds 0..N−1 and runs every job on each; the tables then
    count each (surrogate seed, seed) as a replicate and report how rankings move between surrogates. `force`
    recomputes every job and retrains the surrogate instead of reusing cached ones; `threads` overrides the fixed
    torch thread count of training and jobs (`SurrogateConfig.threads`, 2). Input mistakes raise
    `bench.errors.UserError` before any training, as does an `out` folder another run is writing."""
    t0 = time.perf_counter()  # the wall time in the header counts data loading and training too
    profile_for(scale, threads)  # a bad scale or thread count fails before the other checks
    if surrogate not in (*SURROGATE_STYLES, "truth"):
        raise UserError(f"surrogate must be one of {', '.join(SURROGATE_STYLES)} or 'truth', got {surrogate!r}")
    if surrogate == "truth" and data is not None:
        raise UserError("--surrogate truth explains the simulator's exact model, which exists for the synthetic data "
                        "only; with --data use --surrogate paired, reference or locus")
    if (surrogate == "truth" or model is not None) and surrogate_seeds != 1:
        raise UserError("--surrogate-seeds retrains the surrogate; the truth model and your own model are fixed, so "
                        "leave it at 1")
    L = (TRUTH_LS if surrogate == "truth" and model is None else PAPER_LS) if L is None else L
    if isinstance(L, (int, str)) or not all(isinstance(x, int) and not isinstance(x, bool) for x in L):
        raise UserError(f"L must be a list of integers, e.g. [10, 128]; got {L!r}")
    if methods:
        check_methods(methods)  # fail fast on typos, before data and training
    if surrogate_seeds < 1:
        raise UserError(f"--surrogate-seeds must be ≥ 1, got {surrogate_seeds}")
    profile, inputs, (dataset, truth, marker_table) = _load(
        scale, threads, seed=seed, data=data, labels=labels, label_key=label_key, markers=markers,
        min_cells=min_cells, rna_mod=rna_mod, atac_mod=atac_mod, guides=guides, guide_key=guide_key,
        guide_calls=guide_calls, cache_dir=cache_dir, simulate=simulate)
    style = "user" if model is not None else surrogate
    if style == "truth":
        profile = profile.for_truth_tier()
    plan = plan_run(profile, dataset, marker_table, methods=methods, cell_types=cell_types, genes=genes,
                    Ls=L, n_seeds=seeds, budget_seconds=budget_seconds,
                    truth_available=truth is not None)
    explained = _fixed_model(style, model, dataset, truth)
    check_device(device)  # the last input error to catch before the output folder is created and locked
    with _output_lock(out):
        records, models = [], []
        for s in range(surrogate_seeds):
            profile = plan.profile if surrogate_seeds == 1 else replace(
                plan.profile, surrogate=replace(plan.profile.surrogate, seed=s))
            fitted = explained or fit_surrogate(profile, dataset, surrogate, device=device, cache_dir=cache_dir,
                                                retrain=retrain or force, progress=progress)
            recs = run_plan(replace(plan, profile=profile), fitted, dataset, truth, style, cache_dir=cache_dir,
                            scheduler=scheduler, progress=progress, force=force)
            records += [{**r, "surrogate_seed": s} for r in recs] if surrogate_seeds > 1 else recs
            models.append(fitted)
        long = long_table(records)
        long.attrs["records"] = _Shared(records)
        if out is not None:
            context = _html_context(models[0], dataset, marker_table, style, plan, inputs, surrogate_seeds)
            facts = run_facts(inputs.describe(), dataset, models, style, plan.profile, time.perf_counter() - t0,
                              reused=sum(bool(r.get("cached")) for r in records), n_jobs=len(records),
                              versions=code_versions(plan.methods, truth is not None,
                                                     "truth" if style == "truth" else
                                                     "user" if style == "user" else "surrogate"),
                              peak_rss_mb=process_peak_rss_mb(), machine=describe_machine(device),
                              side_by_side=_side_by_side(plan.profile, scheduler, records, models[0]),
                              interventional=_interventional(models[0], dataset, truth, marker_table, style, seed))
            long.attrs["written"] = write_report(records, Path(out), facts, list(plan.methods), context=context)
    return long


def _load(scale: str, threads: int | None, *, cache_dir, simulate: dict | None, **source):
    """(profile, inputs, (data, truth or None, marker table)) of a run's or a fit's data flags; on synthetic data the
    profile is fitted to its cell count (`Profile.for_cells`)."""
    profile = profile_for(scale, threads)
    inputs = Inputs(scale=profile.scale, cache_dir=cache_dir,
                    simulate=simulate_pairs(simulate), **source)
    loaded = load_inputs(inputs)
    data, truth, _ = loaded
    return (profile.for_cells(data.n_cells) if truth is not None else profile), inputs, loaded


@dataclass
class Fitted:
    """What `fit` returns: the trained surrogate and its fidelity (or, with `curve`, the fidelity-vs-epochs table)."""

    summary: dict  # fidelity.json's fields (marker R², training seconds, interventional Spearman on synthetic data)
    markdown: str  # fidelity.md (or fidelity_vs_epochs.md)
    model: object | None = None  # the surrogate (None for a curve: its weights are not kept)
    fidelity: object | None = None  # surrogates.fidelity.FidelityReport
    interventional: object | None = None  # bench.fidelity.interventional.InterventionalReport (synthetic data)
    curve: pd.DataFrame | None = None  # with `curve`: one row per requested epoch
    written: list[Path] = field(default_factory=list)


def fit(scale: str = "quick", *, data: str | None = None, labels: str | None = None, label_key: str | None = None,
        markers: str | None = None, min_cells: int = 10, rna_mod: str = "rna", atac_mod: str = "atac",
        guides: str | None = None, guide_key: str | None = None, guide_calls: str | None = None,
        seed: int = 0, surrogate: str = DEFAULT_SURROGATE, simulate: dict | None = None, device: str = "auto",
        cache_dir=None, retrain: bool = False, threads: int | None = None, curve=None, out=None,
        progress: bool = True) -> Fitted:
    """Train (or reuse from the cache) the surrogate a `run` with the same arguments explains, and measure its
    fidelity: marker R² of predicted vs observed mean expression per cell type on test cells and, on synthetic
    data, interventional fidelity against the simulator's exact model (`bench.fidelity.interventional`).

    The arguments are `run`'s data and surrogate arguments (the `python -m bench fit` flags). `curve`: a list of
    epochs instead — one training to the last of them with early stopping lifted, fidelity measured after each
    (`bench.fidelity.fit_curve`; nothing is cached). `out`: also write fidelity.md/.csv/.json/.png and, on
    synthetic data, interventional.csv (a curve: fidelity_vs_epochs.csv/.md/.png). Input mistakes are UserErrors."""
    if surrogate not in SURROGATE_STYLES:
        raise UserError(f"there is nothing to train for surrogate {surrogate!r}: fit trains one of "
                        f"{', '.join(SURROGATE_STYLES)} (the truth tier is the simulator's exact model; run it with "
                        "`python -m bench run --surrogate truth`)")
    t0 = time.perf_counter()
    profile, _, (dataset, truth, marker_table) = _load(
        scale, threads, seed=seed, data=data, labels=labels, label_key=label_key, markers=markers,
        min_cells=min_cells, rna_mod=rna_mod, atac_mod=atac_mod, guides=guides, guide_key=guide_key,
        guide_calls=guide_calls, cache_dir=cache_dir, simulate=simulate)
    if curve is not None:
        return _fit_curve(profile, surrogate, dataset, truth, marker_table, curve, device, progress, seed, out)
    model = fit_surrogate(profile, dataset, surrogate, device=device, cache_dir=cache_dir, retrain=retrain,
                          progress=progress)
    report_ = marker_fidelity(model, dataset, marker_table)
    if report_ is None:
        raise UserError("none of the marker table's genes is in the data, so there is no fidelity to report; pass "
                        "--markers FILE with genes the data has")
    md = fidelity_markdown(model, dataset, report_, surrogate)
    summary = fidelity_summary(model, report_, surrogate)
    inter = None
    if truth is not None:
        inter = interventional_fidelity(model, dataset, truth, marker_genes_in(dataset, marker_table, truth.genes),
                                        seed=seed)
        summary.update(inter.summary())
        md += "\n\n" + interventional_markdown(inter) + "\n" + trust_line(inter.summary()) + "\n"
    written = []
    if out is not None:
        out = Path(out)
        written = [atomic_write(out / "fidelity.csv", report_.table.to_csv(index=False))]
        if inter is not None:
            written.append(atomic_write(out / "interventional.csv",
                                        inter.table.drop(columns="members").to_csv(index=False)))
        written += [atomic_write(out / "fidelity.md", md + "\n"),
                    atomic_write(out / "fidelity.json", json.dumps(summary, indent=2) + "\n")]
        plot_fidelity(report_, out / "fidelity.png")
        written.append(out / "fidelity.png")
    log.info("fit: %.0f s", time.perf_counter() - t0)
    return Fitted(summary=summary, markdown=md, model=model, fidelity=report_, interventional=inter,
                  written=written)


def _fit_curve(profile, surrogate: str, data, truth, markers, epochs, device: str, progress: bool, seed: int,
               out) -> Fitted:
    """`fit(curve=...)`: fidelity after each of `epochs` of one training run (`bench.fidelity.fit_curve`)."""
    if isinstance(epochs, (int, str)) or not all(isinstance(e, int) and not isinstance(e, bool) for e in epochs):
        raise UserError(f"curve must be a list of epoch counts, e.g. [5, 10, 20, 40]; got {epochs!r}")
    try:
        table = fidelity_curve(data, truth, markers, profile.surrogate_config(surrogate), list(epochs),
                               device=device, progress=progress, seed=seed)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    title = f"Fidelity against training ({profile.name} profile, {surrogate} surrogate, seed {seed})"
    md = curve_markdown(table, title)
    written = write_curve(table, Path(out), title) if out is not None else []
    return Fitted(summary={"epochs": list(table["epoch"])}, markdown=md, curve=table, written=written)


def _interventional(model, data, truth, markers, style: str, seed: int) -> dict | None:
    """The surrogate's interventional fidelity summary for the header's trust line (synthetic data and a trained
    surrogate only; the first surrogate of a multi-seed run)."""
    if truth is None or style not in SURROGATE_STYLES:
        return None

    pairs = marker_genes_in(data, markers, truth.genes)
    return interventional_fidelity(model, data, truth, pairs, seed=seed).summary() if pairs else None


def _side_by_side(profile, scheduler, records, model) -> dict | None:
    """How jobs ran when the profile runs them side by side on this machine's worker processes (jobs at a time,
    threads each, the workers' largest RSS during a job): their memory is not in the main process's peak."""
    workers = local_workers(profile, model, scheduler)
    if workers < 2:
        return None
    threads, _ = side_by_side(profile, model)
    peaks = [r.get("peak_rss_mb") for r in records if not r.get("cached")]
    peaks = [p for p in peaks if isinstance(p, (int, float)) and p == p]
    return {"workers": workers, "threads": threads, "worker_peak_rss_mb": max(peaks) if peaks else None}


def _fixed_model(style: str, model, data, truth):
    """The explained model when it is not trained here: the truth model, or the user's (wrapped when it is a plain
    torch module); None for a surrogate. A model of the wrong kind or output is a UserError."""
    if style == "truth":
        return TruthModel(truth, data.n_peaks)
    if style != "user":
        return None

    try:
        explained = as_model(model, data)
    except (TypeError, ModelOutputError) as exc:
        raise UserError(str(exc)) from None
    if list(explained.gene_names) != list(data.gene_names) or explained.n_peaks != data.n_peaks:
        raise UserError(f"your model predicts {explained.n_genes} genes over {explained.n_peaks} peaks; the data has "
                        f"{data.n_genes} genes over {data.n_peaks} peaks, and its outputs must follow the data's gene "
                        "order")
    return explained


def worlds(scale: str = "quick", *, worlds=None, methods=None, L=WORLD_LS, tiers=("truth", "surrogate"),
           seed: int = 0, surrogate: str = DEFAULT_SURROGATE, cell_types=None, genes=None, out=None,
           cache_dir=None, device: str = "auto", progress: bool = True) -> pd.DataFrame:
    """Every explainer in every regulatory world (bench/studies/worlds.py): the truth tier (% of the exact
    optimum) and the surrogate tier (a `surrogate` trained on each world's data), same seed, genes and cells.

    `worlds`: names from datasets/worlds.py (default: all of them, `redundant` first). `L`: subset sizes
    (default: 3 and 10). Returns the long table: world, tier, method, L, Rel Δ, % of optimum, the truth's Rel Δ of
    the surrogate tier's peaks, each with its 95 % CI. With `out`, writes worlds.csv/.md/.png, report.html,
    regime.csv, jobs.jsonl.gz and run.json there after every world; jobs are cached, so a rerun resumes."""
    check_device(device)
    worlds, tiers, methods, L = check_study(worlds, tiers, methods, L)  # before the output folder is made
    with _output_lock(out):
        return run_worlds(scale, worlds=worlds, seed=seed, tiers=tiers, surrogate=surrogate, methods=methods,
                          Ls=L, cell_types=cell_types, genes=genes, cache_dir=cache_dir, device=device, out=out,
                          progress=progress)


@contextlib.contextmanager
def _output_lock(out):
    """Hold `out`'s lock for the run (no lock without an output folder); a folder in use is a UserError."""
    if out is None:
        yield
        return

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(folder_lock(out))
        except FolderLocked as exc:
            raise UserError(str(exc)) from None
        except OSError as exc:  # e.g. `out` is a file, or not writable
            raise UserError(f"cannot write to the output folder {out} ({exc.strerror or exc}); pass a writable "
                            "folder with --out") from None
        yield


class _Shared(list):
    """The job records in `attrs`: pandas deep-copies `attrs` on every operation, so the list copies as itself."""

    def __deepcopy__(self, memo):
        return self


def _html_context(model, data, markers, style: str, plan, inputs, surrogate_seeds: int) -> dict:
    """report.html's extras: the surrogate's fidelity scatter and the run's configuration."""
    # the fidelity panel is the explained model against the observed RNA; on the truth tier that is the simulator's
    # own noise, not a model's fidelity, so it is left out
    fidelity = marker_fidelity(model, data, markers) if style != "truth" else None
    context = {}
    if fidelity is not None:  # data whose cell types or genes are not in the marker table has no marker panel
        buf = io.BytesIO()
        plot_fidelity(fidelity, buf)
        context = {"fidelity_png": buf.getvalue(), "fidelity_summary": fidelity.summary()}

    explained = ({"surrogate style": style, "surrogate seeds": surrogate_seeds,
                  "checkpoint (cache key)": checkpoint_name(meta_of(model).get("checkpoint", ""))}
                 if style in SURROGATE_STYLES else
                 {"explained model": "the simulator's exact model (truth tier)" if style == "truth" else
                  f"your model {meta_of(model).get('model', type(model).__name__)}",
                  "model cache key": cache_key_of(model) or "none (jobs not cached)"})
    config = {"data": inputs.describe(), "profile": plan.profile.name, **explained,
              "methods": ", ".join(plan.methods), "L": ", ".join(map(str, plan.Ls)), "seeds": len(plan.seeds),
              "(cell type, gene) pairs": len(plan.pairs), "per-job evaluation budget": plan.profile.budget.samples,
              "per-job wall-time safety stop (s)": plan.profile.budget.seconds,
              **{f"budget {m}": f"{b.samples} evaluations, {b.seconds:g} s" for m, b in
                 plan.profile.method_budgets.items()},
              **{f"params {m}": p for m, p in plan.profile.method_params.items() if m in plan.methods}}

    return {**context, "config": config, "packages": package_versions()}


def compare(*runs, names=None, out=None) -> pd.DataFrame:
    """Compare runs (results folders or leaderboard.csv files); returns `bench.reporting.comparison.compare_runs`'s
    table with `.attrs["markdown"]`; `out` also writes compare.md and compare.csv there."""
    if len(runs) < 2:
        raise UserError("compare needs at least two runs (results folders or leaderboard.csv files)")
    names = list(names) if names else _names(runs)
    if len(names) != len(runs) or len(set(names)) != len(names):
        raise UserError(f"--names needs {len(runs)} distinct names, got {names}")
    try:
        loaded = {n: load_run(r) for n, r in zip(names, runs)}
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    table = compare_runs(loaded)
    table.attrs["markdown"] = compare_markdown(table, names)
    if out is not None:
        atomic_write(Path(out) / "compare.md", table.attrs["markdown"] + "\n")
        atomic_write(Path(out) / "compare.csv", table.to_csv(index=False))
    return table


def report(run_dir, out=None) -> list[Path]:
    """Render a finished run's leaderboard.md/.csv, headline.csv, discrimination.csv, figures and report.html again
    from its jobs.jsonl and run.json with the current report code (into `out`, default the run's folder); returns
    the files written. Nothing is recomputed, so the header keeps the run's measured time and memory. A folder of
    `bench worlds` is rendered as the study it is (worlds.md, worlds.csv, report.html)."""
    try:
        if is_worlds_folder(run_dir):
            return rerender_worlds(Path(run_dir), None if out is None else Path(out))
        return rerender(Path(run_dir), None if out is None else Path(out))
    except (FileNotFoundError, json.JSONDecodeError, KeyError) as exc:
        raise UserError(f"cannot render {run_dir} again: {exc}") from None


def _names(runs) -> list[str]:
    """Each run's folder name (a CSV: its parent folder's), made unique with its position where they clash."""
    names = [Path(r).name if Path(r).is_dir() else Path(r).parent.name or Path(r).stem for r in runs]
    return names if len(set(names)) == len(names) else [f"{i + 1}:{n}" for i, n in enumerate(names)]
