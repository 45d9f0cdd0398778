"""Fidelity against data (`python -m bench fidelity-curve`): when can the surrogate's verdict be trusted?

The surrogate is trained again on synthetic data of growing size (`n_cells`) and depth (`umi_per_cell`), in one or
both training styles; at every point of the grid it is measured the way `bench fit` measures it, and the
explainers' ranking on it is set beside their ranking on the simulator's exact model:

* marker R² (surrogates/fidelity.py) and interventional fidelity (bench/fidelity/interventional.py): Spearman of
  surrogate vs truth closure effects, the group / Σ members ratio of both (1 = additive, ≫ 1 = redundant) and what
  closing all of a marker's planted peaks does on each;
* the Kendall τ between the surrogate-tier and the truth-tier ranking of a fixed method set by Avg Rel Δ at one L,
  over the same (cell type, gene) jobs, with a percentile bootstrap CI over jobs (`tier_tau`, `bootstrap_tau`).

Training budgets follow the cells: the paired style counts epochs (passes over the cells) and the reference style's
step counts scale with n_cells (`Profile.for_cells`), so the curve measures data, not training. The simulator draws
the genome and the planted regulation before the cells, so every point of a seed shares one truth. Every surrogate
is a cached checkpoint and every job a cached result, so an interrupted curve resumes where it stopped.
`--simulate` (e.g. world=additive, datasets/worlds.py) changes the simulator at every point; the grid's own keys
(n_cells, umi_per_cell) come from --cells/--depths only.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from tabulate import tabulate

from bench.config import profile_for
from bench.errors import UserError
from bench.fidelity.interventional import interventional_fidelity, pooled_group_member_ratio
from bench.fidelity.locus_diagnostic import locus_redundancy
from bench.running.pipeline import (
    Inputs,
    fit_surrogate,
    load_inputs,
    marker_fidelity,
    marker_genes_in,
    run_plan,
    simulate_pairs,
)
from bench.running.plan import check_methods, default_pairs, plan_run
from datasets.files import atomic_write
from datasets.synthetic import SCALES
from surrogates.protocol import meta_of
from surrogates.truth import TruthModel

log = logging.getLogger("bench")

# The explainers whose ranking the curve compares between tiers (the fixed set: the gradient family, the
# subset searches and the two methods the truth tier ranks far above the surrogate tier at quick scale).
TAU_METHODS = ("grids", "integrated-gradients", "input-x-gradient", "fimap", "sage", "cxplain", "saliency")
COLUMNS = ("style", "n_cells", "umi_per_cell", "screen_cells", "screen", "train_cells", "training", "train_seconds",
           "marker_r2",
           "interventional_spearman", "group_member_ratio_surrogate", "group_member_ratio_truth",
           "pooled_ratio_surrogate", "pooled_ratio_truth", "locus_group_member_ratio", "locus_heldout_gain_pct",
           "all_planted_surrogate_pct", "all_planted_truth_pct", "tau_tiers", "tau_low", "tau_high", "n_jobs",
           "winner_surrogate", "winner_truth", "jobs_seconds", "point_seconds")


@dataclass(frozen=True)
class CurvePoint:
    style: str
    n_cells: int
    umi_per_cell: float
    screen_cells: int = 0  # screened cells beside the observational ones (datasets/screens.py)
    variant: tuple[tuple[str, str], ...] = ()  # the screen's other `--simulate` pairs (library, confounding, world)

    def overrides(self, scale) -> tuple[tuple[str, str], ...]:
        """`--simulate` pairs for this point; none where it is the scale's own data (so its caches are shared)."""
        pairs = []
        if self.n_cells != scale.n_cells:
            pairs.append(("n_cells", str(self.n_cells)))
        if self.umi_per_cell != scale.umi_per_cell:
            pairs.append(("umi_per_cell", f"{self.umi_per_cell:g}"))
        if self.screen_cells:
            pairs.append(("screen_cells", str(self.screen_cells)))
        return tuple(pairs) + self.variant

    def screen(self) -> str:
        """The screen column: its library and what else changed ('' without a screen)."""
        if not self.screen_cells:
            return ""
        variant = dict(self.variant)
        rest = [f"{k}={v}" for k, v in self.variant if k != "screen_library"]
        return ", ".join([variant.get("screen_library", "locus")] + rest)

    def simulate(self, scale, base=()) -> tuple[tuple[str, str], ...]:
        """`base` (the curve's own `--simulate` pairs, e.g. world=additive, applied at every point) merged with this
        point's `overrides`; the point's own key wins. Without `base` it is `overrides`, so the caches are shared."""
        merged = dict(simulate_pairs(base))
        merged.update(self.overrides(scale))
        return tuple(merged.items())


# the keys the grid sets at each point (--cells, --depth-cells, --depths); --simulate may not set them
GRID_KEYS = {"n_cells": "--cells/--depth-cells", "umi_per_cell": "--depths", "screen_cells": "--screen-cells",
             "screen_library": "--screen-extras", "confounding": "--screen-extras"}
# the screen axis' single points at its largest size (`screen_points`): another library, a confounded population,
# another world
SCREEN_EXTRAS = {"genome": (("screen_library", "genome"),), "confounding": (("confounding", "1"),),
                 "mixed": (("world", "mixed"),)}


def check_simulate(simulate) -> tuple[tuple[str, str], ...]:
    """The curve's base `--simulate` pairs; UserError when one sets what the grid varies (cells, depth)."""
    pairs = simulate_pairs(simulate)
    clash = [k for k, _ in pairs if k in GRID_KEYS]
    if clash:
        raise UserError(f"--simulate {' '.join(f'{k}={v}' for k, v in pairs if k in GRID_KEYS)}: the fidelity curve "
                        f"sets {' and '.join(clash)} at each point; use {' and '.join(GRID_KEYS[k] for k in clash)} "
                        f"instead")
    return pairs


def curve_points(cells, depths=(), depth_cells=None, reference_cells=(), umi: float = 6000.0,
                 styles=("paired",)) -> list[CurvePoint]:
    """The grid: each of `styles` at every cell count (default depth) and at each extra depth on `depth_cells`, and
    the reference style at `reference_cells`; by cell count, so a partial curve has its small points."""
    points = [CurvePoint(s, int(n), umi) for n in cells for s in styles]
    points += [CurvePoint(s, int(depth_cells), float(d)) for d in depths if float(d) != umi for s in styles]
    points += [CurvePoint("reference", int(n), umi) for n in reference_cells]
    return ordered(points)


def ordered(points: list[CurvePoint]) -> list[CurvePoint]:
    """The points once each, by cell count, depth and screen, so a partial curve has its small points."""
    unique = list(dict.fromkeys(points))
    order = {"paired": 0, "locus": 1, "reference": 2, "screen": 3}
    return sorted(unique, key=lambda p: (p.n_cells, p.umi_per_cell, p.screen_cells, p.variant,
                                         order.get(p.style, 4)))


def screen_points(screen_cells, n_cells: int, umi: float, extras=tuple(SCREEN_EXTRAS)) -> list[CurvePoint]:
    """The screen axis: the screen style with a locus library at each of `screen_cells` beside `n_cells`
    observational cells (0: no screen, so the paired style the screen style builds on), and each of `extras`
    (`SCREEN_EXTRAS`) as one point at the largest screen."""
    points = [CurvePoint("screen", n_cells, umi, int(s)) if int(s) else CurvePoint("paired", n_cells, umi)
              for s in screen_cells]
    largest = max((int(s) for s in screen_cells), default=0)
    if largest:
        points += [CurvePoint("screen", n_cells, umi, largest, SCREEN_EXTRAS[e]) for e in extras]
    return points


# ------------------------------------------------------------------------------------------------ pure metrics
def method_means(records: list[dict], methods, L: int) -> pd.DataFrame:
    """jobs × methods table of Rel Δ (%) at L (rows: 'cell type/gene'). A job that measured a Rel Δ counts whatever
    its status (not_converged, time_limit: the leaderboards flag them, they still closed peaks); a failed job is NaN."""
    rows = [{"job": f"{r['cell_type']}/{r['gene']}", "method": r["method"],
             "rel": r.get("rel_delta_pct") if r.get("status") != "failed" and r.get("rel_delta_pct") is not None
             else np.nan}
            for r in records if r["L"] == L and r["method"] in methods]
    table = pd.DataFrame(rows).pivot_table(index="job", columns="method", values="rel", aggfunc="mean",
                                           dropna=False)
    return table.reindex(columns=[m for m in methods if m in table.columns])


def tier_tau(surrogate: pd.DataFrame, truth: pd.DataFrame) -> float:
    """Kendall τ-b between the methods' Avg Rel Δ on the surrogate and on the truth model, over the jobs both
    tables hold (range [−1, 1], ↑; 1 = the tiers rank the methods alike). NaN with fewer than two methods."""
    jobs = surrogate.index.intersection(truth.index)
    methods = [m for m in surrogate.columns if m in truth.columns]
    a, b = surrogate.loc[jobs, methods].mean(), truth.loc[jobs, methods].mean()
    keep = a.notna() & b.notna()
    if keep.sum() < 2:
        return float("nan")
    return float(stats.kendalltau(a[keep], b[keep]).statistic)


def bootstrap_tau(surrogate: pd.DataFrame, truth: pd.DataFrame, n_boot: int = 1000, seed: int = 0,
                  level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of `tier_tau` with the jobs resampled with replacement (the same draw in both tiers)."""
    jobs = surrogate.index.intersection(truth.index)
    if len(jobs) < 2:
        return float("nan"), float("nan")
    s, t = surrogate.loc[jobs], truth.loc[jobs]
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(jobs), len(jobs))
        taus.append(tier_tau(s.iloc[pick].reset_index(drop=True), t.iloc[pick].reset_index(drop=True)))
    taus = np.asarray(taus)
    taus = taus[np.isfinite(taus)]
    if not taus.size:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    return float(np.quantile(taus, alpha)), float(np.quantile(taus, 1 - alpha))


def best_method(table: pd.DataFrame) -> str:
    """The method with the lowest Avg Rel Δ (most suppression)."""
    means = table.mean()
    return str(means.idxmin()) if means.notna().any() else ""


# ------------------------------------------------------------------------------------------------ the curve
def measure_point(point: CurvePoint, scale: str, seed: int, methods, genes, L: int, n_boot: int, cache_dir,
                  device: str, progress: bool, simulate=()) -> dict:
    """Train (or reuse) the point's surrogate, measure its fidelity and both tiers' jobs; one COLUMNS row.
    `simulate`: the curve's base `--simulate` pairs (`CurvePoint.simulate`)."""
    t0 = time.perf_counter()
    inputs = Inputs(scale=scale, seed=seed, cache_dir=cache_dir, simulate=point.simulate(SCALES[scale], simulate))
    data, truth, markers = load_inputs(inputs)
    profile = profile_for(scale).for_cells(data.n_cells)
    model = fit_surrogate(profile, data, point.style, device=device, cache_dir=cache_dir, progress=progress)
    meta = meta_of(model)
    cis = f" + cis layer {meta['cis_epochs']} epochs" if "cis_epochs" in meta else ""
    row = {"style": point.style, "n_cells": point.n_cells, "umi_per_cell": point.umi_per_cell,
           "screen_cells": point.screen_cells, "screen": point.screen(),
           "train_cells": int((data.obs["split"] == "train").sum()),
           "training": (f"{meta['epochs']} epochs" if "epochs" in meta
                        else f"{'+'.join(map(str, np.atleast_1d(meta.get('steps'))))} steps") + cis,
           "train_seconds": meta.get("seconds")}
    fidelity = marker_fidelity(model, data, markers)
    row["marker_r2"] = fidelity.marker_r2 if fidelity is not None else float("nan")
    pairs = marker_genes_in(data, markers, truth.genes)
    inter = interventional_fidelity(model, data, truth, pairs, seed=seed)
    planted = inter.table[inter.table["kind"] == "all planted"]
    row.update(interventional_spearman=inter.spearman, group_member_ratio_surrogate=inter.group_ratio_surrogate,
               group_member_ratio_truth=inter.group_ratio_oracle,
               pooled_ratio_surrogate=pooled_group_member_ratio(inter.table, "surrogate_rel_pct"),
               pooled_ratio_truth=pooled_group_member_ratio(inter.table, "oracle_rel_pct"),
               **locus_redundancy(data, truth, pairs),
               all_planted_surrogate_pct=float(planted["surrogate_rel_pct"].mean()),
               all_planted_truth_pct=float(planted["oracle_rel_pct"].mean()))
    if methods:
        tiers, spent = {}, 0.0
        for tier in ("surrogate", "truth"):
            base = profile.for_truth_tier() if tier == "truth" else profile
            plan = plan_run(base, data, markers, methods=list(methods), Ls=[L],
                            genes=genes or default_pairs(markers, data),
                            truth_available=True)
            explained = TruthModel(truth, data.n_peaks) if tier == "truth" else model
            records = run_plan(plan, explained, data, truth, "truth" if tier == "truth" else point.style,
                               cache_dir=cache_dir, progress=progress)
            spent += sum(r.get("seconds") or 0.0 for r in records)
            tiers[tier] = method_means(records, methods, L)
            row[f"avg_{tier}"] = tiers[tier].mean().round(3).to_dict()  # each method's Avg Rel Δ (%) on this tier
        low, high = bootstrap_tau(tiers["surrogate"], tiers["truth"], n_boot=n_boot, seed=seed)
        row.update(tau_tiers=tier_tau(tiers["surrogate"], tiers["truth"]), tau_low=low, tau_high=high,
                   n_jobs=len(tiers["surrogate"]), winner_surrogate=best_method(tiers["surrogate"]),
                   winner_truth=best_method(tiers["truth"]), jobs_seconds=spent)
    row["point_seconds"] = time.perf_counter() - t0
    return row


def run_data_curve(scale: str = "quick", *, seed: int = 0, points: list[CurvePoint], methods=TAU_METHODS,
                   genes=None, L: int = 10, n_boot: int = 1000, cache_dir=None, device: str = "auto", out=None,
                   progress: bool = True, simulate=()) -> pd.DataFrame:
    """Every point of the grid (see the module docstring); the table is rewritten to `out` after each point, so
    an interrupted curve leaves the points it finished (and a rerun reuses their checkpoints and jobs).
    `simulate`: `--simulate` overrides (pairs or a dict, e.g. world=additive) applied at every point; the grid's
    n_cells and umi_per_cell are the points' own (a UserError if given here). Every point's data passes the
    simulator's checks before anything trains."""
    from tqdm.auto import tqdm

    if methods:
        check_methods(methods)
    simulate = check_simulate(simulate)
    for point in points:
        Inputs(scale=scale, seed=seed, simulate=point.simulate(SCALES[scale], simulate)).simulation_scale()
    t0 = time.perf_counter()
    rows = []
    bar = tqdm(points, desc="fidelity curve", unit="point", disable=not progress, position=0)
    for point in bar:
        bar.set_postfix_str(f"{point.style}, {point.n_cells} cells, {point.umi_per_cell:g} UMI"
                            + (f", {point.screen_cells} screened ({point.screen()})" if point.screen_cells else ""))
        rows.append(measure_point(point, scale, seed, methods, genes, L, n_boot, cache_dir, device, progress,
                                  simulate=simulate))
        table = pd.DataFrame(rows, columns=[c for c in COLUMNS if any(c in r for r in rows)])
        if out is not None:
            write_method_means(rows, Path(out))
            write_data_curve(table, Path(out), {"scale": scale, "seed": seed, "L": L, "methods": list(methods or ()),
                                                "genes": list(genes or ()), "n_boot": n_boot,
                                                "simulate": dict(simulate),
                                                "wall_seconds": round(time.perf_counter() - t0, 1),
                                                "points_done": len(rows), "points": len(points)})
    return table


# ------------------------------------------------------------------------------------------------ output
def write_data_curve(table: pd.DataFrame, out: Path, facts: dict) -> list[Path]:
    """fidelity_curve.csv / .md / .png and run.json in `out` (fidelity_curve_methods.csv: `write_method_means`)."""
    out.mkdir(parents=True, exist_ok=True)
    plot_data_curve(table, out / "fidelity_curve.png")
    screened = screen_rows(table)
    if (table.loc[screened, "screen_cells"] > 0).any():
        plot_screen_curve(table[screened], out / "screen_curve.png")
    changed = "".join(f", {k}={v}" for k, v in (facts.get("simulate") or {}).items())
    md = [f"# Surrogate fidelity against data ({facts['scale']} genes and peaks{changed}, seed {facts['seed']})", "",
          curve_header(facts), "", "![](fidelity_curve.png)", "", curve_markdown(table), ""]
    if "screen_cells" in table and (table["screen_cells"] > 0).any():
        md[5:5] = ["![](screen_curve.png)", ""]
    return [atomic_write(out / "fidelity_curve.csv", table.to_csv(index=False)),
            atomic_write(out / "fidelity_curve.md", "\n".join(md)),
            atomic_write(out / "run.json", json.dumps(facts, indent=1) + "\n"), out / "fidelity_curve.png"]


def write_method_means(rows: list[dict], out: Path) -> Path:
    """fidelity_curve_methods.csv: every point's Avg Rel Δ (%) per method on the surrogate and the truth tier, the
    numbers each τ ranks (long: style, n_cells, umi_per_cell, method, surrogate, truth)."""
    long = [{"style": r["style"], "n_cells": r["n_cells"], "umi_per_cell": r["umi_per_cell"],
             "screen_cells": r.get("screen_cells", 0), "screen": r.get("screen", ""), "method": m,
             "surrogate": r["avg_surrogate"].get(m), "truth": r.get("avg_truth", {}).get(m)}
            for r in rows if "avg_surrogate" in r for m in r["avg_surrogate"]]
    out.mkdir(parents=True, exist_ok=True)
    return atomic_write(out / "fidelity_curve_methods.csv", pd.DataFrame(long).to_csv(index=False))


def curve_header(facts: dict) -> str:
    done = "" if facts["points_done"] == facts["points"] else \
        f" **Partial: {facts['points_done']} of {facts['points']} points.**"
    methods = ", ".join(facts["methods"]) or "none (fidelity only)"
    return (f"τ: Kendall τ-b between the surrogate-tier and the truth-tier ranking of {methods} by Avg Rel Δ at "
            f"L = {facts['L']}, over the first marker gene of each cell type (same jobs in both tiers); [low, high] "
            f"is a 95 % percentile bootstrap over jobs ({facts['n_boot']} draws). Group/member: Rel Δ of closing a "
            f"whole redundant group over the sum of closing each member alone (1 = additive), averaged over groups; "
            f"pooled: Σ groups / Σ members. locus_*: a per-locus diagnostic model told where the planted peaks are "
            f"(bench/fidelity/locus_diagnostic.py), fitted on the same training cells: its pooled ratio (what the data "
            f"identify) and how much lower its test MSE is with OR terms than without (%). "
            f"Wall time {facts['wall_seconds']:.0f} s on this machine (cached checkpoints and jobs count as "
            f"their lookup time).{done}")


def curve_markdown(table: pd.DataFrame) -> str:
    shown = table.drop(columns=[c for c in ("winner_surrogate", "winner_truth") if c in table]).copy()
    shown["umi_per_cell"] = shown["umi_per_cell"].map(lambda u: f"{u:,.0f}")
    if "tau_tiers" in shown:
        shown["tau_tiers"] = [f"{t:+.2f} [{lo:+.2f}, {hi:+.2f}]" for t, lo, hi in
                              zip(table["tau_tiers"], table["tau_low"], table["tau_high"])]
        shown = shown.drop(columns=["tau_low", "tau_high"])
        shown["winner (surrogate / truth)"] = table["winner_surrogate"] + " / " + table["winner_truth"]
    return tabulate(shown.round(3).values.tolist(), headers=list(shown.columns), tablefmt="github",
                    disable_numparse=False, floatfmt=".3g")


def screen_rows(table: pd.DataFrame) -> pd.Series:
    """Rows of the screen axis: screen-style points (0 screened cells: the paired point beside them)."""
    if "screen_cells" not in table:
        return pd.Series(False, index=table.index)
    screened = table["screen_cells"].fillna(0) > 0
    observed_n = table.loc[screened, "n_cells"].unique()
    return screened | ((table["style"] == "paired") & table["n_cells"].isin(observed_n) & ~screened)


def _save(fig, axes, path: Path) -> None:
    import matplotlib.pyplot as plt

    axes[0][0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_screen_curve(table: pd.DataFrame, path: Path) -> None:
    """screen_curve.png: each fidelity number and τ against screened cells (locus library; the single points of
    the other libraries, confounding and worlds as markers at the largest screen)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("interventional_spearman", "interventional Spearman"), ("group_member_ratio_surrogate",
              "group / Σ members"), ("all_planted_surrogate_pct", "all planted closed: Rel Δ (%)"),
              ("tau_tiers", "τ (surrogate vs truth tier)")]
    panels = [p for p in panels if p[0] in table]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    screen = table["screen"].fillna("").replace("", "locus")
    for ax, (col, label) in zip(axes[0], panels):
        main = table[screen == "locus"].sort_values("screen_cells")
        line = ax.plot(main["screen_cells"], main[col], marker="o", label="locus library")[0]
        if col == "tau_tiers":
            ax.vlines(main["screen_cells"], main["tau_low"], main["tau_high"], color=line.get_color(), alpha=0.5)
        for name, part in table[screen != "locus"].groupby(screen[screen != "locus"], sort=False):
            ax.plot(part["screen_cells"], part[col], marker="s", ls="", label=name)
        if col == "group_member_ratio_surrogate":
            ax.axhline(float(table["group_member_ratio_truth"].iloc[0]), color="black", ls="--", lw=1, label="truth")
        if col == "all_planted_surrogate_pct":
            ax.axhline(float(table["all_planted_truth_pct"].iloc[0]), color="black", ls="--", lw=1, label="truth")
        ax.set_xscale("symlog", linthresh=1000)
        ax.set_xlabel("screened cells")
        ax.set_title(label, fontsize=10)
    _save(fig, axes, path)


def plot_data_curve(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "screen_cells" in table:  # the screen axis has its own figure (`plot_screen_curve`)
        table = table[table["screen_cells"].fillna(0) == 0]
    panels = [("marker_r2", "marker R²", None), ("interventional_spearman", "interventional Spearman", None),
              ("group_member_ratio_surrogate", "group / Σ members", "group_member_ratio_truth"),
              ("tau_tiers", "τ (surrogate vs truth tier)", None)]
    panels = [p for p in panels if p[0] in table]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    base_umi = table["umi_per_cell"].mode().iloc[0]
    for ax, (col, label, ref) in zip(axes[0], panels):
        for (style, umi), part in table.groupby(["style", "umi_per_cell"], sort=False):
            part = part.sort_values("n_cells")
            name = style if umi == base_umi else f"{style}, {umi:g} UMI"
            line = ax.plot(part["n_cells"], part[col], marker="o" if umi == base_umi else "s", label=name)[0]
            if col == "tau_tiers":
                ax.vlines(part["n_cells"], part["tau_low"], part["tau_high"], color=line.get_color(), alpha=0.5)
        if ref:
            truth = table.groupby("n_cells")[ref].mean()
            ax.plot(truth.index, truth.values, color="black", ls="--", lw=1, label="truth")
        ax.set_xscale("log")
        ax.set_xlabel("cells (all splits)")
        ax.set_title(label, fontsize=10)
    _save(fig, axes, path)
