"""Leaderboard outputs: `leaderboard.md` (a headline table, then per L the detail tables and the discrimination
section), `leaderboard.csv` (long format: every job, every cell-type row, every Avg row), `headline.csv`,
`discrimination.csv`, `jobs.jsonl` (one record per job), `rel_delta_vs_L.png` and the self-contained `report.html`.

Cell-type rows average a type's marker genes (and seeds); the `Avg` row averages the cell-type rows, as in the
paper's Table 1. Every ± is `bench.scoring.metrics.INTERVAL` (a 95 % t-interval; `_ci95` columns; `_stderr` columns keep
the standard error). Direction (↓/↑) and "best" come from each metric's spec. `no_estimate` and `failed` jobs have
no numbers (shown as "—"; any metric value they carry is dropped), so averages run over the finished jobs only.

Discrimination (per L, `discrimination.csv` and in each L's section): can the table tell a method from the best
one? best = the non-control method with the best Avg Rel Δ (lowest; direction from the metric's spec); for every
method m, over the (cell type, gene) jobs both finished (replicates averaged), d = Rel Δ_m − Rel Δ_best (↓ metric:
d > 0 means m suppressed less), mean d with its 95 % t-interval, counts of jobs where m is better, tied (|d| ≤
`TIE_TOL`) or worse, the two-sided Wilcoxon signed-rank p and its Holm adjustment over the L's comparisons. On
synthetic data also Kendall τ between the methods' order by surrogate Avg Rel Δ and by oracle Avg Rel Δ over the
non-control methods (τ = 1: the surrogate ranks them as the truth does).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Collection

import numpy as np
import pandas as pd
from scipy import stats

from bench.reporting.figures import rel_delta_curves
from bench.reporting.html import report_html
from bench.reporting.replicates import selection_stability, surrogate_rank_movement
from bench.reporting.tables import MIN_FOR_INTERVAL, decimals_for, detail, fmt_ci, headline, headline_markdown, render
from bench.reporting.trust import trust_line
from bench.reporting.truth_tier import NOTE as BREAKDOWN_NOTE
from bench.reporting.truth_tier import breakdown_jobs, breakdown_table
from bench.running.machine import machine_phrase
from bench.running.versions import describe
from bench.scoring.metrics import INTERVAL, METRICS
from datasets.files import atomic_write
from methods import registry
from surrogates.checkpoint import checkpoint_name
from surrogates.model import STYLES as SURROGATE_STYLES
from surrogates.protocol import cache_key_of, meta_of

ID_COLS = ["method", "L", "cell_type", "gene", "seed"]
# the per-job columns the tables aggregate, in leaderboard.csv's column order
METRIC_COLS = ("avg_delta", "rel_delta_pct", "off_target_pct", "first_order_rel_delta_pct", "frac_on_target_chrom",
               "median_tss_distance", "oracle_rel_delta_pct", "truth_recall", "optimum_rel_delta_pct",
               "pct_of_optimum")
CONTEXT_COLS = ("seconds", "peak_rss_mb")
NO_NUMBERS = ("no_estimate", "failed")  # statuses whose jobs never show metric values
MISSING_TYPES = "missing cell types:"  # in an Avg row's status when it averages fewer cell types than the table has
# Two evaluations of the same peak set agree only to float32 rounding of the surrogate's log-predictions (~6e-7
# at ~5 log-units → 100 · 6e-7 ≈ 6e-5 points of Rel Δ %), so smaller paired differences are ties, not wins.
TIE_TOL = 1e-4
DISCRIMINATION_COLS = ["method", "L", "best_method", "mean_diff", "ci_low", "ci_high", "n_jobs", "n_better",
                       "n_tied", "n_worse", "wilcoxon_p", "holm_p"]


def run_facts(source: str, data, surrogates, style: str, profile, seconds: float, reused: int = 0,
              n_jobs: int = 0, versions: dict | None = None, peak_rss_mb: float | None = None,
              machine: dict | None = None, side_by_side: dict | None = None,
              interventional: dict | None = None) -> dict:
    """What a run's header states, as JSON-able facts (written to run.json, so `bench report` can render the
    header again without rerunning): data shape, the surrogate checkpoints by cache key (never a path: the same
    key names the same model on every machine), training, profile and budgets, wall time, reuse, peak RSS, code
    versions, and the machine (`bench.running.machine.describe_machine`)."""
    metas = [meta_of(s) or {} for s in surrogates]  # a user's protocol object may have none (`Described`)
    return {"source": source, "n_cells": int(data.n_cells), "n_peaks": int(data.n_peaks),
            "n_genes": int(data.n_genes), "style": style,
            "checkpoints": [checkpoint_name(m.get("checkpoint", "")) for m in metas],
            "surrogates_reused": sum(bool(m.get("reused")) for m in metas),  # from the cache, so not in the time
            "training": {k: metas[0][k] for k in ("epochs", "steps", "seconds", "stopped", "cis_epochs")
                         if k in metas[0]}
            if metas else {},
            "profile": profile.name, "budget_samples": int(profile.budget.samples),
            "method_budgets": {m: int(b.samples) for m, b in profile.method_budgets.items()},
            "safety_stop_s": float(profile.budget.seconds), "seconds": float(seconds), "reused": int(reused),
            "n_jobs": int(n_jobs), "peak_rss_mb": None if peak_rss_mb is None else float(peak_rss_mb),
            "versions": dict(versions or {}), **({"machine": dict(machine)} if machine else {}),
            **({"side_by_side": dict(side_by_side)} if side_by_side else {}),
            **({"interventional": dict(interventional)} if interventional else {}),
            **({"model_key": cache_key_of(surrogates[0]) or "",
                "model_class": metas[0].get("model", type(surrogates[0]).__name__)}
               if style not in SURROGATE_STYLES and surrogates else {})}


def leaderboard_header(facts: dict) -> str:
    """The paragraph on top of leaderboard.md, from `run_facts`: data, surrogate, profile and budgets, wall time,
    code versions, how to read the tables."""
    budgets = "".join(f", {m} {n:,}" for m, n in facts.get("method_budgets", {}).items())
    keys = [k for k in facts.get("checkpoints", []) if k]
    surrogate = (f"checkpoint{'s' if len(keys) > 1 else ''} {', '.join(f'`{k}`' for k in keys)} "
                 f"(cache key{'s' if len(keys) > 1 else ''})" if keys else "not cached")
    training = _training(facts.get("training", {}))
    if training and len(keys) > 1:  # the facts keep the first surrogate's training
        training = training.replace(", trained", "; the first trained", 1)
    if facts.get("surrogates_reused"):
        n = facts["surrogates_reused"]
        training += (f", {n} of {len(keys)} reused from the cache" if len(keys) > 1 else
                     ", reused from the cache") + " (its training time is not in the wall time)"
    reused, n_jobs, rss = facts.get("reused", 0), facts.get("n_jobs", 0), facts.get("peak_rss_mb")
    return (f"# GRIDS-Bench leaderboard\n\nData: {facts['source']} — {facts['n_cells']} cells × {facts['n_peaks']} "
            f"peaks × {facts['n_genes']} genes. " + _explained_model(facts, surrogate, training)
            + f" Profile `{facts['profile']}`, per-job budget "
            f"{facts['budget_samples']:,} {'surrogate' if facts['style'] in SURROGATE_STYLES else 'model'} "
            f"evaluations{budgets} "
            f"(wall-time safety stop {facts['safety_stop_s']:g} s). Metrics on held-out test cells "
            f"of each gene's cell type; ↓ = lower is better; the best non-control method of each column of the detail "
            f"tables in bold. Total wall time {facts['seconds']:.0f} s"
            + (f" on {machine_phrase(facts['machine'])}" if facts.get("machine") else "")
            + (f" ({reused} of {n_jobs} jobs reused from the result cache, so not their time)" if reused else "")
            + (f", peak RSS {rss / 1024:.1f} GiB (the main process)" if rss else "")
            + _side_by_side_phrase(facts.get("side_by_side")) + "."
            + (f" Code versions: {describe(facts['versions'])}." if facts.get("versions") else "")
            + (f" Tables rendered again from the run's records ({facts['rendered_from']})."
               if facts.get("rendered_from") else "")
            + (f"\n\n{trust_line(facts['interventional'])}" if facts.get("interventional") else ""))


def _side_by_side_phrase(side: dict | None) -> str:
    """'; jobs ran 2 at a time on 1 torch thread each, in worker processes of at most 1.9 GiB' (or nothing)."""
    if not side:
        return ""
    peak = side.get("worker_peak_rss_mb")
    threads = f"{side['threads']} torch thread{'s' if side['threads'] > 1 else ''}"
    return (f"; jobs ran {side['workers']} at a time on {threads} each"
            + (f", in worker processes of at most {peak / 1024:.1f} GiB" if peak else ""))


def _explained_model(facts: dict, surrogate: str, training: str) -> str:
    """The header's sentence naming the model the explainers explained."""
    style = facts["style"]
    if style == "truth":
        return ("Explained model: the simulator's exact expression function (the truth tier, "
                f"`{facts.get('model_key') or 'truth'}`): redundancy is real and the best closure of each L is known, "
                "so every job is also scored as a % of that optimum on the same test cells.")
    if style == "user":
        key = facts.get("model_key")
        return (f"Explained model: your model `{facts.get('model_class', 'model')}` "
                + (f"(cache key `{key}`)." if key else "(no cache key: its jobs were not cached)."))
    return f"Surrogate ({style} style): {surrogate}{training}."


def _training(meta: dict) -> str:
    """', trained 12 epochs in 150 s (early_stopping)' from a checkpoint's training facts (empty without them)."""
    if "seconds" not in meta or "stopped" not in meta:
        return ""
    n = f"{meta['epochs']} epochs" if "epochs" in meta else f"{sum(meta.get('steps', []))} steps"
    if "cis_epochs" in meta:  # the locus style: the paired base, then its cis layer
        n += f" + cis layer {meta['cis_epochs']} epochs"
    return f", trained {n} in {meta['seconds']:.0f} s ({meta['stopped']})"


def summary_lines(records: list[dict], methods) -> list[str]:
    """One line per L with every method's Avg Rel Δ (— where it has no numbers), for the terminal."""
    long = long_table(records)
    avg = long[long["cell_type"] == "Avg"].set_index(["L", "method"])
    lines = []
    for L in sorted(long["L"].unique()):
        values = {m: avg.loc[(L, m), "rel_delta_pct"] for m in methods if (L, m) in avg.index}
        parts = [f"{m} {v:+.2f}%" if v == v else f"{m} —" for m, v in values.items()]  # NaN: no estimate
        lines.append(f"L={L}: Avg Rel Δ  " + "  ".join(parts))
    return lines


def long_table(records: list[dict]) -> pd.DataFrame:
    """Per-job rows plus aggregated rows (gene='*' per cell type; cell_type='Avg' over cell types)."""
    jobs = pd.DataFrame(records)
    metric_cols = [c for c in (*METRIC_COLS, *CONTEXT_COLS) if c in jobs]
    for c in metric_cols:
        jobs[c] = pd.to_numeric(jobs[c], errors="coerce")
    replicate = ["surrogate_seed"] if "surrogate_seed" in jobs else []  # `--surrogate-seeds`: one more replicate
    jobs["effort"] = [",".join(i.get("effort", [])) if isinstance(i, dict) else ""
                      for i in jobs.get("info", pd.Series([None] * len(jobs)))]
    jobs = jobs.reindex(columns=ID_COLS + replicate + metric_cols + ["status", "effort", "error"])
    scored = [c for c in metric_cols if c not in CONTEXT_COLS]
    jobs.loc[jobs["status"].fillna("failed").isin(NO_NUMBERS), scored] = np.nan
    all_types = list(jobs["cell_type"].unique())
    # every (cell type, gene) of an L that any method ran: what "a number for every job" is counted against
    expected = {L: part[["cell_type", "gene"]].drop_duplicates() for L, part in jobs.groupby("L", sort=False)}
    rows = []
    for (method, L), part in jobs.groupby(["method", "L"], sort=False):
        per_type = []
        for ct, sub in part.groupby("cell_type", sort=False):
            row = {"method": method, "L": L, "cell_type": ct, "gene": "*", "seed": "*",
                   **dict.fromkeys(replicate, "*"),
                   "status": status_summary(sub["status"], sub["effort"]), "n_jobs": len(sub),
                   "n_genes": sub["gene"].nunique(), "n_scored": _n_scored(sub),
                   "n_expected": int((expected[L]["cell_type"] == ct).sum())}
            for c in metric_cols:  # replicates (seeds, surrogate seeds) of a gene are averaged first
                per_gene = sub.groupby("gene")[c].mean()
                row[c], row[f"{c}_stderr"] = _mean_se(per_gene)
                row[f"{c}_ci95"] = INTERVAL.fn(per_gene)[1]
            per_type.append(row)
        rows.extend(per_type)
        avg = {"method": method, "L": L, "cell_type": "Avg", "gene": "*", "seed": "*",
               **dict.fromkeys(replicate, "*"), "n_jobs": len(part),
               "n_genes": int(part[["cell_type", "gene"]].drop_duplicates().shape[0]),
               "n_scored": _n_scored(part), "n_expected": len(expected[L]),
               **_coverage(per_type, all_types, status_summary(part["status"], part["effort"]))}
        for c in metric_cols:
            type_means = pd.Series([r[c] for r in per_type])
            avg[c], avg[f"{c}_stderr"] = _mean_se(type_means)
            avg[f"{c}_ci95"] = INTERVAL.fn(type_means)[1]
        rows.append(avg)
    return pd.concat([jobs.assign(n_jobs=1, n_genes=1), pd.DataFrame(rows)], ignore_index=True)


def _n_scored(part: pd.DataFrame) -> int:
    """The (cell type, gene) jobs with a Rel Δ (replicates count once: a gene with any finished replicate)."""
    have = part[np.isfinite(pd.to_numeric(part["rel_delta_pct"], errors="coerce"))] if "rel_delta_pct" in part \
        else part.iloc[:0]
    return int(have[["cell_type", "gene"]].drop_duplicates().shape[0])


def complete(rows: pd.DataFrame) -> pd.Series:
    """Per aggregated row: whether the method has a number for every job of its L (and cell type) — the only rows
    that may be "best" (headline order, bold cells, the discrimination baseline)."""
    return rows["n_scored"].fillna(0).astype(int) >= rows["n_expected"].fillna(0).astype(int)


def _coverage(per_type: list[dict], all_types: list[str], status: str) -> dict:
    """An Avg row's `n_cell_types` (those with a Rel Δ to average) and its status, which names the cell types of
    the table it could not average (every job there failed or had no estimate, or the method never ran there)."""
    have = [r["cell_type"] for r in per_type if np.isfinite(r.get("rel_delta_pct", np.nan))]
    missing = [ct for ct in all_types if ct not in have]
    if missing:
        status = ("" if status == "ok" else status + "; ") + \
            f"{MISSING_TYPES} {', '.join(missing)} (Avg of {len(have)}/{len(all_types)})"
    return {"n_cell_types": len(have), "status": status}


def _mean_se(values: pd.Series) -> tuple[float, float]:
    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")


def status_summary(statuses: pd.Series, effort: pd.Series | None = None) -> str:
    """'ok' when every job is ok with full effort, else e.g. 'budget_exceeded 2/3, failed 1/3' followed by the
    reduced-effort flags (methods/base.py `EFFORT_FLAGS`), e.g. '; effort: fewer_cells 3/3'."""
    counts = statuses.fillna("failed").value_counts()
    n = int(counts.sum())
    text = "ok" if counts.get("ok", 0) == n else ", ".join(f"{s} {int(k)}/{n}" for s, k in counts.items() if s != "ok")
    flags = pd.Series([f for e in (effort if effort is not None else []) if isinstance(e, str) and e
                       for f in e.split(",")], dtype=object).value_counts()
    if len(flags):
        text += "; effort: " + ", ".join(f"{f} {int(k)}/{n}" for f, k in flags.items())
    return text


def control_methods(methods) -> set[str]:
    """The methods flagged as controls (`is_baseline`) in the registry; names it does not know are not controls."""
    specs = {s.name: s for s in registry.specs()}
    return {m for m in methods if m in specs and specs[m].is_baseline}


def discrimination(long: pd.DataFrame, controls: Collection[str] | None = None,
                   metric: str = "rel_delta_pct") -> pd.DataFrame:
    """Per L, each method's paired difference in `metric` to the best non-control method (columns
    `DISCRIMINATION_COLS`; one row per method with a finished job, the best's own row included).

    best = argmin (argmax for an ↑ metric) of the `Avg` rows of `long_table` over methods not in `controls`
    (default: the registry's `is_baseline` flags) that have a number for every job of that L (`complete`: a method
    whose other jobs failed or had no estimate would be compared on its easy half). Over the (cell type, gene) jobs
    where both have a value (seeds and surrogate seeds averaged first: replicates are not independent jobs),
    d_j = metric_m,j − metric_best,j; mean_diff = mean d, ci = mean ± t_{0.975, n−1} · sd(d, ddof=1) / √n (NaN
    for n < 2); n_better / n_worse count jobs where m beats / trails the best by more than `TIE_TOL`, the rest tie.
    For Rel Δ (↓) a positive mean_diff means the method suppresses less than the best."""
    hib = METRICS[metric].higher_is_better
    if hib is None:
        raise ValueError(f"metric {metric!r} has no direction, so there is no best method to compare against")
    methods = list(dict.fromkeys(long["method"]))
    controls = control_methods(methods) if controls is None else set(controls)
    jobs, avg = long[long["gene"] != "*"], long[long["cell_type"] == "Avg"]
    rows = []
    for L in sorted(long["L"].unique()):
        at_L = avg[avg["L"] == L]
        means = at_L.set_index("method")[metric]
        full = set(at_L["method"][complete(at_L)]) if "n_scored" in at_L else set(means.index)
        candidates = {m: v for m, v in means.items() if m not in controls and m in full and np.isfinite(v)}
        if not candidates:
            continue
        best = (max if hib else min)(candidates, key=candidates.get)
        # replicates (seeds, surrogate seeds) of a (cell type, gene) are averaged: they are not independent jobs
        wide = jobs[jobs["L"] == L].groupby(["cell_type", "gene", "method"])[metric].mean().unstack("method")
        part = []
        for m in (m for m in methods if m in wide):
            d = (wide[m] - wide[best]).dropna().to_numpy(dtype=float)
            if d.size:
                part.append({"method": m, "L": int(L), "best_method": best, **_paired(d, 1 if hib else -1)})
        rows += holm(part)
    return pd.DataFrame(rows, columns=DISCRIMINATION_COLS)


def holm(rows: list[dict]) -> list[dict]:
    """Add `holm_p`: Holm's step-down adjustment of the rows' `wilcoxon_p` (one family: one L's comparisons with
    the best; rows without a p-value, the best's own included, are left out of the family)."""
    tested = sorted((r["wilcoxon_p"], i) for i, r in enumerate(rows) if np.isfinite(r["wilcoxon_p"]))
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        rows[i]["holm_p"] = running
    for r in rows:
        r.setdefault("holm_p", float("nan"))
    return rows


def _paired(d: np.ndarray, better_sign: int) -> dict:
    """Mean and 95 % t-interval of the paired differences d (`INTERVAL`), the two-sided Wilcoxon signed-rank p
    (differences within TIE_TOL count as ties and are dropped; NaN when every job ties); a job is better when
    better_sign · d > TIE_TOL."""
    n = d.size
    mean, half = INTERVAL.fn(d)
    better, worse = int((better_sign * d > TIE_TOL).sum()), int((better_sign * d < -TIE_TOL).sum())
    untied = d[np.abs(d) > TIE_TOL]
    p = float(stats.wilcoxon(untied).pvalue) if untied.size else float("nan")
    return {"mean_diff": mean, "ci_low": mean - half, "ci_high": mean + half, "n_jobs": n, "n_better": better,
            "n_tied": n - better - worse, "n_worse": worse, "wilcoxon_p": p}


def surrogate_oracle_kendall(long: pd.DataFrame, controls: Collection[str] = ()) -> pd.DataFrame:
    """Per L: Kendall τ-b between the explainers' surrogate Avg Rel Δ and their oracle Avg Rel Δ (synthetic data),
    over every method with both numbers except `controls`; columns L, tau, p_value, n_methods.

    Controls are left out because they would decide τ by construction: the oracle is best on the oracle column and
    Random is near 0 on both, so they pull τ towards +1 whatever the explainers do. Both metrics are ↓, so τ on the
    values is τ on the two rankings: +1 = the surrogate orders the explainers as the truth does, −1 = reversed.
    Empty when `long` has no oracle column (real data); τ is NaN for n < 2."""
    cols = ["L", "tau", "p_value", "n_methods"]
    if "oracle_rel_delta_pct" not in long:
        return pd.DataFrame(columns=cols)
    avg = long[(long["cell_type"] == "Avg") & ~long["method"].isin(list(controls))]
    rows = []
    for L, part in avg.groupby("L"):
        both = part[np.isfinite(part["rel_delta_pct"]) & np.isfinite(part["oracle_rel_delta_pct"])]
        tau, pvalue = (stats.kendalltau(both["rel_delta_pct"], both["oracle_rel_delta_pct"]) if len(both) > 1
                       else (np.nan, np.nan))
        rows.append({"L": int(L), "tau": float(tau), "p_value": float(pvalue), "n_methods": len(both)})
    return pd.DataFrame(rows, columns=cols)


def _p(p: float) -> str:
    return "—" if not np.isfinite(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def discrimination_markdown(disc: pd.DataFrame, kendall: pd.DataFrame, L: int, controls: Collection[str],
                            metric: str = "rel_delta_pct", tablefmt: str = "github", order=None) -> list[str]:
    """Markdown lines of one L's discrimination section: the `discrimination` table, then the Kendall τ line."""
    spec = METRICS[metric]
    better, worse = ("higher", "lower") if spec.higher_is_better else ("lower", "higher")
    part = disc[disc["L"] == L]
    if order is not None:  # the headline's order
        part = part.set_index("method").reindex([m for m in order if m in set(part["method"])]).reset_index()
    lines = [f"### Discrimination at L = {L}", ""] if tablefmt == "github" else []
    if part.empty:
        lines += ["No non-control method has a finished job at this L: nothing to compare against.", ""]
    else:
        best = part["best_method"].iloc[0]
        shown = sorted(set(controls) & set(part["method"]))
        lines += [f"Paired difference in {spec.label} of each method minus the best non-control method, **{best}** "
                  f"(best Avg), over the (cell type, gene) jobs both finished (replicates averaged), with its 95 % "
                  "t-interval. "
                  f"Better / tied / worse: jobs where the method's {spec.label} is {better} / within {TIE_TOL:g} / "
                  f"{worse}." + (f" Controls ({', '.join(shown)}) are compared but never chosen as best."
                                 if shown else ""), ""]
        digits = {r.method: decimals_for((r.ci_high - r.ci_low) / 2) for r in part.itertuples()}
        body = [[f"**{r.method}** (best)" if r.method == best else r.method,
                 fmt_ci(r.mean_diff, np.nan, digits[r.method]),
                 f"[{fmt_ci(r.ci_low, np.nan, digits[r.method])}, {fmt_ci(r.ci_high, np.nan, digits[r.method])}]"
                 if np.isfinite(r.ci_low) else "—",
                 str(r.n_jobs), f"{r.n_better} / {r.n_tied} / {r.n_worse}", _p(r.wilcoxon_p), _p(r.holm_p)]
                for r in part.itertuples()]
        lines += [render(body, ["Method", f"{spec.label} − {best}", "95 % CI", "jobs", "better / tied / worse",
                                "Wilcoxon p", "Holm p"], tablefmt), "",
                  "Wilcoxon: two-sided signed-rank test of the paired differences (ties dropped); Holm: adjusted "
                  "over this L's comparisons with the best.", ""]
    for r in kendall[kendall["L"] == L].itertuples():
        value = (f"τ = {fmt_ci(r.tau, np.nan, 2)} (p = {r.p_value:.2g}, n = {r.n_methods})" if np.isfinite(r.tau)
                 else f"τ undefined (n = {r.n_methods} methods)")
        lines += [f"Kendall τ-b between the explainers' rankings by surrogate and by oracle Avg Rel Δ (every "
                  f"non-control method with both numbers): {value}.", ""]
    return lines


def runtime_table(long: pd.DataFrame, methods: list[str], tablefmt: str = "github") -> str:
    jobs = long[long["gene"] != "*"]
    body = []
    for m in methods:
        for L, sub in jobs[jobs["method"] == m].groupby("L"):
            body.append([m, L, f"{sub['seconds'].mean():.2f}", f"{sub['seconds'].max():.2f}",
                         f"{sub['peak_rss_mb'].max():.0f}" if "peak_rss_mb" in sub and sub["peak_rss_mb"].notna().any()
                         else "—", status_summary(sub["status"], sub.get("effort"))])
    return render(body, ["Method", "L", "mean s/job", "max s/job", "peak RSS MiB", "status"], tablefmt)


SMALL_N_NOTE = (f"n is the number of genes of a cell type (of cell types for Avg); a mean over fewer than "
                f"{MIN_FOR_INTERVAL} is shown without ±, since a t-interval on 1–2 degrees of freedom is wider than "
                "the differences it would qualify (leaderboard.csv keeps every interval).")
# (metric, title, note) of the per-L detail tables after Rel Δ, shown when the metric has values
DETAIL_SECTIONS = (
    ("pct_of_optimum", "% of the optimum (truth tier)", "The method's Rel Δ as a percentage of the exact best "
     "closure of at most L peaks on the same test cells (`optimum_rel_delta_pct` in leaderboard.csv): 100 = "
     "optimal, 0 = no change. The optimum is a knapsack over the gene's redundant groups, single enhancers and "
     "promoter (datasets/synthetic.py, `best_closure`), evaluated through the same model as every method."),
    ("avg_delta", "Avg Δ (normalised counts)", "Mean expression change in count space."),
    ("off_target_pct", "Specificity", "Mean |Rel Δ| of all other genes when the selected peaks are closed (eq. 2 "
     "of GRIDS penalises it)."),
    ("first_order_rel_delta_pct", "Linearity of the surrogate over the selected sets", "The Rel Δ the surrogate's "
     "first-order expansion predicts for the same closure (Σ x·∂ŷ/∂x over the selected peaks, gradients at the "
     "unperturbed cells). Where it matches the actual Rel Δ the surrogate is additive over the set, and a ranking "
     "of single peaks (input-x-gradient) can do as well as a subset search (GRIDS)."),
    ("oracle_rel_delta_pct", "Oracle Rel Δ (synthetic data)", "Change of the simulator's exact expression when the "
     "selected peaks are closed."),
    ("truth_recall", "Truth recall (synthetic data)", "Fraction of the gene's planted regulatory peaks (promoter, "
     "redundant groups, additive enhancers) that were selected."),
    ("frac_on_target_chrom", "On the gene's chromosome", "Fraction of the selected peaks on the gene's chromosome "
     "(context, not a score)."),
    ("median_tss_distance", "Distance to the TSS", "Per job, the median distance of the selected peaks on the "
     "gene's chromosome to its TSS; per cell type the median over its genes, and in the last column the median "
     "over every gene with the interquartile range: distances are skewed, so no mean ± (context, not a score); the "
     "`nearest-tss` control shows what closing the nearest open peaks alone achieves."),
)


def report_data(records: list[dict], methods: list[str]) -> dict:
    """What the reports show, computed once: {'long', 'agg', 'headline' (DataFrame), 'Ls', 'order', 'controls',
    'disc', 'kendall', 'movement', 'failed'}. `report_sections` renders it as markdown or HTML."""
    long = long_table(records)
    agg = long[long["gene"] == "*"]
    controls = control_methods(long["method"].unique())
    head = headline(agg, controls, selection_stability(records), jobs=long[long["gene"] != "*"])
    order = [m for m in head["method"] if m in set(methods)] + [m for m in head["method"] if m not in set(methods)]
    failed = long[(long["gene"] != "*") & (long["status"] == "failed")]
    return {"long": long, "agg": agg, "headline": head, "Ls": sorted(int(L) for L in long["L"].unique()),
            "truth_jobs": breakdown_jobs(records),
            "order": order, "controls": controls, "disc": discrimination(long, controls),
            # on the truth model its own Rel Δ is the oracle's: a τ between them would say nothing
            "kendall": surrogate_oracle_kendall(long if "pct_of_optimum" not in long else long.iloc[:0], controls),
            "movement": surrogate_rank_movement(long, controls),
            "failed": [f"{r.method} {r.cell_type}/{r.gene} L={r.L} seed={r.seed}: {r.error}"
                       for r in failed.itertuples()]}


def report_sections(data: dict, tablefmt: str = "github") -> dict:
    """`report_data` rendered in `tablefmt`: {'headline_table', 'per_L': {L: [(title, note, table)]}, 'movement',
    'runtime', 'failed'}."""
    long, order, controls = data["long"], data["order"], frozenset(data["controls"])
    per_L = {}
    for L in data["Ls"]:
        sections = [("Rel Δ (%) by cell type", INTERVAL.description + " " + SMALL_N_NOTE,
                     detail(long, L, "rel_delta_pct", order, tablefmt, controls)),
                    ("Discrimination", "", "\n".join(discrimination_markdown(data["disc"], data["kendall"], L, controls,
                                                                              tablefmt=tablefmt, order=order)))]
        sections += [(title, note, detail(long, L, metric, order, tablefmt, controls))
                     for metric, title, note in DETAIL_SECTIONS if metric in long and long[metric].notna().any()]
        made_of = breakdown_table(data.get("truth_jobs", pd.DataFrame()), L, order, tablefmt)
        if made_of:
            sections.insert(3, ("What the closures were made of (truth tier)", BREAKDOWN_NOTE, made_of))
        per_L[L] = sections
    movement = data["movement"]
    return {"movement": _movement_table(movement, tablefmt) if len(movement) else "",
            "headline_table": headline_markdown(data["headline"], tablefmt), "per_L": per_L,
            "runtime": runtime_table(long, order, tablefmt), "failed": data["failed"]}


def _movement_table(movement: pd.DataFrame, tablefmt: str) -> str:
    lines = ["Each surrogate (seeds 0..N−1) ranks the methods by its own Avg Rel Δ; rank range over the surrogates "
             "and the mean Kendall τ-b between their rankings (1 = every surrogate ranks the methods alike).", ""]
    for L, part in movement.groupby("L"):
        body = [[r.method, f"{r.rank_min}–{r.rank_max}" if r.rank_min != r.rank_max else str(r.rank_min)]
                for r in part.sort_values(["rank_min", "rank_max"]).itertuples()]
        lines += [f"L = {L}: mean τ = {part['mean_tau'].iloc[0]:+.2f}", "", render(body, ["Method", "rank"], tablefmt),
                  ""]
    return "\n".join(lines)


def leaderboard_markdown(header: str, sec: dict) -> str:
    md = [header, "", "## Headline", "", sec["headline_table"], ""]
    if sec["movement"]:
        md += ["## Between surrogates", "", sec["movement"]]
    for L, sections in sec["per_L"].items():
        md += [f"## L = {L}", ""]
        for title, note, table in sections:
            if title == "Discrimination":
                md += [table]
                continue
            md += [f"### {title} at L = {L}", ""] + ([note, ""] if note else []) + [table, ""]
    md += ["## Runtime and status", "", sec["runtime"], ""]
    if sec["failed"]:
        md += ["## Failed jobs", ""] + [f"- {line}" for line in sec["failed"]] + [""]
    return "\n".join(md)


RUN_FILE = "run.json"  # the header's facts and report.html's context, so `bench report` can render a run again


def write_report(records: list[dict], out: Path, facts: dict, methods: list[str], figure: bool = True,
                 context: dict | None = None, jobs_name: str = "jobs.jsonl") -> list[Path]:
    """Write leaderboard.md/.csv, headline.csv, discrimination.csv, jobs.jsonl, run.json and, with `figure`,
    rel_delta_vs_L.png, the surrogate's fidelity.png (when `context` has one) and the self-contained report.html.
    `facts` are `run_facts`; `context` may hold `fidelity_png` (bytes), `fidelity_summary` and `config`;
    `jobs_name` ending in .gz writes the records gzipped (as the committed examples keep them)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    context = dict(context or {})
    data = report_data(records, methods)
    header = leaderboard_header(facts)
    jobs = "".join(json.dumps(r, default=str) + "\n" for r in records)
    saved = {"facts": facts, "methods": list(methods),
             "context": {k: v for k, v in context.items() if k != "fidelity_png"}}
    written = [atomic_write(out / "leaderboard.md", leaderboard_markdown(header, report_sections(data))),
               atomic_write(out / "leaderboard.csv", data["long"].to_csv(index=False)),
               atomic_write(out / "headline.csv", data["headline"].to_csv(index=False)),
               atomic_write(out / "discrimination.csv", data["disc"].to_csv(index=False)),
               atomic_write(out / jobs_name, gzip.compress(jobs.encode(), 9, mtime=0) if jobs_name.endswith(".gz")
                            else jobs),
               atomic_write(out / RUN_FILE, json.dumps(saved, indent=1, default=str) + "\n")]
    if figure:
        png = rel_delta_curves(data["agg"], data["order"])
        written.append(atomic_write(out / "rel_delta_vs_L.png", png))
        if context.get("fidelity_png"):
            written.append(atomic_write(out / "fidelity.png", context["fidelity_png"]))
        html = report_html(header, report_sections(data, "html"), png, context)
        written.append(atomic_write(out / "report.html", html))
    return written


def read_records(path: Path) -> list[dict]:
    """The job records of a run's jobs.jsonl, or jobs.jsonl.gz as the committed examples keep them."""
    path = Path(path)
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def rerender(run_dir: Path, out: Path | None = None) -> list[Path]:
    """Render a finished run's files again from its jobs.jsonl (or jobs.jsonl.gz, as the committed examples keep
    it, and then written back the same way) and run.json (and fidelity.png when present) with the current report
    code, into `out` (default: the run's own folder). No job runs; the header keeps the run's measured wall time
    and memory. A folder without those files raises FileNotFoundError naming what is missing."""
    run_dir = Path(run_dir)
    jobs = next((run_dir / n for n in ("jobs.jsonl", "jobs.jsonl.gz") if (run_dir / n).is_file()), None)
    missing = (["jobs.jsonl"] if jobs is None else []) + ([RUN_FILE] if not (run_dir / RUN_FILE).is_file() else [])
    if missing:
        raise FileNotFoundError(f"{run_dir} has no {' or '.join(missing)}; `bench report` renders a folder that "
                                "`bench run --out` wrote (runs before run.json existed cannot be rendered again)")
    records = read_records(jobs)
    saved = json.loads((run_dir / RUN_FILE).read_text())
    context = dict(saved.get("context", {}))
    if (run_dir / "fidelity.png").is_file():
        context["fidelity_png"] = (run_dir / "fidelity.png").read_bytes()
    return write_report(records, Path(out) if out is not None else run_dir, saved["facts"], saved["methods"],
                        context=context, jobs_name=jobs.name)
