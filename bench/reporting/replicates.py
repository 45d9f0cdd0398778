"""What repeating a job shows: how stable a method's selection is across seeds, and how much the methods' ranking
moves between surrogates trained with different seeds (`--seeds`, `--surrogate-seeds`)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import stats

from bench.scoring.metrics import cell_type_average

REPLICATE = ("seed", "surrogate_seed")


def jaccard(a, b) -> float:
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else float("nan")


def selection_stability(records: list[dict]) -> pd.DataFrame:
    """Per (method, L): the mean over (cell type, gene) of the mean pairwise Jaccard overlap of the peak sets the
    method selected in the replicates (seeds × surrogate seeds) of that job; columns method, L, jaccard, n_jobs,
    replicates. Empty when no job has two replicates with peaks (1 = the same peaks every time)."""
    jobs = pd.DataFrame([{"method": r["method"], "L": r["L"], "cell_type": r["cell_type"], "gene": r["gene"],
                          "peaks": r.get("peaks") or []} for r in records if r.get("peaks")])
    rows = []
    if jobs.empty:
        return pd.DataFrame(columns=["method", "L", "jaccard", "n_jobs", "replicates"])
    for (method, L), part in jobs.groupby(["method", "L"], sort=False):
        per_job = [np.mean([jaccard(a, b) for a, b in itertools.combinations(g["peaks"], 2)])
                   for _, g in part.groupby(["cell_type", "gene"]) if len(g) > 1]
        if per_job:
            rows.append({"method": method, "L": int(L), "jaccard": float(np.mean(per_job)), "n_jobs": len(per_job),
                         "replicates": int(part.groupby(["cell_type", "gene"]).size().max())})
    return pd.DataFrame(rows, columns=["method", "L", "jaccard", "n_jobs", "replicates"])


def surrogate_rank_movement(long: pd.DataFrame, controls=(), metric: str = "rel_delta_pct") -> pd.DataFrame:
    """Per L, between surrogates trained with different seeds: each surrogate's Avg (`metrics.cell_type_average`,
    as the leaderboard's) ranks the methods that have a value under every surrogate, controls left out (they
    would pull τ towards +1 by construction); columns L, method, rank_min, rank_max, mean_tau (mean Kendall τ-b
    over pairs of surrogates, repeated on every row of the L). Empty with one surrogate."""
    cols = ["L", "method", "rank_min", "rank_max", "mean_tau"]
    if "surrogate_seed" not in long:
        return pd.DataFrame(columns=cols)
    jobs = long[(long["gene"] != "*") & ~long["method"].isin(list(controls))].copy()
    if jobs["surrogate_seed"].nunique() < 2:
        return pd.DataFrame(columns=cols)
    rows = []
    for L, part in jobs.groupby("L"):
        avg = (cell_type_average(part, metric, by=("surrogate_seed", "method")).unstack("method")
               .dropna(axis=1, how="any"))
        if avg.shape[1] < 2:
            continue
        ranks = avg.rank(axis=1, method="min")
        taus = np.array([stats.kendalltau(avg.loc[a], avg.loc[b])[0]
                         for a, b in itertools.combinations(avg.index, 2)], dtype=float)
        for m in avg.columns:
            rows.append({"L": int(L), "method": m, "rank_min": int(ranks[m].min()), "rank_max": int(ranks[m].max()),
                         "mean_tau": float(np.nanmean(taus)) if np.isfinite(taus).any() else float("nan")})
    return pd.DataFrame(rows, columns=cols)
