"""Leaderboards of fixed-seed tiny runs against committed expected files in tests/data/: the methods a file pins on
the paired surrogate, and five methods on the reference-style surrogate (its training is covered too).

What must hold on any CPU, and why (a refactor must leave all of it unchanged):

* **Selected peaks, statuses and identifiers: exactly.** A selection is integers decided by comparisons, so it
  moves only when two candidates tie to within float32 rounding; none does in these runs: the peak-set metrics
  (truth recall, fraction on the chromosome, TSS distance) of the leaderboard files, made on one Intel machine,
  came out identical on an AMD EPYC and on another Intel Xeon model, where only the last digits of Rel Δ moved.
  Peak *sets* are compared, so two tied peaks trading places inside a selection are not a change.
* **Metrics: within `TOLERANCE`, in each metric's own unit.** The surrogate trains and predicts in float32, and
  float32 sums are split differently on another CPU model (another SIMD width, another BLAS kernel): the same runs
  differed from the leaderboard files by up to 1.2e-6 points of Rel Δ on an AMD EPYC and 4.1e-6 points on another
  Xeon (the reference case; 1.2e-6 for the paired one). 1e-4 points is 25× the largest of those and the rounding
  floor of one evaluation (float32's 6e-7 on ~5 log-units of ŷ, ×100: 6e-5 points; the same bound makes two
  evaluations of one peak set a tie in `bench.reporting.report.TIE_TOL`), while any change of a selection moves Rel Δ by
  far more. What it can miss: the tiny surrogate barely responds (|Rel Δ| ≤
  0.04 %), so on a job with Rel Δ ≈ −0.001 % a 10 % change of the evaluator's number would go unseen (on the
  typical ≈ −0.01 %, a 1 % change). `test_the_comparison_tolerates_rounding_but_not_a_real_change` shows both
  sides with a perturbed copy of the file.

Same-machine bit-identity is checked elsewhere (tests/test_resume.py: runs repeat bit for bit). Regenerate the
files only together with a deliberate change of a method's, the evaluator's, the simulator's or the surrogate's
behaviour, and say so in the commit:

    GRIDS_BENCH_REGENERATE_GOLDEN=1 pytest tests/test_golden_leaderboard.py

A new explainer does not touch these files: the run pins the methods its file lists (regenerating adds every
default method).
"""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main

DATA = Path(__file__).parent / "data"
ARGV = ["run", "--scale", "tiny", "--no-progress", "--cell-types", "Oligo", "--L", "3,8"]
CASES = {  # expected file: extra arguments (without --methods: the methods the file lists)
    "tiny_leaderboard.csv": [],  # the default registry when the file was made, on the default (paired) surrogate
    "tiny_leaderboard_reference.csv": ["--surrogate", "reference", "--methods",
                                       "grids,input-x-gradient,fimap,random,oracle"],  # the reference training
}
ID_COLS = ["method", "L", "cell_type", "gene", "seed"]
MEASURED = ("seconds", "peak_rss_mb", "explain_seconds", "rss_increase_mb")  # machine-dependent, not compared
# absolute tolerance per metric, in its unit (see the module docstring); `_stderr` columns share their metric's
TOLERANCE = {
    "rel_delta_pct": 1e-4, "off_target_pct": 1e-4, "first_order_rel_delta_pct": 1e-4,  # percentage points
    "oracle_rel_delta_pct": 1e-4,  # percentage points (float64 truth, so exact up to summation order)
    "avg_delta": 1e-5,  # normalised counts: 1e-4 points of Rel Δ on the tiny run's ~6 counts is 6e-6
    "frac_on_target_chrom": 1e-9, "truth_recall": 1e-9,  # fractions of the (exact) peak set
    "median_tss_distance": 1e-6,  # bp, of the (exact) peak set
}


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    drop = [c for c in frame.columns if c.removesuffix("_stderr").removesuffix("_ci95") in MEASURED]
    return frame.drop(columns=drop).sort_values(ID_COLS).reset_index(drop=True)


def selections(jobs_jsonl: Path) -> pd.DataFrame:
    """One row per job: its identifiers, status and its selected peaks as a sorted, space-separated set."""
    rows = []
    for line in jobs_jsonl.read_text().splitlines():
        r = json.loads(line)
        rows.append({**{c: r[c] for c in ID_COLS}, "status": r["status"],
                     "peaks": " ".join(str(p) for p in sorted(r.get("peaks") or []))})
    return pd.DataFrame(rows).sort_values(ID_COLS).reset_index(drop=True)


def assert_same_leaderboard(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """`got` equals `want` as this module defines it: identifiers and text exactly, each metric within
    `TOLERANCE` in its unit, counts exactly. Raises AssertionError naming the column."""
    got, want = _comparable(got), _comparable(want)
    missing = [c for c in want.columns if c not in got.columns]
    assert not missing, f"columns gone from leaderboard.csv: {missing}"  # new columns may be added
    assert got[ID_COLS].astype(str).equals(want[ID_COLS].astype(str)), "the jobs and aggregate rows differ"
    for col in want.columns:
        if col in ID_COLS:
            continue
        if pd.api.types.is_numeric_dtype(want[col]) and want[col].notna().any():
            metric = col.removesuffix("_stderr").removesuffix("_ci95")
            atol = TOLERANCE.get(metric, 0.0)  # counts (n_jobs, n_cell_types) exactly
            np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), rtol=0, atol=atol,
                                       equal_nan=True, err_msg=f"{col} (tolerance {atol:g})")
        else:
            assert got[col].fillna("").astype(str).tolist() == want[col].fillna("").astype(str).tolist(), col


def _selection_file(expected: str) -> Path:
    return DATA / expected.replace("leaderboard", "selections")


def _pinned_methods(expected: str) -> list[str]:
    return sorted(set(pd.read_csv(DATA / expected)["method"]))


@pytest.mark.parametrize("expected", list(CASES))
def test_tiny_leaderboard_is_unchanged(tmp_path, monkeypatch, expected):
    monkeypatch.setenv("GRIDS_BENCH_CACHE", str(tmp_path / "cache"))
    regenerate = bool(os.environ.get("GRIDS_BENCH_REGENERATE_GOLDEN"))
    extra = CASES[expected]
    if "--methods" not in extra and not regenerate:
        extra = [*extra, "--methods", ",".join(_pinned_methods(expected))]
    assert main([*ARGV, *extra, "--out", str(tmp_path / "out")]) == 0
    got = pd.read_csv(tmp_path / "out" / "leaderboard.csv")
    picked = selections(tmp_path / "out" / "jobs.jsonl")
    if regenerate:
        _comparable(got).to_csv(DATA / expected, index=False)
        picked.to_csv(_selection_file(expected), index=False)
        pytest.skip(f"regenerated {DATA / expected} and {_selection_file(expected)}")
    assert_same_selections(picked, expected)
    assert_same_leaderboard(got, pd.read_csv(DATA / expected))


def assert_same_selections(picked: pd.DataFrame, expected: str) -> None:
    """`selections` of a run equal the committed ones of the `expected` leaderboard file (sets, statuses, exactly)."""
    want_picked = pd.read_csv(_selection_file(expected), dtype={"peaks": str}, keep_default_na=False)
    differ = picked.astype(str).merge(want_picked.astype(str), how="outer", indicator=True)
    differ = differ[differ["_merge"] != "both"].assign(
        _merge=lambda f: f["_merge"].astype(str).map({"left_only": "this run", "right_only": "expected"}))
    assert differ.empty, f"selected peaks or statuses changed:\n{differ.to_string(index=False)}"


def test_the_comparison_tolerates_rounding_but_not_a_real_change():
    want = pd.read_csv(DATA / "tiny_leaderboard.csv")
    rel = want["rel_delta_pct"].notna()
    assert rel.sum() > 100
    rounding = want.copy()
    rounding.loc[rel, "rel_delta_pct"] += 2e-6 * np.where(np.arange(rel.sum()) % 2, 1, -1)  # ~2× the AMD drift
    assert_same_leaderboard(rounding, want)
    change = want.copy()
    change.loc[change.index[rel][0], "rel_delta_pct"] += 1e-3  # one job, a thousandth of a point
    with pytest.raises(AssertionError, match="rel_delta_pct"):
        assert_same_leaderboard(change, want)
    gone = want[want["method"] != "random"]
    with pytest.raises(AssertionError, match="jobs and aggregate rows differ"):
        assert_same_leaderboard(gone, want)

