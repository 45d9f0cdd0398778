"""The truth tier's breakdown: what each method's closures were made of, next to the optimum's, and where a greedy
ranking falls short (by redundant-group size, and by whether the optimum closes the promoter).

Per job the evaluator records (bench/scoring/metrics.py, `closure_kinds`) how many of the L peaks were the gene's
promoter, members of redundant groups closed whole, members of groups left open (budget spent without effect while
another member is open), single enhancers and background, and how many groups of 2, 3 and 4 members were closed whole —
for the method's closure and, prefixed `optimum_`, for the exact optimum's. Means are over jobs (every (cell type,
gene) of the L, replicates included); the tables say n.
"""

from __future__ import annotations

import pandas as pd

from bench.reporting.tables import render
from bench.scoring.metrics import GROUP_SIZES

KINDS = (("n_promoter", "promoter"), ("n_group_whole", "whole groups"), ("n_group_partial", "partial groups"),
         ("n_single", "single enhancers"), ("n_background", "background"))
# the unit kinds some worlds have (datasets/worlds.py): shown where a job recorded them
WORLD_KINDS = (("coops_broken", "AND units broken (≥ 1 member closed)"), ("n_coop_extra", "AND members past the first"),
               ("n_silencer", "silencers closed"), ("n_shared", "shared with another gene"))
NOTE = ("Mean number of each job's L peaks that were the gene's promoter, members of redundant groups closed whole, "
        "members of groups left open (no effect while another member is open), single enhancers, and peaks that do "
        "not regulate the gene; groups closed whole by size (2 / 3 / 4 members); and the mean % of optimum over the "
        "jobs whose optimum closes the promoter and over those whose optimum does not (n jobs in brackets). The "
        "`optimum` row is the exact best closure on the test cells. In worlds with AND units, silencers or shared "
        "elements also: AND units broken (one closed member removes a unit's weight), further members closed in a unit "
        "already broken (no effect), silencers closed (each raises the gene) and closed peaks that also regulate "
        "another gene (a cost in specificity).")


def breakdown_jobs(records: list[dict]) -> pd.DataFrame:
    """The truth-tier fields of the finished jobs (empty when the run is not on a truth model)."""
    rows = [r for r in records if r.get("pct_of_optimum") is not None or r.get("optimum_rel_delta_pct") is not None]
    if not rows:
        return pd.DataFrame()
    fields = ["method", "L", "cell_type", "gene", "pct_of_optimum", "optimum_n_promoter"]
    kinds = [k for k, _ in KINDS] + [f"groups_closed_{s}" for s in GROUP_SIZES]
    world = [k for k, _ in WORLD_KINDS if any(k in r for r in rows)]
    # a job whose gene has no unit of a world's kind records no count for it: it closed none
    table = pd.DataFrame([{f: r.get(f, 0 if f.removeprefix("optimum_") in world else None)
                           for f in fields + kinds + world + [f"optimum_{k}" for k in kinds + world]} for r in rows])
    numeric = [c for c in table.columns if c not in ("method", "cell_type", "gene")]
    table[numeric] = table[numeric].apply(pd.to_numeric, errors="coerce")
    return table


def breakdown_table(jobs: pd.DataFrame, L: int, order: list[str], tablefmt: str = "github") -> str:
    """One L's breakdown as a table (methods in `order`, then the optimum); '' when there are no truth-tier jobs."""
    if jobs.empty or not (jobs["L"] == L).any():
        return ""
    part = jobs[jobs["L"] == L]
    world = [(k, label) for k, label in WORLD_KINDS if k in part.columns and part[k].notna().any()]
    kinds = [k for k, _ in KINDS] + [k for k, _ in world]
    headers = ["Method", *(label for _, label in KINDS), *(label for _, label in world), "groups 2 / 3 / 4",
               "% opt., optimum closes promoter", "% opt., it does not"]
    body = []
    for method in [m for m in order if m in set(part["method"])]:
        mine = part[part["method"] == method]
        body.append([method, *(_mean(mine[k]) for k in kinds), _sizes(mine, ""),
                     *_split(mine["pct_of_optimum"], mine["optimum_n_promoter"])])
    one = part.drop_duplicates(["cell_type", "gene"])  # the optimum is the same for every method of a job
    body.append(["optimum", *(_mean(one[f"optimum_{k}"]) for k in kinds), _sizes(one, "optimum_"), "100", "100"])
    return render(body, headers, tablefmt)


def _mean(values: pd.Series) -> str:
    v = pd.to_numeric(values, errors="coerce").dropna()
    return f"{v.mean():.1f}" if len(v) else "—"


def _sizes(jobs: pd.DataFrame, prefix: str) -> str:
    return " / ".join(_mean(jobs[f"{prefix}groups_closed_{s}"]) for s in GROUP_SIZES)


def _split(pct: pd.Series, promoter: pd.Series) -> list[str]:
    """Mean % of optimum over the jobs whose optimum closes the promoter, and over the others, each with its n."""
    out = []
    for closes in (True, False):
        v = pd.to_numeric(pct[(promoter > 0) == closes], errors="coerce").dropna()
        out.append(f"{v.mean():.1f} ({len(v)})" if len(v) else "— (0)")
    return out
