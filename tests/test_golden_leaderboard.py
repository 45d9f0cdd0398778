"""The leaderboard of a fixed-seed tiny run of the whole registry, against a committed expected file.

Refactors must leave it unchanged: every column except measured time and memory agrees with
tests/data/tiny_leaderboard.csv to rtol 1e-4 / atol 1e-7 (float32 surrogate arithmetic; two runs on one machine
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

EXPECTED = Path(__file__).parent / "data" / "tiny_leaderboard.csv"
ARGV = ["run", "--scale", "tiny", "--no-progress", "--cell-types", "Oligo", "--L", "3,8"]
MEASURED = ("seconds", "peak_rss_mb", "explain_seconds", "rss_increase_mb")  # machine-dependent, not compared


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    drop = [c for c in frame.columns if c.removesuffix("_stderr") in MEASURED]
    return frame.drop(columns=drop).sort_values(["method", "L", "cell_type", "gene", "seed"]).reset_index(drop=True)


def test_tiny_leaderboard_is_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv("GRIDS_BENCH_CACHE", str(tmp_path / "cache"))
    assert main([*ARGV, "--out", str(tmp_path / "out")]) == 0
    got = _comparable(pd.read_csv(tmp_path / "out" / "leaderboard.csv"))
    if os.environ.get("GRIDS_BENCH_REGENERATE_GOLDEN"):
        EXPECTED.parent.mkdir(exist_ok=True)
        got.to_csv(EXPECTED, index=False)
        pytest.skip(f"regenerated {EXPECTED}")
    want = _comparable(pd.read_csv(EXPECTED))
    assert list(got.columns) == list(want.columns)
    assert got[["method", "L", "cell_type", "gene", "seed"]].astype(str).equals(
        want[["method", "L", "cell_type", "gene", "seed"]].astype(str))
    for col in want.columns:
        if pd.api.types.is_numeric_dtype(want[col]):
            np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-4, atol=1e-7,
                                       equal_nan=True, err_msg=col)
        else:
            assert got[col].fillna("").astype(str).tolist() == want[col].fillna("").astype(str).tolist(), col
    # the run covers the whole default registry, so no method's numbers can drift unnoticed
    from methods import registry

    assert set(want["method"]) == set(registry.default_methods(truth_available=True))
