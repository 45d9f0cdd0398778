"""Leaderboard outputs: `leaderboard.md` (Table-1 style, one table per L), `leaderboard.csv` (long format),
`jobs.jsonl` (one record per job), `report.html` and `rel_delta.png`.

Cell-type rows average a type's marker genes (and seeds); the `Avg` row averages the cell-type rows, as in the
paper's Table 1. ± is the standard error of that mean. Direction (↓/↑) and "best" come from each metric's spec.
A cell whose jobs did not all finish `ok` carries its status counts; failed jobs have no numbers but stay listed.
"""

from __future__ import annotations

import base64
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from bench.metrics import METRICS

ID_COLS = ["method", "L", "cell_type", "gene", "seed"]
LEADERBOARD_METRICS = ("avg_delta", "rel_delta_pct")
TRUTH_METRICS = ("oracle_rel_delta_pct", "truth_recall")
SPECIFICITY_METRICS = ("off_target_pct",)
GENOMIC_METRICS = ("frac_on_target_chrom", "median_tss_distance")
DIGITS = {"avg_delta": 3, "truth_recall": 3, "frac_on_target_chrom": 3, "median_tss_distance": 0}
CONTEXT_COLS = ("seconds", "peak_rss_mb")


def long_table(records: list[dict]) -> pd.DataFrame:
    """Per-job rows plus aggregated rows (gene='*' per cell type; cell_type='Avg' over cell types)."""
    jobs = pd.DataFrame(records)
    metric_cols = [c for c in (*LEADERBOARD_METRICS, *SPECIFICITY_METRICS, *GENOMIC_METRICS, *TRUTH_METRICS,
                               *CONTEXT_COLS) if c in jobs]
    for c in metric_cols:
        jobs[c] = pd.to_numeric(jobs[c], errors="coerce")
    jobs = jobs.reindex(columns=ID_COLS + metric_cols + ["status", "error"])
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
    md = [header, ""]
    for L in Ls:
        md += [f"## L = {L}", "", metric_table(agg, L, LEADERBOARD_METRICS, methods), ""]
    if "off_target_pct" in long:
        md += ["## Specificity", "", "Mean |Rel Δ| of all other genes when the selected peaks are closed (eq. 2 of "
               "GRIDS penalises it; ↓ better).", ""]
        for L in Ls:
            md += [f"### L = {L}", "", metric_table(agg, L, SPECIFICITY_METRICS, methods), ""]
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
    written = [_atomic_write(out / "leaderboard.md", "\n".join(md)),
               _atomic_write(out / "leaderboard.csv", long.to_csv(index=False)),
               _atomic_write(out / "jobs.jsonl", "".join(json.dumps(r, default=str) + "\n" for r in records))]
    if figure:
        png = rel_delta_figure(agg, Ls, methods)
        written.append(_atomic_write(out / "rel_delta.png", png))
        html = _html(md, png)
        written.append(_atomic_write(out / "report.html", html))
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
        ax.bar(methods, np.nan_to_num(vals), yerr=np.nan_to_num(errs), color=colors, capsize=3)
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


def _atomic_write(path: Path, content) -> Path:
    mode = "wb" if isinstance(content, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    with os.fdopen(fd, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as fh:
        fh.write(content)
    os.replace(tmp, path)
    return path
