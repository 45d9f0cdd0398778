"""Leaderboard outputs: `leaderboard.md` (Table-1 style, one table per L, each followed by its discrimination
section), `leaderboard.csv` (long format), `discrimination.csv`, `jobs.jsonl` (one record per job), `report.html`
and `rel_delta.png`.

Cell-type rows average a type's marker genes (and seeds); the `Avg` row averages the cell-type rows, as in the
paper's Table 1. ± is the standard error of that mean. Direction (↓/↑) and "best" come from each metric's spec.
A cell whose jobs did not all finish `ok` carries its status counts. `no_estimate` and `failed` jobs have no
numbers (shown as "—"; any metric value they carry is dropped), so averages run over the finished jobs only.

Discrimination (per L, `discrimination.csv` and under each leaderboard table): can the table tell a method from
the best one? best = the non-control method with the best Avg Rel Δ (lowest; direction from the metric's spec);
for every method m, over the (cell type, gene, seed) jobs both finished, d = Rel Δ_m − Rel Δ_best (↓ metric:
d > 0 means m suppressed less), mean d ± t_{0.975, n−1} · sd(d) / √n, and counts of jobs where m is better, tied
(|d| ≤ `TIE_TOL`) or worse. On synthetic data also Kendall τ between the methods' order by surrogate Avg Rel Δ
and by oracle Avg Rel Δ over the non-control methods (τ = 1: the surrogate ranks them as the truth does).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Collection

import numpy as np
import pandas as pd
from scipy import stats
from tabulate import tabulate

from bench.metrics import METRICS
from datasets.files import atomic_write

ID_COLS = ["method", "L", "cell_type", "gene", "seed"]
LEADERBOARD_METRICS = ("avg_delta", "rel_delta_pct")
TRUTH_METRICS = ("oracle_rel_delta_pct", "truth_recall")
SPECIFICITY_METRICS = ("off_target_pct",)
LINEARITY_METRICS = ("rel_delta_pct", "first_order_rel_delta_pct")
GENOMIC_METRICS = ("frac_on_target_chrom", "median_tss_distance")
DIGITS = {"avg_delta": 3, "truth_recall": 3, "frac_on_target_chrom": 3, "median_tss_distance": 0}
CONTEXT_COLS = ("seconds", "peak_rss_mb")
NO_NUMBERS = ("no_estimate", "failed")  # statuses whose jobs never show metric values
# Two evaluations of the same peak set agree only to float32 rounding of the surrogate's log-predictions (~6e-7
# at ~5 log-units → 100 · 6e-7 ≈ 6e-5 points of Rel Δ %), so smaller paired differences are ties, not wins.
TIE_TOL = 1e-4
DISCRIMINATION_COLS = ["method", "L", "best_method", "mean_diff", "ci_low", "ci_high", "n_jobs", "n_better",
                       "n_tied", "n_worse"]


def leaderboard_header(source: str, data, surrogate, style: str, profile, seconds: float) -> str:
    """The paragraph on top of leaderboard.md: data, surrogate, profile and budgets, how to read the tables."""
    budgets = "".join(f", {m} {b.seconds:g} s" for m, b in profile.method_budgets.items())
    return (f"# GRIDS-Bench leaderboard\n\nData: {source} — {data.n_cells} cells × {data.n_peaks} peaks × "
            f"{data.n_genes} genes. Surrogate ({style} style): {surrogate.meta.get('checkpoint', '')}. Profile "
            f"`{profile.name}`, per-job budget {profile.budget.seconds:g} s{budgets}. Metrics on held-out test cells "
            f"of each gene's cell type; ↓ = lower is better; best per row in bold. Total wall time {seconds:.0f} s.")


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
    metric_cols = [c for c in (*LEADERBOARD_METRICS, *SPECIFICITY_METRICS, *LINEARITY_METRICS[1:], *GENOMIC_METRICS,
                               *TRUTH_METRICS, *CONTEXT_COLS) if c in jobs]
    for c in metric_cols:
        jobs[c] = pd.to_numeric(jobs[c], errors="coerce")
    jobs = jobs.reindex(columns=ID_COLS + metric_cols + ["status", "error"])
    scored = [c for c in metric_cols if c not in CONTEXT_COLS]
    jobs.loc[jobs["status"].fillna("failed").isin(NO_NUMBERS), scored] = np.nan
    rows = []
    for (method, L), part in jobs.groupby(["method", "L"], sort=False):
        per_type = []
        for ct, sub in part.groupby("cell_type", sort=False):
            row = {"method": method, "L": L, "cell_type": ct, "gene": "*", "seed": "*",
                   "status": status_summary(sub["status"]), "n_jobs": len(sub)}
            for c in metric_cols:
                row[c], row[f"{c}_stderr"] = _mean_se(sub[c])
            per_type.append(row)
        rows.extend(per_type)
        avg = {"method": method, "L": L, "cell_type": "Avg", "gene": "*", "seed": "*",
               "status": status_summary(part["status"]), "n_jobs": len(part)}
        for c in metric_cols:
            avg[c], avg[f"{c}_stderr"] = _mean_se(pd.Series([r[c] for r in per_type]))
        rows.append(avg)
    return pd.concat([jobs.assign(n_jobs=1), pd.DataFrame(rows)], ignore_index=True)


def _mean_se(values: pd.Series) -> tuple[float, float]:
    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")


def status_summary(statuses: pd.Series) -> str:
    """'ok' when every job is ok, else e.g. 'budget_exceeded 2/3, failed 1/3'."""
    counts = statuses.fillna("failed").value_counts()
    n = int(counts.sum())
    if counts.get("ok", 0) == n:
        return "ok"
    return ", ".join(f"{s} {int(k)}/{n}" for s, k in counts.items() if s != "ok")


def _fmt(mean: float, se: float, digits: int) -> str:
    if not np.isfinite(mean):
        return "—"
    s = f"{mean:+.{digits}f}".replace("-", "−")
    return s + (f" ± {se:.{digits}f}" if np.isfinite(se) else "")


def metric_table(agg: pd.DataFrame, L: int, metrics: tuple[str, ...], methods: list[str]) -> str:
    """Markdown: rows = cell types + Avg, columns = method × metric, best per row and metric in bold."""
    part = agg[agg["L"] == L]
    cell_types = [c for c in part["cell_type"].unique() if c != "Avg"] + ["Avg"]
    headers = ["Cell type"] + [f"{m} {METRICS[k].label} {METRICS[k].arrow}" for m in methods for k in metrics]
    body = []
    for ct in cell_types:
        rows = {r["method"]: r for _, r in part[part["cell_type"] == ct].iterrows()}
        best = {k: _best(rows, k) for k in metrics}
        line = [f"**{ct}**" if ct == "Avg" else ct]
        for m in methods:
            for k in metrics:
                r = rows.get(m)
                if r is None:
                    line.append("")
                    continue
                digits = DIGITS.get(k, 2)
                cell = _fmt(r[k], r.get(f"{k}_stderr", np.nan), digits)
                if best[k] == m:
                    cell = f"**{cell}**"
                if r["status"] != "ok":
                    cell += f" ({r['status']})"
                line.append(cell)
        body.append(line)
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def _best(rows: dict, key: str) -> str | None:
    hib = METRICS[key].higher_is_better
    vals = {m: r[key] for m, r in rows.items() if np.isfinite(r[key])}
    if hib is None or not vals:
        return None
    return (max if hib else min)(vals, key=vals.get)


def control_methods(methods) -> set[str]:
    """The methods flagged as controls (`is_baseline`) in the registry; names it does not know are not controls."""
    from methods import registry

    specs = {s.name: s for s in registry.specs()}
    return {m for m in methods if m in specs and specs[m].is_baseline}


def discrimination(long: pd.DataFrame, controls: Collection[str] | None = None,
                   metric: str = "rel_delta_pct") -> pd.DataFrame:
    """Per L, each method's paired difference in `metric` to the best non-control method (columns
    `DISCRIMINATION_COLS`; one row per method with a finished job, the best's own row included).

    best = argmin (argmax for an ↑ metric) of the `Avg` rows of `long_table` over methods not in `controls`
    (default: the registry's `is_baseline` flags). Over the (cell type, gene, seed) jobs where both have a value,
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
        means = avg[avg["L"] == L].set_index("method")[metric]
        candidates = {m: v for m, v in means.items() if m not in controls and np.isfinite(v)}
        if not candidates:
            continue
        best = (max if hib else min)(candidates, key=candidates.get)
        wide = jobs[jobs["L"] == L].set_index(["cell_type", "gene", "seed", "method"])[metric].unstack("method")
        for m in (m for m in methods if m in wide):
            d = (wide[m] - wide[best]).dropna().to_numpy(dtype=float)
            if d.size:
                rows.append({"method": m, "L": int(L), "best_method": best, **_paired(d, 1 if hib else -1)})
    return pd.DataFrame(rows, columns=DISCRIMINATION_COLS)


def _paired(d: np.ndarray, better_sign: int) -> dict:
    """Mean and 95 % t-interval of the paired differences d; a job is better when better_sign · d > TIE_TOL."""
    n, mean = d.size, float(d.mean())
    half = stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
    better, worse = int((better_sign * d > TIE_TOL).sum()), int((better_sign * d < -TIE_TOL).sum())
    return {"mean_diff": mean, "ci_low": mean - half, "ci_high": mean + half, "n_jobs": n, "n_better": better,
            "n_tied": n - better - worse, "n_worse": worse}


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


def discrimination_markdown(disc: pd.DataFrame, kendall: pd.DataFrame, L: int, controls: Collection[str],
                            metric: str = "rel_delta_pct") -> list[str]:
    """Markdown lines of one L's discrimination section: the `discrimination` table, then the Kendall τ line."""
    spec = METRICS[metric]
    better, worse = ("higher", "lower") if spec.higher_is_better else ("lower", "higher")
    part = disc[disc["L"] == L]
    lines = [f"### Discrimination at L = {L}", ""]
    if part.empty:
        lines += ["No non-control method has a finished job at this L: nothing to compare against.", ""]
    else:
        best = part["best_method"].iloc[0]
        shown = sorted(set(controls) & set(part["method"]))
        lines += [f"Paired difference in {spec.label} of each method minus the best non-control method, **{best}** "
                  f"(best Avg), over the (cell type, gene, seed) jobs both finished, with its 95 % t-interval. "
                  f"Better / tied / worse: jobs where the method's {spec.label} is {better} / within {TIE_TOL:g} / "
                  f"{worse}." + (f" Controls ({', '.join(shown)}) are compared but never chosen as best."
                                 if shown else ""), ""]
        body = [[f"**{r.method}** (best)" if r.method == best else r.method, _fmt(r.mean_diff, np.nan, 2),
                 f"[{_fmt(r.ci_low, np.nan, 2)}, {_fmt(r.ci_high, np.nan, 2)}]" if np.isfinite(r.ci_low) else "—",
                 str(r.n_jobs), f"{r.n_better} / {r.n_tied} / {r.n_worse}"] for r in part.itertuples()]
        lines += [tabulate(body, headers=["Method", f"{spec.label} − {best}", "95 % CI", "jobs",
                                          "better / tied / worse"], tablefmt="github", disable_numparse=True), ""]
    for r in kendall[kendall["L"] == L].itertuples():
        value = (f"τ = {_fmt(r.tau, np.nan, 2)} (p = {r.p_value:.2g}, n = {r.n_methods})" if np.isfinite(r.tau)
                 else f"τ undefined (n = {r.n_methods} methods)")
        lines += [f"Kendall τ-b between the explainers' rankings by surrogate and by oracle Avg Rel Δ (every "
                  f"non-control method with both numbers): {value}.", ""]
    return lines


def runtime_table(long: pd.DataFrame, methods: list[str]) -> str:
    jobs = long[long["gene"] != "*"]
    body = []
    for m in methods:
        for L, sub in jobs[jobs["method"] == m].groupby("L"):
            body.append([m, L, f"{sub['seconds'].mean():.2f}", f"{sub['seconds'].max():.2f}",
                         f"{sub['peak_rss_mb'].max():.0f}" if "peak_rss_mb" in sub and sub["peak_rss_mb"].notna().any()
                         else "—", status_summary(sub["status"])])
    return tabulate(body, headers=["Method", "L", "mean s/job", "max s/job", "peak RSS MiB", "status"],
                    tablefmt="github", disable_numparse=True)


def write_report(records: list[dict], out: Path, header: str, methods: list[str], figure: bool = True) -> list[Path]:
    """Write all outputs atomically into `out`; returns the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    long = long_table(records)
    agg = long[long["gene"] == "*"]
    Ls = sorted(int(L) for L in long["L"].unique())
    methods = [m for m in methods if m in set(long["method"])]
    controls = control_methods(long["method"].unique())
    disc, kendall = discrimination(long, controls), surrogate_oracle_kendall(long, controls)
    md = [header, ""]
    for L in Ls:
        md += [f"## L = {L}", "", metric_table(agg, L, LEADERBOARD_METRICS, methods), ""]
        md += discrimination_markdown(disc, kendall, L, controls)
    if "off_target_pct" in long:
        md += ["## Specificity", "", "Mean |Rel Δ| of all other genes when the selected peaks are closed (eq. 2 of "
               "GRIDS penalises it; ↓ better).", ""]
        for L in Ls:
            md += [f"### L = {L}", "", metric_table(agg, L, SPECIFICITY_METRICS, methods), ""]
    if "first_order_rel_delta_pct" in long:
        md += ["## Linearity of the surrogate over the selected sets", "",
               "Actual Rel Δ beside the Rel Δ the surrogate's first-order expansion predicts for the same closure "
               "(Σ of x·∂ŷ/∂x over the selected peaks, gradients at the unperturbed cells). Where the two agree the "
               "surrogate is additive over the set, and a ranking of single peaks (input-x-gradient) can do as "
               "well as a subset search (GRIDS).", ""]
        for L in Ls:
            md += [f"### L = {L}", "", metric_table(agg, L, LINEARITY_METRICS, methods), ""]
    if all(k in long and long[k].notna().any() for k in GENOMIC_METRICS):
        md += ["## Genomic context", "", "Fraction of selected peaks on the gene's chromosome and their median "
               "distance to its TSS (context, not a score).", ""]
        for L in Ls:
            md += [f"### L = {L}", "", metric_table(agg, L, GENOMIC_METRICS, methods), ""]
    if all(k in long and long[k].notna().any() for k in TRUTH_METRICS):
        md += ["## Against the planted truth (synthetic data)", "",
               "Oracle Rel Δ: change of the simulator's exact expression when the selected peaks are closed; "
               "truth recall: fraction of the gene's planted regulatory peaks (promoter, redundant group, "
               "additive enhancers) that were selected.", ""]
        for L in Ls:
            md += [f"### L = {L}", "", metric_table(agg, L, TRUTH_METRICS, methods), ""]
    md += ["## Runtime and status", "", runtime_table(long, methods), ""]
    failed = long[(long["gene"] != "*") & (long["status"] == "failed")]
    if len(failed):
        md += ["## Failed jobs", ""] + [f"- {r.method} {r.cell_type}/{r.gene} L={r.L} seed={r.seed}: {r.error}"
                                         for r in failed.itertuples()] + [""]
    written = [atomic_write(out / "leaderboard.md", "\n".join(md)),
               atomic_write(out / "leaderboard.csv", long.to_csv(index=False)),
               atomic_write(out / "discrimination.csv", disc.to_csv(index=False)),
               atomic_write(out / "jobs.jsonl", "".join(json.dumps(r, default=str) + "\n" for r in records))]
    if figure:
        png = rel_delta_figure(agg, Ls, methods)
        written.append(atomic_write(out / "rel_delta.png", png))
        written.append(atomic_write(out / "report.html", _html(md, png)))
    return written


def rel_delta_figure(agg: pd.DataFrame, Ls: list[int], methods: list[str]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(Ls), figsize=(4.2 * len(Ls), 3.6), squeeze=False)
    for ax, L in zip(axes[0], Ls):
        rows = agg[(agg["L"] == L) & (agg["cell_type"] == "Avg")].set_index("method")
        vals = [rows.loc[m, "rel_delta_pct"] if m in rows.index else np.nan for m in methods]
        errs = [rows.loc[m, "rel_delta_pct_stderr"] if m in rows.index else np.nan for m in methods]
        colors = ["tab:grey" if m in rows.index and rows.loc[m, "status"] != "ok" else "tab:blue" for m in methods]
        # no bar for a method without numbers (all no_estimate/failed): a 0-height bar would read as "no effect"
        ax.bar(methods, vals, yerr=errs, color=colors, capsize=3)
        for i in np.flatnonzero(~np.isfinite(vals)):
            ax.text(i, 0, "—", ha="center", va="bottom")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(f"L = {L}: Rel Δ (%) averaged over cell types (↓ better)", fontsize=9)
        ax.tick_params(axis="x", rotation=45, labelsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _html(md_lines: list[str], png: bytes) -> str:
    import html

    img = base64.b64encode(png).decode()
    text = html.escape("\n".join(md_lines))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>GRIDS-Bench report</title></head><body>"
            f"<h1>GRIDS-Bench report</h1><img alt='Rel Δ per method' src='data:image/png;base64,{img}'/>"
            f"<pre style='font-size:12px'>{text}</pre></body></html>")
