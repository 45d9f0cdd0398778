"""The leaderboard's tables, built from `report.long_table`'s aggregated rows (pure functions, markdown out).

* `headline` — one row per method, ranked by Avg Rel Δ at the largest L (on the truth tier by Avg % of the
  optimum there: `ranking_metric`), with every column (headline.csv); `headline_markdown` shows the part that fits
  `HEADLINE_WIDTH` (100) characters: Rel Δ ± 95 % CI at each L (first and last L plus the area under the Rel Δ–log L
  curve when the grid has more than two; on the truth tier the % of the optimum at the first and last L instead),
  the oracle's Rel Δ at the largest L on synthetic data, the selection's stability over replicates and seconds per
  job; control and status marks as footnotes.
* `detail` — one metric at one L: methods as rows, cell types (then Avg) as columns, best per column in bold.

Numbers are rounded to what their interval supports: two significant digits of the half-width, the mean to the
same decimal (`fmt_ci`), and printed in their metric's unit (`MetricSpec.unit`): a sign only on quantities that
can be negative, fractions as 0.35, distances in bp / kb / Mb as medians with their interquartile range. A mean
over fewer than `MIN_FOR_INTERVAL` values (a cell type with two or three marker genes) is shown without ±: a
95 % t-interval on 1–2 degrees of freedom (t = 12.7 and 4.3) is wider than most effects it would qualify, so it
would say more about the interval than about the method; such columns name their n instead. leaderboard.csv keeps
every interval.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
from scipy.integrate import trapezoid
from tabulate import tabulate

from bench.scoring.metrics import INTERVAL, METRICS

# footnote marks for jobs that did not end ok, for reduced effort (methods/base.py EFFORT_FLAGS), and for controls
STATUS_MARKS = {"budget_exceeded": "ᵇ", "time_limit": "ᵗ", "not_converged": "ⁿ", "no_estimate": "ᵉ", "failed": "ᶠ"}
EFFORT_MARKS = {"fewer_cells": "ᶜ", "filled": "⁺", "partial_pass": "ᵖ"}
EFFORT_TEXT = {"fewer_cells": "some jobs explained fewer cells than the method's default",
               "filled": "some jobs filled part of their L peaks from a fallback ranking",
               "partial_pass": "some jobs stopped before a first full pass (GRIDS: not every slot visited; SAGE: "
                               "groups not refined to single peaks)"}
CONTROL_MARK = "†"
MISSING_MARK = "ᵐ"  # an Avg over fewer cell types than the table has (its status names them)
MAX_HEADLINE_LS = 2  # more Ls than this: first, last and the area under the curve (three do not fit 100 chars)
MIN_FOR_INTERVAL = 4  # fewer values than this: the mean without ± (see the module docstring)


def decimals_for(half: float, default: int = 2, most: int = 4) -> int:
    """Decimals that show two significant digits of the interval's half-width (default when there is none)."""
    if not np.isfinite(half) or half <= 0:
        return default
    return int(min(most, max(0, 1 - math.floor(math.log10(half)))))


def fmt_ci(mean: float, half: float, digits: int | None = None, signed: bool = True) -> str:
    """'−48.0 ± 3.1': the mean and its half-width at the decimals the half-width supports; '—' for no value.
    `signed=False` (a quantity that is never negative) drops the '+'."""
    if not np.isfinite(mean):
        return "—"
    d = decimals_for(half) if digits is None else digits
    if round(mean, d) == 0:  # zero at this precision (a closure that changes nothing) has no sign
        mean, signed = 0.0, False
    text = f"{mean:{'+' if signed else ''}.{d}f}".replace("-", "−")
    return text + (f" ± {half:.{d}f}" if np.isfinite(half) else "")


def fmt_bp(bp: float) -> str:
    """A genomic distance with three significant digits in bp, kb or Mb: '850 bp', '46.7 kb', '101 Mb'."""
    if not np.isfinite(bp):
        return "—"
    value, unit = next(((bp / scale, unit) for scale, unit in ((1e6, "Mb"), (1e3, "kb")) if abs(bp) >= scale),
                       (bp, "bp"))
    return f"{value:.3g} {unit}" if unit != "bp" else f"{value:.0f} bp"


def fmt_median_iqr(values) -> str:
    """'12.3 Mb (IQR 2.1 Mb–40.5 Mb)' for distances: the median, with the interquartile range when there are at
    least `MIN_FOR_INTERVAL` values; '—' for none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "—"
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return fmt_bp(med) + (f" (IQR {fmt_bp(q1)}–{fmt_bp(q3)})" if v.size >= MIN_FOR_INTERVAL else "")


def fmt_metric(spec, mean: float, half: float, n: int) -> str:
    """One table cell of `spec`'s metric: a mean over n values in the metric's unit, ± its half-width only when
    n ≥ `MIN_FOR_INTERVAL` (fewer: the mean alone, to three significant digits; a fraction to two decimals)."""
    if n < MIN_FOR_INTERVAL:
        half, digits = np.nan, (2 if not np.isfinite(mean) or mean == 0 else
                                decimals_for(abs(mean) / 10, most=4))
    else:
        digits = None
    if spec.unit == "fraction":  # a share: two decimals unless its interval needs more
        digits = 2 if n < MIN_FOR_INTERVAL else max(2, decimals_for(half))
    return fmt_ci(mean, half, digits, signed=spec.signed)


def rel_delta_auc(Ls, values) -> float:
    """Mean Rel Δ over the L grid: the trapezoid area under Rel Δ vs log L divided by log(L_max / L_min)
    (NaN unless there are ≥ 2 Ls and a value at every L, so every AUC covers the same range). It weighs each
    doubling of L alike."""
    x, y = np.log(np.asarray(Ls, dtype=float)), np.asarray(values, dtype=float)
    if y.size < 2 or not np.isfinite(y).all():
        return float("nan")
    return float(trapezoid(y, x)) / float(x[-1] - x[0])


def marks(statuses: pd.Series, control: bool) -> str:
    found, missing = set(), False
    for summary in statuses.dropna():
        counts, _, names = summary.partition("missing cell types:")  # cell-type names never count as statuses
        found |= set(re.findall(r"[a-z_]+", counts)) & (set(STATUS_MARKS) | set(EFFORT_MARKS))
        missing |= bool(names)
    return ((CONTROL_MARK if control else "") + "".join(STATUS_MARKS[s] for s in STATUS_MARKS if s in found)
            + "".join(EFFORT_MARKS[s] for s in EFFORT_MARKS if s in found) + (MISSING_MARK if missing else ""))


def _complete(rows: pd.DataFrame) -> pd.Series:
    """Whether each aggregated row has a number for every job of its L and cell type (report.complete's rule; rows
    without the coverage columns count as complete)."""
    if "n_scored" not in rows:
        return pd.Series(True, index=rows.index)
    return rows["n_scored"].fillna(0).astype(int) >= rows["n_expected"].fillna(0).astype(int)


def headline(agg: pd.DataFrame, controls: set[str], stability: pd.DataFrame | None = None,
             jobs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per method (Avg rows of `agg`), ranked by `ranking_metric` at the largest L (Avg Rel Δ; on the truth
    tier Avg % of the optimum) among the methods with a number for every job there (the others after them; no value
    last): columns method, control, marks, per L
    `rel_delta_pct@L` / `rel_delta_pct_ci95@L`, `auc` (≥ 2 Ls), oracle at the largest L (when present), the
    median TSS distance of the selected peaks at the largest L over every job (`jobs`, when the genes have TSSs),
    seconds per job, status summary, coverage."""
    avg = agg[agg["cell_type"] == "Avg"]
    Ls = sorted(int(L) for L in avg["L"].unique())
    rows = []
    for method, part in avg.groupby("method", sort=False):
        part = part.set_index("L")
        row = {"method": method, "control": method in controls, "marks": marks(part["status"], method in controls)}
        for L in Ls:
            row[f"rel_delta_pct@{L}"] = part["rel_delta_pct"].get(L, np.nan)
            row[f"rel_delta_pct_ci95@{L}"] = part["rel_delta_pct_ci95"].get(L, np.nan)
        if len(Ls) >= 2:
            row["auc"] = rel_delta_auc(Ls, [row[f"rel_delta_pct@{L}"] for L in Ls])
        if "pct_of_optimum" in part and part["pct_of_optimum"].notna().any():  # the truth tier
            for L in Ls:
                row[f"pct_of_optimum@{L}"] = part["pct_of_optimum"].get(L, np.nan)
                row[f"pct_of_optimum_ci95@{L}"] = part["pct_of_optimum_ci95"].get(L, np.nan)
        elif "oracle_rel_delta_pct" in part and part["oracle_rel_delta_pct"].notna().any():
            row[f"oracle_rel_delta_pct@{Ls[-1]}"] = part["oracle_rel_delta_pct"].get(Ls[-1], np.nan)
            row[f"oracle_rel_delta_pct_ci95@{Ls[-1]}"] = part["oracle_rel_delta_pct_ci95"].get(Ls[-1], np.nan)
        if stability is not None and len(stability):
            mine = stability[(stability["method"] == method) & (stability["L"] == Ls[-1])]
            row["jaccard"] = float(mine["jaccard"].iloc[0]) if len(mine) else np.nan
        if jobs is not None and "median_tss_distance" in jobs:
            mine = jobs[(jobs["method"] == method) & (jobs["L"] == Ls[-1])]["median_tss_distance"]
            row[f"median_tss_distance@{Ls[-1]}"] = float(mine.median()) if mine.notna().any() else np.nan
        row["seconds_per_job"] = float(np.nanmean(part["seconds"])) if "seconds" in part else np.nan
        row["n_cell_types"] = int(part["n_cell_types"].max()) if "n_cell_types" in part else 0
        row["status"] = "; ".join(f"L={L}: {s}" for L, s in part["status"].items() if s != "ok") or "ok"
        last = part.loc[[Ls[-1]]] if Ls[-1] in part.index else part.iloc[:0]
        row["complete"] = bool(len(last)) and bool(_complete(last).all())
        row["coverage"] = (f"{int(last['n_scored'].iloc[0])}/{int(last['n_expected'].iloc[0])}"
                           if len(last) and "n_scored" in last else "")
        rows.append(row)
    table = pd.DataFrame(rows)
    # best first among methods with a number for every job of the largest L; the others after them, never "best"
    rank = ranking_metric(table)
    key = table[f"{rank.name}@{Ls[-1]}"] * (-1 if rank.higher_is_better else 1)
    key = key.fillna(np.inf)
    return (table.assign(_incomplete=~table["complete"], _key=key)
            .sort_values(["_incomplete", "_key"], kind="stable").drop(columns=["_incomplete", "_key"])
            .reset_index(drop=True))


def ranking_metric(table: pd.DataFrame):
    """The metric a headline is ranked by: % of the optimum on the truth tier (the tier's question is how close a
    method comes to the exact best closure, and a job's share of its own optimum weighs every gene alike), Rel Δ
    everywhere else."""
    truth = any(c.startswith("pct_of_optimum@") for c in table.columns)
    return METRICS["pct_of_optimum" if truth else "rel_delta_pct"]


# The headline must read in a terminal and a diff without wrapping: its markdown table is at most this many
# characters wide. It holds what decides the order (Rel Δ, or % of optimum on the truth tier, at the shown Ls) and
# what qualifies it; everything else
# (every L, the TSS distance, …) is in the per-L sections and in headline.csv, which keeps every column.
HEADLINE_WIDTH = 100
# Columns `headline_markdown` leaves out, in this order, in the rare table still wider than HEADLINE_WIDTH (very
# long method names or marks); the note under it names them. Never the ranking column or the coverage.
DROP_ORDER = ("Jaccard", "Oracle", "AUC", "s/job", "first L")


def headline_markdown(table: pd.DataFrame, tablefmt: str = "github") -> str:
    """The headline as a compact table (markdown, or `tablefmt="html"`) followed by its footnotes, at most
    `HEADLINE_WIDTH` characters wide in markdown.

    Columns: Rel Δ at the first and the largest L (every L when there are two or fewer) and, with more than two, the
    AUC over all of them; on the truth tier the % of the optimum at those Ls instead (what orders its rows; Rel Δ
    is in the per-L tables). Then the oracle's Rel Δ at the largest L (synthetic data), the Jaccard stability
    (replicated runs), s/job, and the jobs with a number when some method lacks one. Three Rel Δ columns, or Rel Δ
    and % of optimum side by side, do not fit 100 characters beside the method names; the TSS distance is context,
    not a score, and has its own per-L table."""
    Ls = [int(c.split("@")[1]) for c in table.columns if c.startswith("rel_delta_pct@")]
    shown = Ls if len(Ls) <= MAX_HEADLINE_LS else [Ls[0], Ls[-1]]
    truth = all(f"pct_of_optimum@{L}" in table for L in shown)
    oracle = [c for c in table.columns if c.startswith("oracle_rel_delta_pct@")]
    partial = "complete" in table and not table["complete"].all()
    rel, opt = METRICS["rel_delta_pct"], METRICS["pct_of_optimum"]
    rows = table.to_dict("records")
    n_of = [int(r.get("n_cell_types", MIN_FOR_INTERVAL)) for r in rows]  # the Avg's cell types: too few, no ±

    def column(header, cell, group=None):
        return header, [cell(r, n) for r, n in zip(rows, n_of)], group

    def rel_at(L):
        return lambda r, n: fmt_metric(rel, r[f"rel_delta_pct@{L}"], r[f"rel_delta_pct_ci95@{L}"], n)

    def auc(r, n):  # at the precision of the largest L's interval
        return (fmt_metric(rel, r["auc"], np.nan, 0) if n < MIN_FOR_INTERVAL else
                fmt_ci(r["auc"], np.nan, decimals_for(r[f"rel_delta_pct_ci95@{Ls[-1]}"])))

    columns = [("Method", [r["method"] + r["marks"] for r in rows], None)]
    if truth:
        columns += [column(f"% opt L={L} ↑", lambda r, n, L=L: fmt_metric(
            opt, r[f"pct_of_optimum@{L}"], r[f"pct_of_optimum_ci95@{L}"], n), "first L" if L != Ls[-1] else None)
            for L in shown]
    else:
        columns += [column(f"Rel Δ L={L} ↓", rel_at(L), "first L" if L != Ls[-1] else None) for L in shown]
    if len(Ls) > MAX_HEADLINE_LS and not truth:  # the AUC is Rel Δ's: on the truth tier the % columns speak
        columns.append(column("AUC ↓", auc, "AUC"))
    if oracle:
        columns.append(column(f"Oracle L={Ls[-1]}", lambda r, n: fmt_metric(
            rel, r[oracle[0]], r[oracle[0].replace("@", "_ci95@")], n), "Oracle"))
    if "jaccard" in table:
        columns.append(column("Jaccard", lambda r, n: f"{r['jaccard']:.2f}" if np.isfinite(r["jaccard"]) else "—",
                              "Jaccard"))
    columns.append(column("s/job", lambda r, n: f"{r['seconds_per_job']:.2f}" if np.isfinite(r["seconds_per_job"])
                          else "—", "s/job"))
    if partial:
        columns.append(column(f"scored L={Ls[-1]}", lambda r, n: r["coverage"]))

    def rendered(cols, fmt):
        return render([list(line) for line in zip(*(cells for _, cells, _ in cols))], [h for h, _, _ in cols], fmt)

    left_out = []
    for group in DROP_ORDER:  # only when a table is still too wide (see DROP_ORDER)
        if max(map(len, rendered(columns, "github").splitlines())) <= HEADLINE_WIDTH:
            break
        if any(g == group for _, _, g in columns):
            left_out += [h for h, _, g in columns if g == group]
            columns = [c for c in columns if c[2] != group]
    headers = [h for h, _, _ in columns]

    in_pct = ([] if truth else ["Rel Δ"]) + ["AUC"] * ("AUC ↓" in headers) + ["Oracle"] * any(
        h.startswith("Oracle") for h in headers)
    in_pct = (f"; {', '.join(in_pct[:-1])} and {in_pct[-1]} in %" if len(in_pct) > 1 else
              f"; {in_pct[0]} in %" if in_pct else "")
    order = (f"Ranked by Avg % of the optimum at L = {Ls[-1]} (↑: closer to the exact best closure is better)"
             if truth else f"Ranked by Avg Rel Δ (%) at L = {Ls[-1]} (↓: more suppression is better)")
    notes = [f"{order}{in_pct}. " + INTERVAL.description]
    if partial:
        notes.append(f"Only methods with a number for every job at L = {Ls[-1]} are ranked first; the rows after them "
                     "(fewer jobs with a number: the rest failed or had no estimate) are listed by the same number "
                     "but are never the best here, in bold or in the discrimination tables: an average over the "
                     "jobs a method managed is not comparable with one over every job. scored: the jobs with a "
                     "number, of all.")
    if "AUC ↓" in headers:
        notes.append("AUC: the mean Rel Δ over the L grid, i.e. the trapezoid area under Rel Δ vs log L divided by "
                     "log(L_max / L_min), so each doubling of L weighs the same.")
    if truth:
        notes.append("% opt (truth tier): the method's Rel Δ as a percentage of the exact best closure of at most L "
                     "peaks on the same test cells (100 = optimal, 0 = no change); its Avg is formed like Rel Δ's.")
    if any(h.startswith("Oracle") for h in headers):
        notes.append("Oracle: the simulator's exact expression change when the selected peaks are closed.")
    if "Jaccard" in headers:
        notes.append(f"Jaccard: mean overlap of the peaks a method selects at L = {Ls[-1]} across the replicates of a "
                     "job (seeds and surrogate seeds); 1 = the same peaks every time.")
    notes.append("The per-L sections have every L and metric (the TSS distance of the selected peaks among them), "
                 "rel_delta_vs_L.png every L's Rel Δ; headline.csv keeps every column."
                 + (f" Left out here to fit {HEADLINE_WIDTH} characters: {', '.join(left_out)}." if left_out else ""))
    used = set("".join(table["marks"]))
    legend = {CONTROL_MARK: "control (bounds the scale; ranked here, but never bold or the best in the detail "
                            "tables)", **{m: f"some jobs {s}" for s, m in STATUS_MARKS.items()},
              **{m: EFFORT_TEXT[f] for f, m in EFFORT_MARKS.items()},
              MISSING_MARK: "the Avg covers fewer cell types than the table (no numbers in the others; the status "
                            "names them)"}
    legend_items = [f"{m} {text}" for m, text in legend.items() if m in used]
    if legend_items:  # only status marks have counts to point at
        counts = (" (counts under Runtime and status)"
                  if used & (set(STATUS_MARKS.values()) | set(EFFORT_MARKS.values()) | {MISSING_MARK}) else "")
        notes.append("Marks: " + "; ".join(legend_items) + counts + ".")
    return rendered(columns, tablefmt) + "\n\n" + "\n\n".join(notes)


def _gene_values(jobs: pd.DataFrame, metric: str) -> pd.Series:
    """Per (method, cell type, gene) the metric's value, a gene's replicates averaged (as `long_table` does)."""
    return jobs.groupby(["method", "cell_type", "gene"])[metric].mean()


def detail(long: pd.DataFrame, L: int, metric: str, methods: list[str], tablefmt: str = "github",
           controls: frozenset = frozenset()) -> str:
    """Markdown: `metric` at L, methods as rows (in `methods` order), cell types then Avg as columns (each headed
    with its n: genes, or cell types for Avg), each cell the mean in the metric's unit (± 95 % CI from
    `MIN_FOR_INTERVAL` values on) with the status marks of its jobs; the best non-control of each column (by the
    metric's direction) in bold, among the methods with a number for every job of that column. `long` is
    `report.long_table` (its aggregate rows; a skewed metric's cells are medians of its job rows: a cell type's over
    its genes, Avg's over every gene, with the IQR)."""
    part = long[(long["L"] == L) & (long["gene"] == "*")]
    spec = METRICS[metric]
    cell_types = [c for c in part["cell_type"].unique() if c != "Avg"] + ["Avg"]
    wide = part.pivot_table(index="method", columns="cell_type", values=metric, aggfunc="first", dropna=False)
    if spec.skewed:  # medians of the genes' values instead of means
        per_gene = _gene_values(long[(long["L"] == L) & (long["gene"] != "*")], metric)
        wide = per_gene.groupby(level=["method", "cell_type"]).median().unstack("cell_type").reindex(
            index=wide.index, columns=wide.columns)
    half = part.pivot_table(index="method", columns="cell_type", values=f"{metric}_ci95", aggfunc="first",
                            dropna=False)
    # n per cell: a cell type's genes, the Avg's cell types (`long_table` writes both)
    counts = part.pivot_table(index="method", columns="cell_type", values="n_genes", aggfunc="first", dropna=False)
    counts["Avg"] = part[part["cell_type"] == "Avg"].set_index("method")["n_cell_types"]
    n_of = {ct: int(counts[ct].max()) if ct in counts and counts[ct].notna().any() else 0 for ct in cell_types}
    if spec.skewed:  # the last column is the median over every gene, not an average of cell types
        n_of["Avg"] = int(per_gene.groupby(level="method").count().max()) if len(per_gene) else 0
    status = part.set_index(["method", "cell_type"])["status"]
    full = part[_complete(part)].set_index(["method", "cell_type"]).index
    best = {}
    if spec.higher_is_better is not None:
        for ct in cell_types:
            col = wide[ct].drop(index=list(controls), errors="ignore").dropna() if ct in wide else pd.Series(dtype=float)
            col = col[[(m, ct) in full for m in col.index]]  # only a method with a number for every job there
            if len(col):
                best[ct] = col.idxmax() if spec.higher_is_better else col.idxmin()
    body = []
    for m in (m for m in methods if m in wide.index):
        cells = []
        for ct in cell_types:
            mean = wide.at[m, ct] if ct in wide else np.nan
            if spec.skewed:
                values = (per_gene.loc[m] if ct == "Avg" else per_gene.loc[(m, ct)]) if m in per_gene.index else []
                text = fmt_median_iqr(values) if ct == "Avg" else fmt_bp(mean)
            else:
                text = fmt_metric(spec, mean, half.at[m, ct] if ct in half else np.nan,
                                  int(counts.at[m, ct]) if ct in counts and np.isfinite(counts.at[m, ct]) else 0)
            text = f"**{text}**" if best.get(ct) == m and np.isfinite(mean) else text
            cells.append(text + marks(pd.Series([status.get((m, ct))]), False))
        body.append([m] + cells)
    headers = [f"{ct} (n={n_of[ct]})" if ct != "Avg" else
               (f"all genes (n={n_of[ct]})" if spec.skewed else f"Avg (n={n_of[ct]})") for ct in cell_types]
    return render(body, [f"{spec.label} {spec.arrow}".strip()] + headers, tablefmt)


def render(body: list[list[str]], headers: list[str], tablefmt: str = "github") -> str:
    """A table as markdown (`github`) or HTML (`html`: escaped, with markdown's **bold** turned into <b>)."""
    text = tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True)
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text) if tablefmt == "html" else text
