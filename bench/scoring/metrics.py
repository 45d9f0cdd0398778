"""Evaluation metrics: small pure functions, each registered with its direction.

Surrogate metrics follow the paper: ŷ is the surrogate's log-scale prediction (log1p of normalised counts), the
expression change is taken in count space, exp(ŷ_closed) − exp(ŷ_orig) (the +1 of log1p cancels), over the
held-out (test) cells of the gene's cell type. Negative = suppression; more negative = better explanation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# How tables print a metric (its unit and sign convention):
#   "points" — percentage points, signed (+ / −: the direction of the change matters);
#   "points≥0" — percentage points of a magnitude, never negative, printed without a sign;
#   "counts" — normalised counts, signed;
#   "fraction" — a share in [0, 1], printed as 0.35 without a sign;
#   "bp" — a genomic distance, never negative and skewed: printed in bp / kb / Mb, summarised by medians;
#   "percent" — a percentage of a reference (100 = the reference), printed without '+' (a negative keeps its '−').
UNITS = ("points", "points≥0", "counts", "fraction", "bp", "percent")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    label: str  # column header in tables
    higher_is_better: bool | None  # None: context only, no "best"
    fn: Callable[..., float]
    description: str = ""
    unit: str = "points"  # one of UNITS

    @property
    def signed(self) -> bool:
        """Whether the value can be negative, so its sign is printed."""
        return self.unit in ("points", "counts")

    @property
    def skewed(self) -> bool:
        """Summarised by the median and interquartile range instead of a mean ± t-interval."""
        return self.unit == "bp"

    @property
    def arrow(self) -> str:
        return {True: "↑", False: "↓", None: ""}[self.higher_is_better]


METRICS: dict[str, MetricSpec] = {}


def metric(name: str, label: str, higher_is_better: bool | None, unit: str = "points"):
    if unit not in UNITS:
        raise ValueError(f"metric {name!r}: unit must be one of {UNITS}, got {unit!r}")

    def wrap(fn):
        if name in METRICS:
            raise ValueError(f"metric {name!r} registered twice")
        METRICS[name] = MetricSpec(name, label, higher_is_better, fn, (fn.__doc__ or "").strip().splitlines()[0], unit)
        return fn

    return wrap


@metric("avg_delta", "Avg Δ", higher_is_better=False, unit="counts")
def avg_delta(y_orig: np.ndarray, y_closed: np.ndarray) -> float:
    """Mean expression change, mean_c [exp(ŷ_closed) − exp(ŷ_orig)], in normalised counts; range ℝ, ↓ better."""
    y_orig, y_closed = np.asarray(y_orig, np.float64), np.asarray(y_closed, np.float64)
    return float(np.mean(np.exp(y_closed) - np.exp(y_orig)))


@metric("rel_delta_pct", "Rel Δ (%)", higher_is_better=False)
def rel_delta_pct(y_orig: np.ndarray, y_closed: np.ndarray) -> float:
    """Mean relative change, 100 · mean_c [(exp(ŷ_closed) − exp(ŷ_orig)) / exp(ŷ_orig)]; range [−100, ∞), ↓."""
    y_orig, y_closed = np.asarray(y_orig, np.float64), np.asarray(y_closed, np.float64)
    return float(100.0 * np.mean(np.expm1(y_closed - y_orig)))


@metric("off_target_pct", "Off-target |Rel Δ| (%)", higher_is_better=False, unit="points≥0")
def off_target_pct(y_orig: np.ndarray, y_closed: np.ndarray, target: int) -> float:
    """Specificity: mean over the *other* genes of |100 · mean_c expm1(ŷ_closed − ŷ_orig)|; range [0, ∞), ↓ better.

    y_orig, y_closed: cells × genes log-scale predictions; `target` is the explained gene's column."""
    rel = 100.0 * np.mean(np.expm1(np.asarray(y_closed, np.float64) - np.asarray(y_orig, np.float64)), axis=0)
    return float(np.mean(np.abs(np.delete(rel, target)))) if rel.size > 1 else float("nan")


@metric("first_order_rel_delta_pct", "First-order Rel Δ (%)", higher_is_better=None)
def first_order_rel_delta_pct(delta_first_order: np.ndarray) -> float:
    """Rel Δ (%) the surrogate's linearisation predicts, 100 · mean_c expm1(Δŷ_c) with Δŷ_c = −Σ_{j∈S} x_cj ∂ŷ_c/∂x_cj
    (gradients at the unperturbed cell); context, no direction. Next to the actual Rel Δ it shows how linear the
    surrogate is over the selected set: where they agree, ranking single peaks is as good as a subset search."""
    return float(100.0 * np.mean(np.expm1(np.asarray(delta_first_order, np.float64))))


@metric("oracle_rel_delta_pct", "Oracle Rel Δ (%)", higher_is_better=False)
def oracle_rel_delta_pct(e_orig: np.ndarray, e_closed: np.ndarray) -> float:
    """Relative change of the simulator's true mean expression, 100 · mean_c (E_closed − E)/E; ↓ better."""
    e_orig, e_closed = np.asarray(e_orig, np.float64), np.asarray(e_closed, np.float64)
    return float(100.0 * np.mean((e_closed - e_orig) / e_orig))


@metric("truth_recall", "Truth recall", higher_is_better=True, unit="fraction")
def truth_recall(selected, planted) -> float:
    """Fraction of the gene's planted regulatory peaks that were selected, |S ∩ P| / |P|; range [0, 1], ↑."""
    planted = set(int(p) for p in planted)
    if not planted:
        return float("nan")
    return len(planted & set(int(s) for s in selected)) / len(planted)


@metric("optimum_rel_delta_pct", "Optimum Rel Δ (%)", higher_is_better=None)
def optimum_rel_delta_pct(y_orig: np.ndarray, y_best: np.ndarray) -> float:
    """Truth tier: Rel Δ (%) of the exact best closure of at most L peaks on the same cells (the model's
    `best_closure`), evaluated like any method's; context: the floor no method can go below."""
    return rel_delta_pct(y_orig, y_best)


@metric("pct_of_optimum", "% of optimum", higher_is_better=True, unit="percent")
def pct_of_optimum(rel: float, optimum: float) -> float:
    """Truth tier: 100 · Rel Δ_method / Rel Δ_optimum — 100 = the method's closure is optimal, 0 = it changes
    nothing, < 0 = it raises the gene; NaN where the optimum is 0 (nothing to suppress). Never clamped: a value
    above 100 by more than float rounding (1e-6) would be a bug, since the optimum is exact."""
    if not np.isfinite(rel) or not np.isfinite(optimum) or optimum == 0:
        return float("nan")
    return float(100.0 * rel / optimum)


GROUP_SIZES = (2, 3, 4)  # the simulator's redundant group sizes, for the truth tier's breakdown


def closure_kinds(peaks, units: dict, prefix: str = "") -> dict[str, int]:
    """What a closure of a gene's peaks was made of (truth tier). `units` is the gene's planted regulation
    (`SyntheticTruth.units`: promoter, groups, coops, singles, silencers, shared). Counts: `n_promoter`;
    `n_group_whole` (peaks of OR groups closed whole, which removes the group's weight); `n_group_partial` (peaks
    spent on an OR group that stays open: no effect while another member is open); `n_single` (single enhancers);
    `n_background` (peaks that do not regulate the gene); per group size s, `groups_closed_s`. Where the world has
    them (absent otherwise, so the redundant world's records keep their fields): `coops_broken` (AND units with at
    least one member closed: each loses its whole weight), `n_coop_extra` (further members closed in an AND unit
    already broken: no further effect), `n_silencer` (silencers closed: each *raises* the gene) and `n_shared`
    (closed peaks that also regulate another gene: closing them costs specificity)."""
    sel = {int(p) for p in peaks}
    groups = [{int(j) for j in g} for g in units.get("groups", ())]
    coops = [{int(j) for j in c} for c in units.get("coops", ())]
    promoter, singles = {int(j) for j in units.get("promoter", ())}, {int(j) for j in units.get("singles", ())}
    silencers, shared = {int(j) for j in units.get("silencers", ())}, {int(j) for j in units.get("shared", ())}
    whole = [g for g in groups if g <= sel]
    planted = set().union(*groups, *coops, promoter, singles, silencers)
    out = {"n_promoter": len(sel & promoter), "n_group_whole": sum(len(g) for g in whole),
           "n_group_partial": sum(len(g & sel) for g in groups if not g <= sel),
           "n_single": len(sel & singles), "n_background": len(sel - planted)}
    out.update({f"groups_closed_{k}": sum(len(g) == k for g in whole) for k in GROUP_SIZES})
    if coops:
        hit = [len(c & sel) for c in coops]
        out.update(coops_broken=sum(h > 0 for h in hit), n_coop_extra=sum(max(h - 1, 0) for h in hit))
    if silencers:
        out["n_silencer"] = len(sel & silencers)
    if shared:
        out["n_shared"] = len(sel & shared)
    return {prefix + k: v for k, v in out.items()}


# Genomic context (bench/scoring/genomic.py): reported beside Avg Δ / Rel Δ when peak coordinates exist; no "better".
from scipy import stats

from bench.scoring.genomic import fraction_on_target_chrom, median_tss_distance  # noqa: E402

metric("frac_on_target_chrom", "On gene's chrom", higher_is_better=None, unit="fraction")(fraction_on_target_chrom)
metric("median_tss_distance", "Median TSS distance", higher_is_better=None, unit="bp")(median_tss_distance)


# ---------------------------------------------------------------------------------------------- uncertainty
@dataclass(frozen=True)
class IntervalSpec:
    """How every table states the uncertainty of a mean (one estimator for the whole benchmark)."""

    name: str
    label: str
    fn: Callable[[np.ndarray], tuple[float, float]]  # values → (mean, half-width)
    description: str


def t_interval(values) -> tuple[float, float]:
    """(mean, half-width of the 95 % t-interval t_{0.975, n−1} · sd(ddof=1) / √n); half-width NaN for n < 2,
    both NaN for no finite value. NaN values are left out."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))


INTERVAL = IntervalSpec(
    "ci95", "95 % CI", t_interval,
    "± is the half-width of a 95 % t-interval: over the genes of a cell-type row (a gene's seeds and surrogate "
    "seeds averaged first), and over the cell-type means for a method's Avg (each cell type counts once, as in the "
    "paper's Table 1), so an Avg's ± is the spread between cell types; the paired tests of the discrimination "
    "tables separate methods more finely. No ± where there is one value.")


def cell_type_average(jobs, column: str, by: tuple[str, ...] = ()):
    """The leaderboard's Avg of per-job values in `jobs` (a DataFrame with `cell_type`, `gene`): a gene's
    replicates averaged, then the genes of a cell type, then the cell types (each counts once, as in the paper's
    Table 1). NaN values are left out. A float, or with `by` a Series indexed by those columns."""
    per_gene = jobs.groupby([*by, "cell_type", "gene"])[column].mean()
    per_type = per_gene.groupby(level=[*by, "cell_type"]).mean()
    return per_type.groupby(level=list(by)).mean() if by else float(per_type.mean())
