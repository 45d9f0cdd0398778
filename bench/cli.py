"""Command line: `python -m bench {run,fit,list,sweep}`.

User mistakes (unknown method/gene/cell type, bad L, unreadable files) print one `error: ...` line and exit 2,
before anything is written; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

from bench.config import DEFAULT_SURROGATE, PAPER_LS, PROFILES, Budget, RunConfig

log = logging.getLogger("bench")


class UserError(Exception):
    """A mistake in the command line or the input files; printed as one line, exit code 2."""


# ---------------------------------------------------------------------------------------------- argument parsing
def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


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
    p.add_argument("--seed", type=int, default=0, help="seed of the simulator and the train/val/test split")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="torch device; auto uses a GPU when present (default: auto)")
    p.add_argument("--cache-dir", metavar="DIR", help="cache for data, checkpoints and job results "
                   "(default: $GRIDS_BENCH_CACHE or ~/.cache/grids-bench)")
    p.add_argument("--retrain", action="store_true", help="train a new surrogate even if a checkpoint exists")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")


def _add_surrogate_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--surrogate", choices=("paired", "reference"), default=DEFAULT_SURROGATE,
                   help="how the surrogate is trained: 'paired' (all losses at once, with the paired ATAC→RNA "
                        "prediction loss) or 'reference' (the released reference code: autoencoders first, then "
                        "unpaired cell-type-level alignment of gated affine cross-maps, no paired loss) "
                        "(default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(
        "GRIDS-Bench: benchmark global feature-importance explainers on a single-cell multiome ATAC→RNA "
        "surrogate. Typical use: `python -m bench run --quick`, then read results/leaderboard.md."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,fit,data,list,sweep,perf}")

    run = sub.add_parser("run", help="run the benchmark and write the leaderboard",
                         description="Explain every (method × cell type × marker gene × L × seed) and score it "
                                     "with Avg Δ and Rel Δ on held-out cells. Finished jobs are cached and reused.")
    _add_data_args(run)
    _add_surrogate_arg(run)
    run.add_argument("--methods", type=_csv, help="comma-separated method names (default: every registered "
                     "method except opt-in variants such as grids-mean; see `list`)")
    run.add_argument("--cell-types", type=_csv, help="comma-separated cell types (default: the paper's 7)")
    run.add_argument("--genes", type=_csv, help="comma-separated genes (default: each cell type's markers)")
    run.add_argument("--L", type=_csv, default=[str(L) for L in PAPER_LS],
                     help="comma-separated subset sizes (default: 10,128)")
    run.add_argument("--seeds", type=int, default=1, help="number of seeds per job, 0..N-1 (default: 1)")
    run.add_argument("--out", type=Path, default=Path("results"), help="output folder (default: results/)")
    run.add_argument("--budget-seconds", type=float, help="wall-time budget per job (default: from the profile)")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="run jobs on dask.distributed: a scheduler address, or 'local' for a LocalCluster")

    fit = sub.add_parser("fit", help="train (or reuse) the surrogate and print its fidelity report")
    _add_data_args(fit)
    _add_surrogate_arg(fit)
    fit.add_argument("--out", type=Path, default=Path("results"),
                     help="where fidelity.md/.csv/.json/.png (and interventional.csv on synthetic data) go")

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

    sub.add_parser("list", help="list the registered explainers with their metadata")

    sweep = sub.add_parser("sweep", help="run every method at increasing numbers of peaks under one budget")
    sweep.add_argument("--dims", type=_csv, default=["2000", "10000", "127219"],
                       help="numbers of peaks (default: 2000,10000,127219)")
    sweep.add_argument("--methods", type=_csv, help="methods (default: all)")
    sweep.add_argument("--budget-seconds", type=float, default=120.0, help="per-job budget (default: 120)")
    sweep.add_argument("--L", type=int, default=10, help="subset size (default: 10)")
    sweep.add_argument("--out", type=Path, default=Path("results") / "sweep", help="output folder")
    sweep.add_argument("--no-progress", action="store_true")
    sweep.add_argument("--debug", action="store_true")
    perf = sub.add_parser("perf", help="time data generation, a training epoch and the sparse kernels at a scale")
    perf.add_argument("--scale", choices=("tiny", "quick", "default", "paper"), default="paper",
                      help="data scale (default: paper)")
    perf.add_argument("--epochs", type=int, default=1, help="training epochs to time (default: 1)")
    perf.add_argument("--out", type=Path, default=Path("results") / "perf", help="output folder")
    perf.add_argument("--no-progress", action="store_true")
    perf.add_argument("--debug", action="store_true")
    return parser


# ---------------------------------------------------------------------------------------------- commands
def _profile(args):
    return PROFILES["quick" if args.quick else args.scale]


def _load_data(args, profile):
    """(data, truth or None, marker table) for the run; user-facing errors become UserError."""
    from datasets.markers import PAPER_MARKERS, read_marker_table

    try:
        markers = read_marker_table(args.markers) if args.markers else PAPER_MARKERS
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    if args.data:
        from datasets.loaders import InputError, load_multiome

        try:
            data = load_multiome(args.data, label_key=args.label_key, labels_csv=args.labels, markers=markers,
                                 min_cells_per_type=args.min_cells, split_seed=args.seed, rna_mod=args.rna_mod,
                                 atac_mod=args.atac_mod, cache_dir=_cache_sub(args, None), report=log.info)
        except InputError as exc:
            raise UserError(str(exc)) from exc
        return data, None, markers
    if args.labels or args.label_key:
        raise UserError("--labels/--label-key need --data (the synthetic data carries its own labels)")
    from datasets.synthetic import simulate

    t0 = time.perf_counter()
    data, truth = simulate(profile.scale, seed=args.seed)
    log.info("synthetic data (%s scale): %r in %.1fs", profile.scale, data, time.perf_counter() - t0)
    return data, truth, markers


def _cache_sub(args, name):
    from surrogates.checkpoint import cache_root

    root = cache_root(args.cache_dir)
    return root if name is None else root / name


def _surrogate(args, profile, data):
    from surrogates.checkpoint import fit_or_load

    try:
        return fit_or_load(data, profile.surrogate_config(args.surrogate), device=args.device, cache_dir=args.cache_dir,
                           retrain=args.retrain, progress=not args.no_progress)
    except ValueError as exc:
        if "--device" in str(exc):
            raise UserError(str(exc)) from exc
        raise


def check_methods(names) -> None:
    """UserError naming the unknown methods and listing the registered ones."""
    from methods import registry

    unknown = [m for m in names if m not in registry.available()]
    if unknown:
        raise UserError(f"unknown method(s) {unknown}; available: {', '.join(registry.available())} "
                        "(see `python -m bench list`)")


def resolve_run(args, data, markers, truth_available: bool = False) -> RunConfig:
    """Validate the run's selections against the registry and the data; raises UserError."""
    from methods import registry

    profile = _profile(args)
    methods = args.methods or registry.default_methods(truth_available)
    check_methods(methods)
    blind = [m for m in methods if registry.get(m).needs_truth and not truth_available]
    if blind:
        raise UserError(f"method(s) {blind} read the simulator's truth and run on the synthetic data only; "
                        "drop them from --methods when using --data")
    try:
        Ls = tuple(int(L) for L in args.L)
    except ValueError:
        raise UserError(f"--L takes comma-separated integers, got {','.join(args.L)!r}") from None
    bad = [L for L in Ls if L <= 0 or L > data.n_peaks]
    if bad:
        raise UserError(f"L must be between 1 and the number of peaks ({data.n_peaks}); got {bad}")
    if args.seeds < 1:
        raise UserError(f"--seeds must be ≥ 1, got {args.seeds}")
    evaluable = {ct: genes for ct, genes in markers.items() if ct in data.cell_types}
    cell_types = args.cell_types or list(evaluable)
    unknown = [c for c in cell_types if c not in data.cell_types]
    if unknown:
        raise UserError(f"unknown cell type(s) {unknown}; the data has {data.cell_types}")
    if args.genes:
        missing = [g for g in args.genes if g not in data.genes.index]
        if missing:
            raise UserError(f"gene(s) {missing} are not in the data's {data.n_genes} genes")
        pairs = [(ct, g) for ct in cell_types for g in evaluable.get(ct, ()) if g in args.genes]
        unpaired = [g for g in args.genes if all(g != pg for _, pg in pairs)]
        pairs += [(ct, g) for g in unpaired for ct in cell_types]  # explicit request: explain in every chosen type
    else:
        pairs = [(ct, g) for ct in cell_types for g in evaluable.get(ct, ())]
        absent = sorted({g for _, g in pairs if g not in data.genes.index})
        if absent:
            raise UserError(f"marker gene(s) {absent} are not in the data; pass --markers FILE or --genes")
    if not pairs:
        raise UserError(f"no (cell type, gene) pairs to evaluate for cell types {cell_types}; give --genes or "
                        "--markers")
    if args.budget_seconds is not None:  # one budget for every method, replacing the profile's
        profile = replace(profile, budget=Budget(args.budget_seconds, profile.budget.samples), method_budgets={})
    return RunConfig(profile=profile,
                     methods=tuple(methods), pairs=tuple(pairs), Ls=Ls, seeds=tuple(range(args.seeds)),
                     out=args.out, device=args.device, scheduler=args.scheduler, data=args.data,
                     cache_dir=args.cache_dir, progress=not args.no_progress)


def cmd_run(args) -> int:
    from bench.harness import ResultCache, make_jobs, run_grid
    from bench.report import write_report
    from surrogates.checkpoint import checkpoint_key

    profile = _profile(args)
    if args.methods:  # fail fast on typos, before data and training
        check_methods(args.methods)
    data, truth, markers = _load_data(args, profile)
    cfg = resolve_run(args, data, markers, truth_available=truth is not None)
    t0 = time.perf_counter()
    surrogate = _surrogate(args, profile, data)
    jobs = make_jobs(cfg.methods, cfg.pairs, cfg.Ls, cfg.seeds)
    log.info("%d jobs: %d methods × %d (cell type, gene) × L %s × %d seed(s)", len(jobs), len(cfg.methods),
             len(cfg.pairs), list(cfg.Ls), len(cfg.seeds))
    context = {"data": data.fingerprint(), "surrogate": checkpoint_key(data, profile.surrogate_config(args.surrogate))}
    cache = ResultCache(_cache_sub(args, "jobs"))
    records = run_grid(jobs, profile.method_params, cfg.profile.budget_for, surrogate, data, truth, cache, context,
                       scheduler=cfg.scheduler, progress=cfg.progress)
    header = (f"# GRIDS-Bench leaderboard\n\nData: {args.data or f'synthetic ({profile.scale} scale, seed {args.seed})'}"
              f" — {data.n_cells} cells × {data.n_peaks} peaks × {data.n_genes} genes. Surrogate ({args.surrogate} "
              f"style): {surrogate.meta.get('checkpoint', '')}. Profile `{profile.name}`, per-job budget "
              f"{cfg.profile.budget.seconds:g} s"
              + "".join(f", {m} {b.seconds:g} s" for m, b in cfg.profile.method_budgets.items())
              + ". Metrics on held-out test cells of each gene's cell type; ↓ = lower is better; best per row in "
              f"bold. Total wall time {time.perf_counter() - t0:.0f} s.")
    paths = write_report(records, cfg.out, header, list(cfg.methods))
    _print_summary(records, cfg.methods)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _print_summary(records, methods) -> None:
    from bench.report import long_table

    long = long_table(records)
    avg = long[long["cell_type"] == "Avg"].set_index(["L", "method"])
    for L in sorted(long["L"].unique()):
        values = {m: avg.loc[(L, m), "rel_delta_pct"] for m in methods if (L, m) in avg.index}
        parts = [f"{m} {v:+.2f}%" if v == v else f"{m} —" for m, v in values.items()]  # NaN: no estimate
        print(f"L={L}: Avg Rel Δ  " + "  ".join(parts))


def cmd_fit(args) -> int:
    import json

    from surrogates.fidelity import fidelity_report, plot_fidelity

    profile = _profile(args)
    data, truth, markers = _load_data(args, profile)
    t0 = time.perf_counter()
    model = _surrogate(args, profile, data)
    genes = [g for ct, gs in markers.items() if ct in data.cell_types for g in gs if g in data.genes.index]
    report = fidelity_report(model, data, list(dict.fromkeys(genes)))
    args.out.mkdir(parents=True, exist_ok=True)
    table = report.table.pivot(index="gene", columns="cell_type", values=["observed", "predicted"])
    (args.out / "fidelity.csv").write_text(report.table.to_csv(index=False))
    from tabulate import tabulate

    lines = [f"# Surrogate fidelity ({data.n_cells} cells × {data.n_peaks} peaks × {data.n_genes} genes)", "",
             f"Style: {args.surrogate}. Checkpoint: {model.meta.get('checkpoint')} (reused: {model.meta.get('reused')}); "
             f"training: {model.meta.get('epochs', model.meta.get('steps'))} ({model.meta.get('stopped')}, "
             f"{model.meta.get('seconds', float('nan')):.0f} s); "
             f"val MSE: {model.meta.get('best_val_mse', float('nan')):.4f}", "", report.summary(), "",
             "Mean log-expression per cell type on test cells, observed → predicted:", ""]
    rows = []
    for gene in table.index:
        r2 = report.per_gene_r2[gene]
        rows.append([gene, f"{r2:.3f}"] + [f"{table.loc[gene, ('observed', ct)]:.2f} → "
                                            f"{table.loc[gene, ('predicted', ct)]:.2f}"
                                            for ct in table["observed"].columns])
    lines.append(tabulate(rows, headers=["gene", "R²"] + list(table["observed"].columns), tablefmt="github",
                          disable_numparse=True))
    summary = {"surrogate": args.surrogate, "marker_r2": report.marker_r2, "pooled_marker_r2": report.pooled_r2,
               "all_genes_r2": report.all_genes_r2, "training_seconds": model.meta.get("seconds"),
               "reused": model.meta.get("reused")}
    written = [args.out / "fidelity.md", args.out / "fidelity.csv", args.out / "fidelity.json",
               args.out / "fidelity.png"]
    if truth is not None:
        from bench.interventional import interventional_fidelity, interventional_markdown

        pairs = [(ct, g) for ct, gs in markers.items() if ct in data.cell_types for g in gs if g in truth.genes]
        inter = interventional_fidelity(model, data, truth, pairs, seed=args.seed)
        summary.update(inter.summary())
        lines += ["", interventional_markdown(inter)]
        inter.table.drop(columns="members").to_csv(args.out / "interventional.csv", index=False)
        written.append(args.out / "interventional.csv")
    md = "\n".join(lines) + "\n"
    (args.out / "fidelity.md").write_text(md)
    (args.out / "fidelity.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_fidelity(report, args.out / "fidelity.png")
    print(md)
    print(f"wrote {', '.join(str(p) for p in written)} ({time.perf_counter() - t0:.0f} s)")
    return 0


def cmd_data(args) -> int:
    """Print (and with --out write) `datasets.describe.describe` of the data, plus `data`: where it came from."""
    import json

    from datasets.describe import describe, render_markdown

    profile = _profile(args)
    data, truth, markers = _load_data(args, profile)
    source = args.data or f"synthetic ({profile.scale} scale, seed {args.seed})"
    try:
        summary = {"data": source, **describe(data, truth, markers)}
    except ValueError as exc:  # a marker table that does not fit the data
        raise UserError(str(exc)) from exc
    md = render_markdown(summary, title=f"Data: {source}")
    text = json.dumps(summary, indent=2)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "data.md").write_text(md)
        (args.out / "data.json").write_text(text + "\n")
        log.info("wrote %s, %s", args.out / "data.md", args.out / "data.json")  # stderr: stdout stays pure JSON
    print(text if args.json else md)
    return 0


def cmd_list(args) -> int:
    from tabulate import tabulate

    from methods import registry

    rows = [[s.name, s.kind, "yes" if s.is_baseline else "", "yes" if s.needs_gradients else "",
             "yes" if s.ranking else "", "synthetic only" if s.needs_truth else "",
             "yes" if s.in_default else "opt-in", f"{s.paper}" + (f" ({s.year})" if s.year else ""), s.description]
            for s in registry.specs()]
    print(tabulate(rows, headers=["name", "kind", "control", "gradients", "one ranking for all L", "truth",
                                  "default", "paper", "description"], tablefmt="github"))
    return 0


def cmd_sweep(args) -> int:
    from bench.sweep import run_sweep

    if args.methods:
        check_methods(args.methods)
    try:
        dims = tuple(int(d) for d in args.dims)
    except ValueError:
        raise UserError(f"--dims takes comma-separated integers, got {args.dims}") from None
    table = run_sweep(dims=dims, methods=args.methods, budget=Budget(seconds=args.budget_seconds), L=args.L,
                      out=args.out, progress=not args.no_progress)
    print(table.to_string(index=False))
    return 0


def cmd_perf(args) -> int:
    from bench.perf import run_perf

    table = run_perf(args.scale, args.out, epochs=args.epochs, progress=not args.no_progress)
    print(table.to_string(index=False))
    print(f"wrote {args.out / 'perf.md'}, {args.out / 'perf.csv'}, {args.out / 'perf.png'}")
    return 0


COMMANDS = {"run": cmd_run, "fit": cmd_fit, "data": cmd_data, "list": cmd_list, "sweep": cmd_sweep,
            "perf": cmd_perf}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    debug = getattr(args, "debug", False)
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished jobs are cached and a rerun resumes", file=sys.stderr)
        return 130
