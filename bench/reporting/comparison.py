"""Compare runs: align each method across runs on the (cell type, gene, L, seed) jobs every run finished, and
report per run the Avg Rel Δ over those shared jobs, the paired difference to the first run with its 95 % CI
(`bench.scoring.metrics.INTERVAL` over the shared jobs), and the methods whose rank changed.

A run is a results folder (its leaderboard.csv) or a leaderboard.csv itself; a run made with `--surrogate-seeds`
enters with each job's mean over its surrogates. The Avg over shared jobs is computed
as in the leaderboard (`metrics.cell_type_average`: genes, then cell types), so with identical job sets it equals
the leaderboard's Avg row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from bench.reporting.tables import decimals_for, fmt_ci, render
from bench.scoring.metrics import INTERVAL, cell_type_average
from methods import registry

JOB_KEY = ["cell_type", "gene", "L", "seed"]


def load_run(path) -> pd.DataFrame:
    """The per-job rows (not the aggregated ones) of a run's leaderboard.csv; `path` is the folder or the file."""
    path = Path(path)
    csv = path / "leaderboard.csv" if path.is_dir() else path
    if not csv.is_file():
        raise FileNotFoundError(f"{path}: no leaderboard.csv there; give a results folder of `bench run` or the CSV")
    table = pd.read_csv(csv)
    missing = {"method", "rel_delta_pct", *JOB_KEY} - set(table.columns)
    if missing:
        raise ValueError(f"{csv} is not a leaderboard.csv of `bench run`: missing columns {sorted(missing)}")
    jobs = table[table["gene"].astype(str) != "*"].copy()
    jobs["seed"] = jobs["seed"].astype(int)
    jobs["L"] = jobs["L"].astype(int)
    if "surrogate_seed" in jobs:  # a `--surrogate-seeds` run: one value per job, the mean over its surrogates
        jobs = jobs.groupby(["method", *JOB_KEY], as_index=False, sort=False)["rel_delta_pct"].mean()
    return jobs


def compare_runs(runs: dict[str, pd.DataFrame], metric: str = "rel_delta_pct") -> pd.DataFrame:
    """One row per (method, L): per run `avg@NAME` and `rank@NAME` over the jobs shared by every run that has the
    method (finite values only); per later run `diff@NAME`, `ci_low@NAME`, `ci_high@NAME` (run − first run);
    `n_shared`, `runs_with_method`, `rank_changed`."""
    names = list(runs)
    rows = []
    methods = list(dict.fromkeys(m for jobs in runs.values() for m in jobs["method"]))
    shared_Ls = set.intersection(*({int(L) for L in jobs["L"]} for jobs in runs.values()))
    if not shared_Ls:
        grids = "; ".join(f"{n}: {sorted({int(L) for L in jobs['L']})}" for n, jobs in runs.items())
        raise ValueError(f"the runs share no L, so no job can be compared ({grids}); rerun one with an --L the "
                         "other has")
    for L in sorted(shared_Ls):
        for m in methods:
            have = [n for n in names if ((runs[n]["method"] == m) & (runs[n]["L"] == L)).any()]
            per = {n: runs[n][(runs[n]["method"] == m) & (runs[n]["L"] == L)].dropna(subset=[metric])
                   .set_index(JOB_KEY)[metric] for n in have}
            shared = None
            for s in per.values():
                shared = s.index if shared is None else shared.intersection(s.index)
            row = {"method": m, "L": L, "runs_with_method": ",".join(have), "n_shared": 0 if shared is None else len(shared)}
            for n in names:
                s = per[n].loc[shared] if n in per and shared is not None and len(shared) else pd.Series(dtype=float)
                row[f"avg@{n}"] = cell_type_average(s.reset_index(), metric) if len(s) else float("nan")
                if n != names[0] and names[0] in per and n in per and len(s):
                    mean, half = INTERVAL.fn(s.to_numpy() - per[names[0]].loc[shared].to_numpy())
                    row.update({f"diff@{n}": mean, f"ci_low@{n}": mean - half, f"ci_high@{n}": mean + half})
            rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["left_out_Ls"] = {n: sorted({int(L) for L in jobs["L"]} - shared_Ls) for n, jobs in runs.items()}
    for n in names:  # rank among the methods every run has (1 = most suppression for ↓ Rel Δ)
        everywhere = table["runs_with_method"] == ",".join(names)
        table[f"rank@{n}"] = table[everywhere].groupby("L")[f"avg@{n}"].rank(method="min")
    ranks = table[[f"rank@{n}" for n in names]]
    table["rank_changed"] = ranks.notna().all(axis=1) & (ranks.nunique(axis=1) > 1)
    return table


def rank_agreement(table: pd.DataFrame, names: list[str], controls=None) -> pd.DataFrame:
    """Per L and later run: Kendall τ-b between the first run's and that run's Avg Rel Δ over the shared jobs, over
    the non-control methods both have (controls — the oracle, Random — would pull τ towards +1 whatever the
    explainers do); columns L, run, tau, p_value, n_methods. τ = 1: both runs order the explainers alike, e.g. a
    surrogate-tier run and a truth-tier run on the same data (does the surrogate's verdict hold on the truth?)."""
    if controls is None:
        controls = {s.name for s in registry.specs() if s.is_baseline}
    rows = []
    for L, part in table[~table["method"].isin(list(controls))].groupby("L"):
        for n in names[1:]:
            both = part[np.isfinite(part[f"avg@{names[0]}"]) & np.isfinite(part[f"avg@{n}"])]
            tau, p = (stats.kendalltau(both[f"avg@{names[0]}"], both[f"avg@{n}"]) if len(both) > 1
                      else (np.nan, np.nan))
            rows.append({"L": int(L), "run": n, "tau": float(tau), "p_value": float(p), "n_methods": len(both)})
    return pd.DataFrame(rows, columns=["L", "run", "tau", "p_value", "n_methods"])


def compare_markdown(table: pd.DataFrame, names: list[str]) -> str:
    """Per L: one row per method, Avg Rel Δ in each run (later runs with the paired difference to the first and
    its CI), ranks; then the methods whose rank changed and those missing from some run."""
    lines = [f"# Comparison of {len(names)} runs", "", "Runs: " + ", ".join(f"`{n}`" for n in names) + ". "
             f"Avg Rel Δ (%) over the (cell type, gene, L, seed) jobs every run finished for the method (per gene, "
             f"then cell type, then over cell types); Δ = mean paired difference to `{names[0]}` over those jobs (each job weighs "
             "the same, so Δ can differ slightly from the difference of the two Avgs) with its 95 % t-interval; "
             "rank among the methods present in every run (1 = most suppression).", ""]
    left_out = {n: Ls for n, Ls in table.attrs.get("left_out_Ls", {}).items() if Ls}
    if left_out:
        lines += ["Compared at the L every run has; left out: " + "; ".join(
            f"L = {', '.join(map(str, Ls))} of `{n}`" for n, Ls in left_out.items()) + ".", ""]
    for L, part in table.groupby("L"):
        body = []
        for r in part.sort_values(f"rank@{names[0]}", na_position="last").to_dict("records"):
            line = [r["method"] + ("" if r["runs_with_method"] == ",".join(names) else " ‡"), str(r["n_shared"])]
            line.append(fmt_ci(r[f"avg@{names[0]}"], np.nan, 2))
            for n in names[1:]:
                cell = fmt_ci(r[f"avg@{n}"], np.nan, 2)
                if np.isfinite(r.get(f"diff@{n}", np.nan)):
                    d = decimals_for((r[f"ci_high@{n}"] - r[f"ci_low@{n}"]) / 2)
                    cell += (f" (Δ {fmt_ci(r[f'diff@{n}'], np.nan, d)} [{fmt_ci(r[f'ci_low@{n}'], np.nan, d)}, "
                             f"{fmt_ci(r[f'ci_high@{n}'], np.nan, d)}])")
                line.append(cell)
            line.append(" → ".join("—" if not np.isfinite(r[f"rank@{n}"]) else str(int(r[f"rank@{n}"]))
                                   for n in names))
            body.append(line)
        lines += [f"## L = {L}", "", render(body, ["Method", "shared jobs", *names, "rank"]), ""]
        for r in rank_agreement(part, names).itertuples():
            value = (f"τ = {fmt_ci(r.tau, np.nan, 2)} (p = {r.p_value:.2g}, n = {r.n_methods})" if np.isfinite(r.tau)
                     else f"τ undefined (n = {r.n_methods} methods)")
            lines.append(f"Kendall τ-b between the explainers' rankings in `{names[0]}` and `{r.run}` (non-control "
                         f"methods with jobs in both): {value}.")
        changed = part[part["rank_changed"]]
        lines.append("Rankings changed: " + (", ".join(
            f"{r['method']} ({' → '.join(str(int(r[f'rank@{n}'])) for n in names)})" for _, r in changed.iterrows())
            if len(changed) else "none") + ".")
        partial = part[part["runs_with_method"] != ",".join(names)]
        if len(partial):
            lines.append("‡ not in every run: " + ", ".join(f"{r['method']} (only {r['runs_with_method']})"
                                                            for _, r in partial.iterrows()) + ".")
        lines.append("")
    return "\n".join(lines)
