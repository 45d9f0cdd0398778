"""Anytime curves: every explainer at a geometric grid of model-evaluation budgets, on each tier.

The paper calls LIME, CXPlain and SAGE "failed" (too slow); a benchmark should say where each method stands at a
given effort instead. `run_budget_curve` runs every method at budgets B (default 10³…10⁶ model evaluations per job)
with its own stopping rules lifted (`anytime_params`), so that the evaluation budget is what stops it and more
budget buys more of the method's own work: more GRIDS (and GRIDS-groups) steps, shapiq-fsii coalitions, SAGE
permutations, LIME / CXPlain / Expected-Gradients cells, FIMAP steps (its warm-up spans the budget). Methods whose
whole answer costs less than B (Saliency: one pass per cell) simply finish; their point on the curve is their
natural cost. Controls use no evaluations and are drawn as lines.

The unit is the protocol's (`surrogates.protocol.CountingModel`): cells through the model's output, forward — the
same for every method whatever path it takes. Each point's x is the *measured* median evaluations of its jobs (a
method may stop before B: converged, or out of cells), y is the Avg over cell types of Rel Δ (%) on held-out test
cells with its 95 % CI (on the truth tier also % of the exact optimum). A job cut by the wall-time safety stop
(`seconds`, default 60 per job) is marked: at quick scale on 2 cores some methods cannot spend 10⁶ evaluations in
a minute, and the curve says so instead of waiting.

Outputs in `out`: budget_curve.csv (one row per tier, method, budget), budget_curve.md, budget_curve.png,
report.html and jobs.jsonl (every job, with its budget and tier). `simulate` (`--simulate KEY=VALUE`, e.g.
world=additive) changes the simulator's data as for `bench run`; run.json and the header record it.
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from bench.config import profile_for
from bench.errors import UserError
from bench.reporting.html import STYLE, png_img, text_html
from bench.reporting.report import long_table, status_summary
from bench.reporting.tables import fmt_ci, marks, render
from bench.running.pipeline import Inputs, fit_surrogate, load_inputs, run_plan, simulate_pairs
from bench.running.plan import check_methods, default_pairs, plan_run
from datasets.files import atomic_write
from methods.base import Budget
from surrogates.protocol import meta_of
from surrogates.truth import TruthModel

log = logging.getLogger("bench")

DEFAULT_BUDGETS = (1_000, 10_000, 100_000, 1_000_000)
STEP_CAP = 10 ** 7  # "no step limit of its own": the evaluation budget ends GRIDS long before this
COALITION_CAP = 2 ** 20  # likewise for shapiq-fsii's coalitions (it also stops at all 2^n of its n players)


def anytime_params(method: str, budget: int, params: dict) -> dict:
    """`params` (the profile's) with the method's own stopping rule lifted so that `budget` evaluations stop it."""
    params = dict(params)
    if method in ("grids", "grids-mean", "grids-groups"):
        params.pop("sweeps", None)
        params["steps"] = STEP_CAP
    elif method == "shapiq-fsii":  # more coalitions for its regression, until the budget ends
        params["n_coalitions"] = COALITION_CAP
    elif method == "fimap":  # its λ warm-up is a share of its steps: size the steps to the budget (64 cells a step)
        params["steps"] = max(1, int(budget) // int(params.get("batch_size", 64)))
    elif method == "lime":
        params["n_cells"] = 10 ** 6  # every training cell, until the budget ends
    elif method == "cxplain":
        params["max_cells"] = None  # the budget buys Granger cells; its U-net epochs cost no evaluations
    elif method == "sage":
        params.pop("n_permutations", None)
    elif method in ("expected-gradients", "smoothgrad", "smoothgrad-x-input", "integrated-gradients"):
        params["n_cells"] = None  # every cell, until the budget ends
    return params


def curve_profile(profile, budget: int, seconds: float, methods) -> object:
    """The profile at one budget: every method gets `budget` evaluations and the `seconds` safety stop."""
    return replace(profile, budget=Budget(seconds=float(seconds), samples=int(budget)), method_budgets={},
                   method_params={m: anytime_params(m, budget, profile.method_params.get(m, {})) for m in methods})


def curve_table(records: list[dict]) -> pd.DataFrame:
    """One row per (tier, method, budget): the Avg over cell types of Rel Δ (and % of optimum) with 95 % CIs as the
    leaderboard forms them, the median and max measured evaluations, mean seconds per job, the status summary."""
    rows = []
    frame = pd.DataFrame(records)
    for (tier, budget), part in frame.groupby(["tier", "budget"], sort=True):
        recs = part.to_dict("records")
        long = long_table(recs)
        avg = long[long["cell_type"] == "Avg"].set_index("method")
        for method, jobs in part.groupby("method", sort=False):
            evals = [r.get("evaluations") for r in jobs["info"] if isinstance(r, dict)]
            evals = np.array([e for e in evals if e is not None], dtype=float)
            a = avg.loc[method]
            rows.append({
                "tier": tier, "method": method, "budget": int(budget), "n_jobs": len(jobs),
                "evaluations_median": float(np.median(evals)) if evals.size else np.nan,
                "evaluations_max": float(evals.max()) if evals.size else np.nan,
                "seconds_per_job": float(pd.to_numeric(jobs["explain_seconds"], errors="coerce").mean()),
                "rel_delta_pct": a["rel_delta_pct"], "rel_delta_pct_ci95": a["rel_delta_pct_ci95"],
                "pct_of_optimum": a.get("pct_of_optimum", np.nan),
                "pct_of_optimum_ci95": a.get("pct_of_optimum_ci95", np.nan),
                "n_scored": int(a["n_scored"]), "status": status_summary(
                    jobs["status"], pd.Series([",".join(i.get("effort", [])) if isinstance(i, dict) else ""
                                               for i in jobs["info"]]))})
    return pd.DataFrame(rows)


def curve_markdown(table: pd.DataFrame, tablefmt: str = "github") -> str:
    """Per tier: methods × budgets, each cell the Avg Rel Δ (± 95 % CI) with status marks, then the measured
    evaluations per job (median) and seconds per job (markdown, or `tablefmt="html"` tables)."""
    out = []
    for tier, part in table.groupby("tier", sort=False):
        budgets = sorted(part["budget"].unique())
        metric = "pct_of_optimum" if tier == "truth" else "rel_delta_pct"
        label = "% of optimum ↑" if tier == "truth" else "Avg Rel Δ % ↓"
        body = []
        for method, rows in part.groupby("method", sort=False):
            rows = rows.set_index("budget")
            line = [method]
            for b in budgets:
                if b not in rows.index:
                    line.append("")
                    continue
                r = rows.loc[b]
                value = fmt_ci(r[metric], r[f"{metric}_ci95"], signed=metric == "rel_delta_pct")
                evals = r["evaluations_median"]
                line.append(f"{value}{marks(pd.Series([r['status']]), False)} "
                            f"({_evals(evals)}, {r['seconds_per_job']:.1f} s)")
            body.append(line)
        out += [f"### {'Truth tier (the simulator’s exact model)' if tier == 'truth' else 'Surrogate tier'}", "",
                render(body, [f"{label} at budget →"] + [f"{_evals(b)}" for b in budgets], tablefmt), "",
                (f"Each cell: {'% of optimum' if tier == 'truth' else 'Avg Rel Δ (%)'} ± 95 % CI over cell types, "
                 "then (measured median model evaluations per job, mean seconds per job). Marks as in the leaderboard "
                 "(ᵇ budget ended the method, ᵗ the wall-time safety stop did, ⁿ not converged, ᵉ no estimate, "
                 "ᶜ fewer cells than the method's default, ⁺ some peaks from a fallback, ᵖ no full first pass)."), ""]
    return "\n".join(out)


def _evals(n: float) -> str:
    if not np.isfinite(n):
        return "—"
    if n < 1:
        return "0"
    exp = int(np.floor(np.log10(n)))
    mant = n / 10 ** exp
    return f"10^{exp}" if abs(mant - 1) < 0.05 else f"{mant:.1f}·10^{exp}"


def plot_curves(table: pd.DataFrame) -> bytes:
    """One panel per tier: the tier's score vs measured evaluations per job (log-x), one line per method with its
    95 % CI; hollow markers where a job did not end ok with full effort; controls (no evaluations) as dashed
    horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tiers = list(dict.fromkeys(table["tier"]))
    methods = list(dict.fromkeys(table["method"]))
    palette = plt.get_cmap("tab20").colors
    colors = {m: palette[k % len(palette)] for k, m in enumerate(methods)}
    fig, axes = plt.subplots(1, len(tiers), figsize=(6.5 * len(tiers) + 2, 5), squeeze=False)
    for ax, tier in zip(axes[0], tiers):
        metric = "pct_of_optimum" if tier == "truth" else "rel_delta_pct"
        part = table[table["tier"] == tier]
        for m, rows in part.groupby("method", sort=False):
            rows = rows.sort_values("budget")
            ok = np.isfinite(rows[metric].to_numpy(dtype=float))
            if not ok.any():
                continue
            rows = rows[ok]
            if (rows["evaluations_max"].fillna(0) <= 0).all():  # a control: no model evaluations
                ax.axhline(float(rows[metric].mean()), color=colors[m], ls=":", lw=1.2, label=f"{m} (no model)")
                continue
            x = rows["evaluations_median"].clip(lower=1).to_numpy(dtype=float)
            ax.errorbar(x, rows[metric], yerr=rows[f"{metric}_ci95"], color=colors[m], lw=1.2, capsize=2,
                        marker=None, label=m)
            clean = (rows["status"] == "ok").to_numpy()
            ax.scatter(x[clean], rows[metric][clean], color=colors[m], s=18, zorder=3)
            ax.scatter(x[~clean], rows[metric][~clean], facecolors="white", edgecolors=colors[m], s=22, zorder=3)
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.set_xlabel("model evaluations per job (measured, median)")
        ax.set_ylabel("% of the exact optimum (↑)" if tier == "truth" else "Avg Rel Δ (%) on test cells (↓)")
        ax.set_title("truth tier" if tier == "truth" else "surrogate tier", fontsize=10)
        if tier != "truth":
            ax.axhline(0, color="black", lw=0.6)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - 1.8 / (6.5 * len(tiers) + 2), 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def run_budget_curve(scale: str = "quick", *, seed: int = 0, tiers=("surrogate", "truth"), surrogate: str = "paired",
                     budgets=DEFAULT_BUDGETS, methods=None, cell_types=None, genes=None, L: int = 10,
                     seconds: float = 60.0, cache_dir=None, device: str = "auto", out=None,
                     progress: bool = True, simulate=()) -> pd.DataFrame:
    """Run the anytime curves (see the module docstring); returns `curve_table`'s frame and writes the outputs to
    `out` when given. Jobs go through the result cache like a run's, so an interrupted curve resumes. `simulate`:
    `--simulate` overrides as (key, value) pairs or a dict, checked by the simulator before anything runs."""
    t0 = time.perf_counter()
    budgets = sorted({int(float(b)) for b in budgets})
    if not budgets or budgets[0] < 1:
        raise UserError(f"--budgets must be positive evaluation counts, e.g. 1e3,1e4,1e5; got {budgets}")
    bad = [t for t in tiers if t not in ("surrogate", "truth")]
    if bad or not tiers:
        raise UserError(f"--tiers must name 'surrogate' and/or 'truth', got {list(tiers)}")
    if methods:
        check_methods(methods)
    profile = profile_for(scale)
    pairs = simulate_pairs(simulate)
    inputs = Inputs(scale=profile.scale, seed=seed, cache_dir=cache_dir, simulate=pairs)
    inputs.simulation_scale()  # an unknown key or world, a value out of range: UserError before any work
    data, truth, markers = load_inputs(inputs)
    genes = list(genes) if genes else default_pairs(markers, data)
    records, surrogate_reused = [], False
    for tier in tiers:
        model = (TruthModel(truth, data.n_peaks) if tier == "truth" else
                 fit_surrogate(profile, data, surrogate, device=device, cache_dir=cache_dir, progress=progress))
        surrogate_reused |= bool(meta_of(model).get("reused"))
        base = profile.for_truth_tier() if tier == "truth" else profile
        for b in budgets:
            plan = plan_run(base, data, markers, methods=methods, cell_types=cell_types, genes=genes, Ls=[L],
                            truth_available=True)
            plan = replace(plan, profile=curve_profile(plan.profile, b, seconds, plan.methods))
            log.info("%s tier, budget %d: %d methods × %d jobs", tier, b, len(plan.methods), len(plan.pairs))
            recs = run_plan(plan, model, data, truth, "truth" if tier == "truth" else surrogate, cache_dir=cache_dir,
                            progress=progress)
            records += [{**r, "tier": tier, "budget": b} for r in recs]
    table = curve_table(records)
    if out is not None:
        write_curve(Path(out), table, records, {"scale": scale, "seed": seed, "tiers": list(tiers), "L": L,
                                                "budgets": budgets, "seconds_stop": seconds, "surrogate": surrogate,
                                                "genes": genes, "simulate": dict(pairs),
                                                "wall_seconds": round(time.perf_counter() - t0, 1),
                                                # what came from the caches: then wall_seconds is not a run time
                                                "reused": sum(bool(r.get("cached")) for r in records),
                                                "n_jobs": len(records), "surrogate_reused": surrogate_reused})
    return table


def _reuse_phrase(facts: dict) -> str:
    """' (12 of 588 jobs and the surrogate reused from the caches, so not a run time)', or '' when nothing was."""
    parts = ([f"{facts['reused']} of {facts['n_jobs']} jobs"] if facts.get("reused") else []) + (
        ["the surrogate"] if facts.get("surrogate_reused") else [])
    return f" ({' and '.join(parts)} reused from the caches, so not a run time)" if parts else ""


def write_curve(out: Path, table: pd.DataFrame, records: list[dict], facts: dict) -> list[Path]:
    """budget_curve.csv/.md/.png, jobs.jsonl, run.json and report.html in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    png = plot_curves(table)
    md = curve_markdown(table)
    changed = " ".join(f"{k}={v}" for k, v in (facts.get("simulate") or {}).items())
    header = (f"Anytime curves: {facts['scale']} scale" + (f" (--simulate {changed})" if changed else "")
              + f", seed {facts['seed']}, L = {facts['L']}, genes "
              f"{', '.join(facts['genes'])}; budgets {', '.join(_evals(b) for b in facts['budgets'])} model "
              f"evaluations per job, wall-time safety stop {facts['seconds_stop']:g} s per job; "
              f"{facts['wall_seconds']:.0f} s in all" + _reuse_phrase(facts) + ".")
    written = [atomic_write(out / "budget_curve.csv", table.to_csv(index=False)),
               atomic_write(out / "budget_curve.md", f"# Anytime curves\n\n{header}\n\n![](budget_curve.png)\n\n{md}\n"),
               atomic_write(out / "jobs.jsonl", "".join(json.dumps(r, default=str) + "\n" for r in records)),
               atomic_write(out / "run.json", json.dumps(facts, indent=1) + "\n")]
    (out / "budget_curve.png").write_bytes(png)
    written.append(out / "budget_curve.png")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Anytime curves</title><style>{STYLE}</style>"
            f"</head><body><h1>Anytime curves</h1><p class='lead'>{header}</p>"
            f"<section id='budget'><h2>Score vs model evaluations</h2>{png_img(png, 'anytime curves')}"
            f"{text_html(curve_markdown(table, 'html').replace('### ', ''))}</section></body></html>")
    written.append(atomic_write(out / "report.html", page))
    return written

