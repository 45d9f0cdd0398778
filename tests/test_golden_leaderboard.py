"""Leaderboards of fixed-seed tiny runs against committed expected files in tests/data/: the whole registry on the
paired surrogate, and five methods on the reference-style surrogate (its training is covered too).

Refactors must leave them unchanged: every column except measured time and memory agrees with the expected file
to rtol 1e-4 / atol 1e-7 (float32 surrogate arithmetic; two runs on one machine
agree exactly), statuses and identifiers exactly. Regenerate the file only together with a deliberate change of a
method's, the evaluator's, the simulator's or the surrogate's behaviour, and say so in the commit:

    GRIDS_BENCH_REGENERATE_GOLDEN=1 pytest tests/test_golden_leaderboard.py
"""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main

DATA = Path(__file__).parent / "data"
ARGV = ["run", "--scale", "tiny", "--no-progress", "--cell-types", "Oligo", "--L", "3,8"]
CASES = {  # expected file: extra arguments
    "tiny_leaderboard.csv": [],  # the whole default registry on the default (paired) surrogate
    "tiny_leaderboard_reference.csv": ["--surrogate", "reference", "--methods",
                                       "grids,input-x-gradient,fimap,random,oracle"],  # the reference training
}
MEASURED = ("seconds", "peak_rss_mb", "explain_seconds", "rss_increase_mb")  # machine-dependent, not compared


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    drop = [c for c in frame.columns if c.removesuffix("_stderr") in MEASURED]
    return frame.drop(columns=drop).sort_values(["method", "L", "cell_type", "gene", "seed"]).reset_index(drop=True)


@pytest.mark.parametrize("expected", list(CASES))
def test_tiny_leaderboard_is_unchanged(tmp_path, monkeypatch, expected):
    monkeypatch.setenv("GRIDS_BENCH_CACHE", str(tmp_path / "cache"))
    assert main([*ARGV, *CASES[expected], "--out", str(tmp_path / "out")]) == 0
    got = _comparable(pd.read_csv(tmp_path / "out" / "leaderboard.csv"))
    if os.environ.get("GRIDS_BENCH_REGENERATE_GOLDEN"):
        DATA.mkdir(exist_ok=True)
        got.to_csv(DATA / expected, index=False)
        pytest.skip(f"regenerated {DATA / expected}")
    want = _comparable(pd.read_csv(DATA / expected))
    missing = [c for c in want.columns if c not in got.columns]
    assert not missing, f"columns gone from leaderboard.csv: {missing}"  # new columns may be added
    assert got[["method", "L", "cell_type", "gene", "seed"]].astype(str).equals(
        want[["method", "L", "cell_type", "gene", "seed"]].astype(str))
    for col in want.columns:
        if pd.api.types.is_numeric_dtype(want[col]):
            np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-4, atol=1e-7,
                                       equal_nan=True, err_msg=col)
        else:
            assert got[col].fillna("").astype(str).tolist() == want[col].fillna("").astype(str).tolist(), col
    if not CASES[expected]:  # the run covers the whole default registry: no method's numbers drift unnoticed
        from methods import registry

        assert set(want["method"]) == set(registry.default_methods(truth_available=True))
