"""bench.studies.sweep on tiny dimensions: the three outputs, and a method that raises is recorded as failed."""

from __future__ import annotations

import pandas as pd
import pytest

from methods.base import Budget
from bench.studies.sweep import run_sweep
from methods.fimap import Fimap
from surrogates.model import SurrogateConfig
from surrogates.model import torch_threads


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with torch_threads(1):
        yield


def test_tiny_sweep_writes_outputs_and_records_failures(tmp_path, monkeypatch):
    def boom(self, surrogate, data, gene, L):
        raise RuntimeError("boom mid-run")

    monkeypatch.setattr(Fimap, "explain", boom)
    df = run_sweep(
        dims=(1200, 1600), methods=["lime", "fimap"], budget=Budget(seconds=10, samples=10**6), L=5,
        n_cells=160, n_genes=16, n_chrom=2,
        surrogate_config=SurrogateConfig(emb_dim=4, hidden=16, latent=4, max_epochs=2, min_epochs=1, patience=1),
        method_params={"lime": {"n_cells": 4, "n_samples": 64}}, out=tmp_path, progress=False)

    for name in ("sweep.csv", "sweep.md", "sweep.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert len(df) == 4 and set(df["d"]) == {1200, 1600}
    lime = df[df["method"] == "lime"]
    assert (lime["status"] == "ok").all()
    assert lime["rel_delta_pct"].notna().all() and (lime["explain_seconds"] > 0).all()
    assert lime["rss_increase_mb"].notna().all() and (lime["peak_rss_mb"] > 0).all()
    fimap = df[df["method"] == "fimap"]
    assert (fimap["status"] == "failed").all()
    assert fimap["error"].str.contains("boom mid-run").all() and fimap["rel_delta_pct"].isna().all()
    on_disk = pd.read_csv(tmp_path / "sweep.csv")
    assert list(on_disk["method"]) == list(df["method"])
    md = (tmp_path / "sweep.md").read_text()
    assert "Rel Δ" in md and "failed" in md and "boom mid-run" in md


def test_unknown_method_fails_before_any_work(tmp_path):
    with pytest.raises(KeyError, match="available"):
        run_sweep(dims=(200,), methods=["nope"], out=tmp_path, progress=False)
