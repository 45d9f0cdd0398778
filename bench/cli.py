"""Command line: `python -m bench {run,compare,report,fit,data,list,budget,worlds,fidelity-curve,sweep,perf}` — parsing
and thin commands only.

Planning lives in bench/running/plan.py, orchestration in bench/running/pipeline.py, rendering in
bench/reporting/report.py and surrogates/fidelity.py. User mistakes (unknown method/gene/cell type, bad L, unreadable
files, a missing GPU) are `UserError`s: one `error: ...` line and exit 2, before anything is written; `--debug` shows
the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

from bench.api import compare, fit, report, run, worlds
from bench.config import DEFAULT_SURROGATE, PAPER_LS, PROFILES, TRUTH_LS, profile_for
from bench.errors import UserError
from bench.fidelity.data_curve import (
    SCREEN_EXTRAS,
    TAU_METHODS,
    check_simulate,
    curve_points,
    ordered,
    run_data_curve,
    screen_points,
)
from bench.reporting.report import summary_lines
from bench.running.pipeline import (
    SURROGATE_STYLES,
    Inputs,
    check_device,
    load_inputs,
)
from bench.running.plan import check_methods, parse_ints
from bench.running.versions import COMPONENTS
from bench.running.versions import describe as describe_versions
from bench.studies.budget import run_budget_curve
from bench.studies import own_model
from bench.studies.perf import run_perf
from bench.studies.sweep import run_sweep
from datasets.describe import describe, render_markdown
from datasets.files import atomic_write
from datasets.synthetic import SCALES
from datasets.worlds import DEFAULT_WORLD, WORLDS
from methods import registry
from methods.base import Budget

log = logging.getLogger("bench")


# ---------------------------------------------------------------------------------------------- argument parsing
def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE such as n_cells=20000, got {text!r}")
    return key.strip(), value.strip()


# --simulate's world=NAME: the simulator's regulatory worlds (datasets/worlds.py)
_WORLDS_HELP = f"world=NAME picks the planted regulatory logic: {', '.join(WORLDS)} (default {DEFAULT_WORLD})"


def _add_data_args(p: argparse.ArgumentParser) -> None:
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--quick", action="store_true", help="tiny data, short training and searches (minutes)")
    scale.add_argument("--scale", choices=sorted(PROFILES), default="default",
                       help="synthetic data scale and matching settings (default: %(default)s)")
    p.add_argument("--data", metavar="PATH", help="your own data: a 10x ARC .h5, 'rna.h5ad,atac.h5ad' or a .h5mu "
                   "(default: the embedded synthetic simulator)")
    p.add_argument("--labels", metavar="CSV", help="cell-type labels: CSV with columns barcode,cell_type")
    p.add_argument("--label-key", metavar="COL", help="cell-type labels: an obs column of the input file")
    p.add_argument("--markers", metavar="FILE", help="marker table (cell_type,gene) replacing the paper's Table 2")
    p.add_argument("--min-cells", type=int, default=10, help="fewest cells a cell type may have (default: 10)")
    p.add_argument("--rna-mod", default="rna", help="MuData modality holding RNA (default: rna)")
    p.add_argument("--atac-mod", default="atac", help="MuData modality holding ATAC (default: atac)")
    p.add_argument("--guides", metavar="FILE", help="a perturbation screen of --data: the guide → target table, a "
                   "CSV with columns guide,peak (a peak such as chr1:100-200) or guide,chrom,start,end; "
                   "'non-targeting', 'NTC' or 'control' marks a control. Needs --guide-key or --guide-calls. Cells "
                   "with a targeting guide leave the explained cells and train the screen surrogate only")
    p.add_argument("--guide-key", metavar="KEY", help="the cells' guides in the input file: an obs column of guide "
                   "names (several joined by '|', ';', ',' or '+') or an obsm matrix (cells × guides, nonzero = "
                   "received; a DataFrame, or an array named by uns['KEY_names'])")
    p.add_argument("--guide-calls", metavar="FILE", help="the cells' guides from Cell Ranger's "
                   "protospacer_calls_per_cell.csv (cell_barcode,feature_call with guides joined by '|')")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulator and the train/val/test split")
    p.add_argument("--simulate", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="change the synthetic data without a new scale, e.g. --simulate n_cells=20000 --simulate "
                        "umi_per_cell=2000 --simulate world=additive (keys: n_cells, n_peaks, n_genes, n_chrom, "
                        f"open_fraction, umi_per_cell, world; {_WORLDS_HELP}); the surrogate's checkpoint and every "
                        "job's cache key follow the data, and the reference style's training steps scale with n_cells")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="torch device; auto uses a GPU when present (default: auto)")
    p.add_argument("--cache-dir", metavar="DIR", help="cache for data, checkpoints and job results "
                   "(default: $GRIDS_BENCH_CACHE or ~/.cache/grids-bench)")
    p.add_argument("--retrain", action="store_true", help="train a new surrogate even if a checkpoint exists "
                   "(run --force also does)")
    _add_common_args(p)


def _add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")


def _add_surrogate_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--surrogate", choices=("paired", "reference", "locus", "screen", "truth"),
                   default=DEFAULT_SURROGATE,
                   help="the model the explainers explain: a surrogate trained 'paired' (all losses at once, with "
                        "the paired ATAC→RNA prediction loss), 'reference' (the released reference code: "
                        "autoencoders first, then unpaired cell-type-level alignment of gated affine cross-maps, no "
                        "paired loss), 'locus' (paired plus a saturating cis layer per gene), 'screen' (paired plus "
                        "OR/AND units per gene learned from a perturbation screen read as interventions: needs "
                        "--simulate screen_cells=N or --guides), or 'truth': the simulator's exact model (synthetic "
                        "data only; the truth tier, "
                        "where every job is also scored against the known best closure; nothing is trained) "
                        "(default: %(default)s)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch threads for training and every job; fixed so that a run repeats bit for bit, and "
                        "part of the surrogate's checkpoint key (default: 2; on more cores prefer --scheduler local, "
                        "one worker per 2 cores). The paper profile runs its jobs side by side on one thread each, "
                        "as many at once as N cores hold")


def _add_run(sub) -> None:
    run = sub.add_parser("run", help="run the benchmark and write the leaderboard",
                         description="Explain every (method × cell type × marker gene × L × seed) and score it "
                                     "with Avg Δ and Rel Δ on held-out cells. Finished jobs are cached and reused.")
    _add_data_args(run)
    _add_surrogate_arg(run)
    run.add_argument("--methods", type=_csv, help="comma-separated method names (default: every registered "
                     "method except opt-in variants such as grids-mean; see `list`)")
    run.add_argument("--cell-types", type=_csv, help="comma-separated cell types (default: the paper's 7)")
    run.add_argument("--genes", type=_csv, help="comma-separated genes (default: each cell type's markers)")
    run.add_argument("--L", type=_csv,
                     help="comma-separated subset sizes, e.g. a grid 1,2,5,10,20,50,128 for Rel Δ-vs-L curves "
                          f"(default: {','.join(map(str, PAPER_LS))}; with --surrogate truth "
                          f"{','.join(map(str, TRUTH_LS))}, below a marker's ~40 planted peaks)")
    run.add_argument("--seeds", type=int, default=1, help="number of seeds per job, 0..N-1 (default: 1)")
    run.add_argument("--surrogate-seeds", type=int, default=1, metavar="N",
                     help="train the surrogate N times (seeds 0..N-1), run every job on each, and report how the "
                          "ranking moves between surrogates and how stable each method's peaks are (default: 1)")
    run.add_argument("--out", type=Path, default=Path("results"), help="output folder (default: results/)")
    run.add_argument("--force", action="store_true",
                     help="recompute every job and retrain the surrogate instead of reusing cached results. "
                          "Without it a cached job is reused only when its method's, the evaluator's and (synthetic "
                          "data) the simulator's code versions match (`list` shows them); jobs that failed or hit "
                          "the wall-time stop are always rerun")
    run.add_argument("--budget-seconds", type=float,
                     help="wall-time safety stop per job; a job it cuts is marked time_limit. Answers are decided "
                          "by the profile's evaluation budgets, not by this (default: from the profile)")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="run jobs on dask.distributed: a scheduler address, or 'local' for a LocalCluster")


def _add_fit_and_data(sub) -> None:
    fit = sub.add_parser("fit", help="train (or reuse) the surrogate and print its fidelity report")
    _add_data_args(fit)
    _add_surrogate_arg(fit)
    fit.add_argument("--out", type=Path, default=Path("results"),
                     help="where fidelity.md/.csv/.json/.png (and interventional.csv on synthetic data) go")
    fit.add_argument("--curve", metavar="EPOCHS", default=None,
                     help="instead: train once to the last of these epochs (e.g. 5,10,20,40) with early stopping "
                          "lifted and measure fidelity after each; writes fidelity_vs_epochs.csv/.md/.png (for "
                          "choosing a profile's training budget; nothing is cached)")
    data = sub.add_parser("data", help="describe a data set's regime before trusting a leaderboard on it",
                          description="Describe the data a run would use (same data options as `run`): cells, "
                                      "peaks, genes, cells per type and split, open peaks per cell, RNA sparsity; "
                                      "on the synthetic data also the background share of open chromatin and how "
                                      "much of each marker's expression the planted truth's best closure of 10 "
                                      "peaks, and of all planted peaks, leaves. Explainers are only told apart in "
                                      "the paper's regime (thousands of open peaks per cell, mostly background; "
                                      "no handful of peaks silences a marker): check it here.")
    _add_data_args(data)
    data.add_argument("--json", action="store_true", help="print one JSON object instead of the tables (keys: "
                      "see datasets.describe.describe)")
    data.add_argument("--out", type=Path, help="also write data.md and data.json to this folder")


def _add_compare(sub) -> None:
    compare = sub.add_parser("compare", help="compare runs method by method on their shared jobs",
                             description="Align each method across runs (results folders or leaderboard.csv files) "
                                         "on the (cell type, gene, L, seed) jobs every run finished; print per run "
                                         "the Avg Rel Δ, the paired difference to the first run with its 95 % CI, "
                                         "and the methods whose rank changed.")
    compare.add_argument("runs", nargs="+", metavar="RUN_DIR_OR_CSV", help="two or more runs; the first is the "
                         "reference")
    compare.add_argument("--names", type=_csv, help="comma-separated run names (default: the folder names)")
    compare.add_argument("--out", type=Path, help="also write compare.md and compare.csv to this folder")
    compare.add_argument("--debug", action="store_true", help="show tracebacks for errors")


def _add_report(sub) -> None:
    report = sub.add_parser("report", help="render a finished run's tables and report.html again (no job runs)",
                            description="Render leaderboard.md/.csv, headline.csv, discrimination.csv, the figures "
                                        "and report.html of a finished run again from its jobs.jsonl and run.json, "
                                        "with the current report code. The header keeps the run's measured wall "
                                        "time and memory (a run time only where it says no job and no surrogate "
                                        "was reused).")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a folder written by `bench run --out`")
    report.add_argument("--out", type=Path, help="write here instead of into RUN_DIR")
    report.add_argument("--debug", action="store_true", help="show tracebacks for errors")


def _add_synthetic_args(p: argparse.ArgumentParser, quick_help: str) -> None:
    """--quick/--scale (default quick), --seed, --device and --cache-dir of the commands that run on the simulator's
    data only (`budget`, `fidelity-curve`)."""
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--quick", action="store_true", help=quick_help)
    scale.add_argument("--scale", choices=sorted(PROFILES), default="quick",
                       help="data scale and the profile's settings (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="simulator seed (tune on 1, report 0; default: 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="device (default: auto)")
    p.add_argument("--cache-dir", metavar="DIR", help="cache for data, checkpoints and jobs")


def _add_tier_args(p: argparse.ArgumentParser, tiers: list[str], genes: str) -> None:
    """--tiers, --surrogate, --methods, --cell-types and --genes of the studies that run both tiers."""
    p.add_argument("--tiers", type=_csv, default=tiers, help=f"{' and/or '.join(tiers)} (default: both)")
    p.add_argument("--surrogate", choices=("paired", "reference", "locus", "screen"), default=DEFAULT_SURROGATE,
                   help=f"surrogate style of the surrogate tier (default: {DEFAULT_SURROGATE})")
    p.add_argument("--methods", type=_csv, help="methods (default: every default method)")
    p.add_argument("--cell-types", type=_csv, help="cell types (default: all with markers)")
    p.add_argument("--genes", type=_csv, help=f"genes (default: {genes})")


def _add_budget(sub) -> None:
    budget = sub.add_parser("budget", help="anytime curves: every method's score at a grid of model-evaluation "
                            "budgets, on the surrogate and the truth tier (budget_curve.csv/.md/.png, report.html)",
                            description="Runs every method at each budget (model evaluations per job, counted by "
                            "the model protocol) with its own stopping rule lifted, so the budget is what stops it; "
                            "writes the score against the measured evaluations. Synthetic data only (the truth "
                            "tier needs the simulator).")
    _add_synthetic_args(budget, "quick scale (minutes per budget)")
    budget.add_argument("--simulate", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                        help="change the synthetic data as for `run`, e.g. --simulate world=additive (keys: n_cells, "
                             f"n_peaks, n_genes, n_chrom, open_fraction, umi_per_cell, world; {_WORLDS_HELP})")
    budget.add_argument("--budgets", type=_csv, default=["1e3", "1e4", "1e5", "1e6"],
                        help="model evaluations per job (default: 1e3,1e4,1e5,1e6)")
    _add_tier_args(budget, ["surrogate", "truth"], "the first marker of each cell type")
    budget.add_argument("--L", type=int, default=10, help="subset size (default: 10)")
    budget.add_argument("--budget-seconds", type=float, default=60.0,
                        help="wall-time safety stop per job; a job it cuts is marked ᵗ (default: 60)")
    budget.add_argument("--out", type=Path, default=Path("results") / "budget", help="output folder")
    _add_common_args(budget)


def _add_worlds(sub) -> None:
    worlds = sub.add_parser("worlds", help="every explainer in every regulatory world: truth tier (% of the exact "
                            "optimum) and surrogate tier, one table of methods × worlds (worlds.csv/.md, report.html)",
                            description="Runs the same methods, cell types, marker genes and L on the simulator's "
                            "data in each regulatory world (redundant OR groups, additive with distance decay, AND "
                            "synergy, silencers, a literature-informed mix; docs/worlds.md): on the world's exact "
                            "model (the truth tier) and on a surrogate trained on that world's data. Reports % of "
                            "optimum per world with 95 % CIs, the best method per world with paired differences, "
                            "Kendall τ between the worlds' rankings and between the tiers. Jobs are cached: an "
                            "interrupted study resumes. Synthetic data only.")
    _add_synthetic_args(worlds, "quick scale (about 10 minutes per world on 2 cores)")
    worlds.add_argument("--worlds", type=_csv, help=f"comma-separated worlds (default: all of {', '.join(WORLDS)})")
    _add_tier_args(worlds, ["truth", "surrogate"], "each cell type's markers")
    worlds.add_argument("--L", type=_csv, default=["3", "10"], help="comma-separated subset sizes (default: 3,10)")
    worlds.add_argument("--out", type=Path, default=Path("results") / "worlds", help="output folder "
                        "(default: results/worlds)")
    _add_common_args(worlds)


def _add_fidelity_curve(sub) -> None:
    curve = sub.add_parser(
        "fidelity-curve", help="when to trust the surrogate: its fidelity and the tiers' rank agreement against the "
        "number of cells and sequencing depth (fidelity_curve.csv/.md/.png)",
        description="Train the surrogate on synthetic data of several sizes and depths (the scale's genes and "
        "peaks), measure marker R² and interventional fidelity at each, and the Kendall τ between the ranking of "
        "a fixed method set on the surrogate and on the simulator's exact model at one L (bootstrap CI over jobs). "
        "Checkpoints and jobs are cached, so an interrupted curve resumes; the table is rewritten after each point.")
    _add_synthetic_args(curve, "quick genes and peaks (the default)")
    curve.add_argument("--simulate", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                       help="change the synthetic data at every point, e.g. --simulate world=additive (keys: n_peaks, "
                            f"n_genes, n_chrom, open_fraction, world; {_WORLDS_HELP}); the points' cells and depth "
                            "come from --cells, --depth-cells and --depths")
    curve.add_argument("--cells", type=_csv, default=["2000", "5000", "10000", "20000"],
                       help="cell counts (default: 2000,5000,10000,20000)")
    curve.add_argument("--styles", type=_csv, default=["paired", "locus"],
                       help="surrogate styles trained at every cell count and extra depth (default: paired,locus)")
    curve.add_argument("--depths", type=_csv, default=["20000"],
                       help="extra UMI per cell (median library size; the simulator's own is 6000) for --styles "
                            "at --depth-cells; 'none' for none (default: 20000)")
    curve.add_argument("--depth-cells", type=int, default=5000, help="cells of the extra depths (default: 5000)")
    curve.add_argument("--reference-cells", type=_csv, default=["2000"],
                       help="cell counts at which the reference style is trained too; 'none' for none (default: "
                            "2000; its steps scale with the cells)")
    curve.add_argument("--screen-cells", type=_csv, default=[],
                       help="the screen axis: screened cells beside the scale's own observational cells, e.g. "
                            "0,2000,5000,10000,20000, each a `--surrogate screen` point with a locus library (0: the "
                            "paired style, no screen); plus --screen-extras at the largest (default: none)")
    curve.add_argument("--screen-extras", type=_csv, default=list(SCREEN_EXTRAS),
                       help="single points at the largest screen: genome (a genome-wide library), confounding "
                            "(confounding=1), mixed (world=mixed); 'none' for none (default: all three)")
    curve.add_argument("--methods", type=_csv,
                       help="methods ranked in both tiers for τ; 'none' to measure fidelity only (default: "
                            "grids,integrated-gradients,input-x-gradient,fimap,sage,cxplain,saliency)")
    curve.add_argument("--genes", type=_csv, help="genes of the τ jobs (default: the first marker of each type)")
    curve.add_argument("--L", type=int, default=10, help="subset size of the τ jobs (default: 10)")
    curve.add_argument("--bootstrap", type=int, default=1000, help="bootstrap draws for τ's CI (default: 1000)")
    curve.add_argument("--out", type=Path, default=Path("results") / "fidelity-curve", help="output folder")
    _add_common_args(curve)


def _add_sweep_and_perf(sub) -> None:
    sweep = sub.add_parser("sweep", help="run every method at increasing numbers of peaks under one budget")
    sweep.add_argument("--dims", type=_csv, default=["2000", "10000", "127219"],
                       help="numbers of peaks (default: 2000,10000,127219)")
    sweep.add_argument("--methods", type=_csv, help="methods (default: all)")
    sweep.add_argument("--budget-seconds", type=float, default=120.0, help="per-job budget (default: 120)")
    sweep.add_argument("--L", type=int, default=10, help="subset size (default: 10)")
    sweep.add_argument("--out", type=Path, default=Path("results") / "sweep", help="output folder")
    _add_common_args(sweep)
    perf = sub.add_parser("perf", help="time data generation, a training epoch, sparse vs dense forward+backward "
                          "and GRIDS steps at a scale (medians after warm-up; perf.md lists the ratios)")
    perf.add_argument("--scale", choices=("tiny", "quick", "default", "paper"), default="paper",
                      help="data scale (default: paper)")
    perf.add_argument("--epochs", type=int, default=1, help="training epochs to time (default: 1)")
    perf.add_argument("--own-model", action="store_true",
                      help="instead: every method on the quick surrogate and on the same network as a plain torch "
                           "module (a user's model, generic paths), seconds per job side by side (own_model.md; "
                           "use with --scale quick)")
    perf.add_argument("--methods", type=_csv, help="with --own-model: the methods (default: every quick method)")
    perf.add_argument("--out", type=Path, default=Path("results") / "perf", help="output folder")
    _add_common_args(perf)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(
        "GRIDS-Bench: benchmark global feature-importance explainers on a single-cell multiome ATAC→RNA "
        "surrogate. Typical use: `python -m bench run --quick`, then read results/leaderboard.md."))
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{run,compare,report,fit,data,list,budget,worlds,fidelity-curve,sweep,perf}")
    _add_run(sub)
    _add_compare(sub)
    _add_report(sub)
    _add_fit_and_data(sub)
    sub.add_parser("list", help="list the registered explainers with their metadata")
    _add_budget(sub)
    _add_worlds(sub)
    _add_fidelity_curve(sub)
    _add_sweep_and_perf(sub)
    return parser


# ---------------------------------------------------------------------------------------------- commands
def _inputs(args) -> Inputs:
    """Where the data of `data`'s flags comes from (the scale of --quick/--scale, or --data)."""
    return Inputs(scale=profile_for("quick" if args.quick else args.scale).scale, seed=args.seed, data=args.data,
                  labels=args.labels, label_key=args.label_key, markers=args.markers, min_cells=args.min_cells,
                  rna_mod=args.rna_mod, atac_mod=args.atac_mod, cache_dir=args.cache_dir,
                  guides=args.guides, guide_key=args.guide_key, guide_calls=args.guide_calls,
                  simulate=tuple(args.simulate))


def cmd_run(args) -> int:
    long = run("quick" if args.quick else args.scale, data=args.data, labels=args.labels, label_key=args.label_key,
               markers=args.markers, min_cells=args.min_cells, rna_mod=args.rna_mod, atac_mod=args.atac_mod,
               guides=args.guides, guide_key=args.guide_key, guide_calls=args.guide_calls,
               seed=args.seed, methods=args.methods, cell_types=args.cell_types, genes=args.genes,
               L=None if args.L is None else parse_ints(args.L, "--L"), seeds=args.seeds, surrogate=args.surrogate,
               surrogate_seeds=args.surrogate_seeds, device=args.device, cache_dir=args.cache_dir,
               retrain=args.retrain, force=args.force, threads=args.threads, budget_seconds=args.budget_seconds,
               scheduler=args.scheduler, out=args.out, simulate=dict(args.simulate),
               progress=not args.no_progress)
    records = long.attrs["records"]
    print("\n".join(summary_lines(records, list(dict.fromkeys(r["method"] for r in records)))))
    print("wrote " + ", ".join(str(p) for p in long.attrs["written"]))
    return 0


def cmd_compare(args) -> int:
    table = compare(*args.runs, names=args.names, out=args.out)
    print(table.attrs["markdown"])
    if args.out:
        log.info("wrote %s, %s", args.out / "compare.md", args.out / "compare.csv")
    return 0


def cmd_report(args) -> int:
    written = report(args.run_dir, out=args.out)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def cmd_fit(args) -> int:
    if args.surrogate == "truth":  # before loading anything: there is no model to fit
        print("nothing to train: --surrogate truth is the simulator's exact model (surrogates/truth.py); run it with "
              "`python -m bench run --surrogate truth`", file=sys.stderr)
        return 0
    t0 = time.perf_counter()
    fitted = fit("quick" if args.quick else args.scale, data=args.data, labels=args.labels,
                 label_key=args.label_key, markers=args.markers, min_cells=args.min_cells, rna_mod=args.rna_mod,
                 atac_mod=args.atac_mod, guides=args.guides, guide_key=args.guide_key, guide_calls=args.guide_calls,
                 seed=args.seed, surrogate=args.surrogate, simulate=dict(args.simulate),
                 device=args.device, cache_dir=args.cache_dir, retrain=args.retrain, threads=args.threads,
                 curve=None if args.curve is None else parse_ints(args.curve.split(","), "--curve"), out=args.out,
                 progress=not args.no_progress)
    print(fitted.markdown + ("" if fitted.curve is not None else "\n"))
    print(f"wrote {', '.join(str(p) for p in fitted.written)} ({time.perf_counter() - t0:.0f} s)")
    return 0


def cmd_data(args) -> int:
    """Print (and with --out write) `datasets.describe.describe` of the data, plus `data`: where it came from."""
    inputs = _inputs(args)
    data, truth, markers = load_inputs(inputs)
    try:
        summary = {"data": inputs.describe(), **describe(data, truth, markers)}
    except ValueError as exc:  # a marker table that does not fit the data
        raise UserError(str(exc)) from exc
    md = render_markdown(summary, title=f"Data: {inputs.describe()}")
    text = json.dumps(summary, indent=2)
    if args.out:
        paths = atomic_write(args.out / "data.md", md), atomic_write(args.out / "data.json", text + "\n")
        log.info("wrote %s, %s", *paths)  # stderr: stdout stays pure JSON
    print(text if args.json else md)
    return 0


def cmd_list(args) -> int:
    rows = [[s.name, s.version, s.kind, "yes" if s.is_baseline else "", "yes" if s.needs_gradients else "",
             "yes" if s.ranking else "", "synthetic only" if s.needs_truth else "",
             "yes" if s.in_default else "opt-in", f"{s.paper}" + (f" ({s.year})" if s.year else ""), s.description]
            for s in registry.specs()]
    print(tabulate(rows, headers=["name", "version", "kind", "control", "gradients", "one ranking for all L", "truth",
                                  "default", "paper", "description"], tablefmt="github"))
    print("\ncode versions (cached results are reused only from the same versions): "
          + describe_versions({k: v for k, (v, _) in COMPONENTS.items()}))
    return 0


def cmd_sweep(args) -> int:
    if args.methods:
        check_methods(args.methods)
    table = run_sweep(dims=parse_ints(args.dims, "--dims"), methods=args.methods,
                      budget=Budget(seconds=args.budget_seconds), L=args.L, out=args.out,
                      progress=not args.no_progress)
    print(table.to_string(index=False))
    return 0


def cmd_worlds(args) -> int:
    worlds("quick" if args.quick else args.scale, worlds=args.worlds, methods=args.methods, L=args.L,
           tiers=args.tiers, seed=args.seed, surrogate=args.surrogate, cell_types=args.cell_types, genes=args.genes,
           out=args.out, cache_dir=args.cache_dir, device=args.device, progress=not args.no_progress)
    print((args.out / "worlds.md").read_text())
    print(f"wrote worlds.csv, worlds.md, worlds.png, regime.csv and report.html in {args.out}")
    return 0


def cmd_budget(args) -> int:
    run_budget_curve("quick" if args.quick else args.scale, seed=args.seed, tiers=args.tiers,
                     surrogate=args.surrogate, budgets=parse_floats(args.budgets), methods=args.methods,
                     cell_types=args.cell_types, genes=args.genes, L=args.L, seconds=args.budget_seconds,
                     cache_dir=args.cache_dir, device=args.device, out=args.out, progress=not args.no_progress,
                     simulate=tuple(args.simulate))
    print((args.out / "budget_curve.md").read_text())
    print(f"wrote {args.out / 'budget_curve.csv'}, budget_curve.png and report.html in {args.out}")
    return 0


def cmd_fidelity_curve(args) -> int:
    scale = "quick" if args.quick else args.scale
    cells, reference = _counts(args.cells, "--cells"), _counts(args.reference_cells, "--reference-cells")
    depths = _counts(args.depths, "--depths")
    if not cells:
        raise UserError("--cells needs at least one cell count, e.g. 2000,5000,10000")
    if args.bootstrap < 1:
        raise UserError(f"--bootstrap must be ≥ 1, got {args.bootstrap}")
    # the --simulate changes, then every size and depth, pass the simulator's own checks before anything trains
    simulate = check_simulate(args.simulate)
    Inputs(scale=scale, simulate=simulate).simulation_scale()
    for key, values in (("n_cells", cells + reference + [args.depth_cells]), ("umi_per_cell", depths)):
        for v in values:
            Inputs(scale=scale, simulate=simulate + ((key, f"{v:g}"),)).simulation_scale()
    methods = [] if [m.lower() for m in args.methods or ()] == ["none"] else list(args.methods or TAU_METHODS)
    bad = [s for s in args.styles if s not in SURROGATE_STYLES]
    if bad or not args.styles:
        raise UserError(f"--styles takes trained surrogate styles ({', '.join(SURROGATE_STYLES)}); got "
                        f"{','.join(args.styles) or 'none'}")
    check_device(args.device)
    screens = [] if [v.lower() for v in args.screen_cells] in ([], ["none"]) else \
        parse_floats(args.screen_cells, "--screen-cells")
    if any(not np.isfinite(v) or v < 0 or v != int(v) for v in screens):
        raise UserError(f"--screen-cells takes whole numbers ≥ 0, got {','.join(args.screen_cells)}")
    extras = [] if [e.lower() for e in args.screen_extras] == ["none"] else list(args.screen_extras)
    unknown = [e for e in extras if e not in SCREEN_EXTRAS]
    if unknown:
        raise UserError(f"--screen-extras takes {', '.join(SCREEN_EXTRAS)} or none; got {','.join(unknown)}")
    if args.screen_extras != list(SCREEN_EXTRAS) and not screens:
        raise UserError("--screen-extras adds points at the largest --screen-cells; give --screen-cells too")
    sc = SCALES[scale]
    points = curve_points([int(c) for c in cells], depths, args.depth_cells, [int(c) for c in reference],
                          umi=sc.umi_per_cell, styles=args.styles)
    points = ordered(points + screen_points(screens, sc.n_cells, sc.umi_per_cell, extras))
    run_data_curve(scale, seed=args.seed, points=points, methods=methods, genes=args.genes, L=args.L,
                   n_boot=args.bootstrap, cache_dir=args.cache_dir, device=args.device, out=args.out,
                   progress=not args.no_progress, simulate=simulate)
    print((args.out / "fidelity_curve.md").read_text())
    print(f"wrote fidelity_curve.csv, fidelity_curve.md, fidelity_curve.png and run.json in {args.out}")
    return 0


def _counts(values, flag: str) -> list[float]:
    """Comma-separated positive numbers ('none' for an empty list); UserError naming the flag otherwise."""
    if [v.lower() for v in values] == ["none"]:
        return []
    numbers = parse_floats(values, flag)
    if any(v <= 0 for v in numbers):
        raise UserError(f"{flag} takes positive numbers, got {','.join(values)}")
    return numbers


def parse_floats(values, flag: str = "--budgets") -> list[float]:
    """'1e3' → 1000.0; anything else is a UserError naming the value."""
    try:
        return [float(v) for v in values]
    except ValueError:
        raise UserError(f"{flag} takes numbers such as 1e3,1e4,1e5; got {','.join(values)}") from None


def cmd_perf(args) -> int:
    if args.own_model:
        if args.methods:
            check_methods(args.methods)
        methods = args.methods or own_model.DEFAULT_METHODS
        summary = own_model.own_model_paths(args.scale, methods=methods, out=args.out,
                                            progress=not args.no_progress)
        print(summary.to_string(index=False))
        print(f"wrote {args.out / 'own_model.md'}, {args.out / 'own_model.csv'}, {args.out / 'own_model.json'}")
        return 0
    table = run_perf(args.scale, args.out, epochs=args.epochs, progress=not args.no_progress)
    print(table.to_string(index=False))
    print(f"wrote {args.out / 'perf.md'}, {args.out / 'perf.csv'}, {args.out / 'perf.json'}, {args.out / 'perf.png'}")
    return 0


COMMANDS = {"run": cmd_run, "compare": cmd_compare, "report": cmd_report, "fit": cmd_fit, "data": cmd_data,
            "list": cmd_list, "budget": cmd_budget, "worlds": cmd_worlds, "fidelity-curve": cmd_fidelity_curve,
            "sweep": cmd_sweep, "perf": cmd_perf}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        if getattr(args, "debug", False):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished jobs are cached and a rerun resumes", file=sys.stderr)
        return 130
