"""bench/fidelity/data_curve.py: the tier-agreement metrics by hand, the grid, and a tiny curve that resumes from its
caches."""

import numpy as np
import pandas as pd
import pytest

from bench.fidelity.data_curve import CurvePoint, best_method, bootstrap_tau, curve_points, method_means, tier_tau
from datasets.synthetic import SCALES


def _table(rows):
    return pd.DataFrame(rows, index=["A/g1", "B/g2", "C/g3"], columns=["m1", "m2", "m3"])


def test_tier_tau_by_hand():
    sur = _table([[-1, -2, -3], [-1, -2, -3], [-1, -2, -3]])  # Avg −1, −2, −3
    same = _table([[-10, -20, -30]] * 3)
    reversed_ = _table([[-30, -20, -10]] * 3)
    one_swap = _table([[-20, -10, -30]] * 3)  # m1/m2 swapped: 2 concordant, 1 discordant pair → τ = 1/3
    assert tier_tau(sur, same) == pytest.approx(1.0)
    assert tier_tau(sur, reversed_) == pytest.approx(-1.0)
    assert tier_tau(sur, one_swap) == pytest.approx(1 / 3)


def test_bootstrap_ci_brackets_tau_and_collapses_when_every_job_agrees():
    sur = _table([[-1, -2, -3]] * 3)
    lo, hi = bootstrap_tau(sur, _table([[-10, -20, -30]] * 3), n_boot=200)
    assert lo == pytest.approx(1.0) and hi == pytest.approx(1.0)
    noisy = _table([[-1, -2, -3], [-3, -2, -1], [-1, -3, -2]])
    t = tier_tau(sur, noisy)
    lo, hi = bootstrap_tau(sur, noisy, n_boot=500, seed=3)
    assert lo <= t <= hi and lo < hi


def test_method_means_and_best_method_skip_failed_jobs():
    recs = [{"method": m, "cell_type": "A", "gene": "g", "L": 10, "status": "ok", "rel_delta_pct": v}
            for m, v in (("m1", -5.0), ("m2", -1.0))]
    recs.append({"method": "m2", "cell_type": "B", "gene": "h", "L": 10, "status": "failed", "rel_delta_pct": -99.0})
    recs.append({"method": "m1", "cell_type": "B", "gene": "h", "L": 10, "status": "not_converged",
                 "rel_delta_pct": -3.0})  # flagged in the tables, but it measured a Rel Δ: it counts
    table = method_means(recs, ["m1", "m2"], 10)
    assert np.isnan(table.loc["B/h", "m2"])
    assert table["m1"].mean() == pytest.approx(-4.0)
    assert best_method(table) == "m1"


def test_grid_order_and_overrides():
    points = curve_points([5000, 2000], depths=[20000, 6000], depth_cells=5000, reference_cells=[2000],
                          styles=("paired", "locus"))
    assert points[0] == CurvePoint("paired", 2000, 6000.0)
    assert [p.n_cells for p in points] == sorted(p.n_cells for p in points)
    assert CurvePoint("locus", 5000, 20000.0) in points and CurvePoint("reference", 2000, 6000.0) in points
    assert len(points) == len(set(points)) == 7  # 6000 UMI is the default depth, not an extra point
    quick = SCALES["quick"]
    assert CurvePoint("paired", 2000, 6000.0).overrides(quick) == ()  # the scale's own data: caches are shared
    assert CurvePoint("paired", 5000, 20000.0).overrides(quick) == (("n_cells", "5000"), ("umi_per_cell", "20000"))


def test_tiny_curve_writes_its_table_and_resumes_from_the_caches(tmp_path, monkeypatch):
    """The rerun trains no surrogate and computes no job: both are counted where the curve calls them (on one core
    the tiny profile runs every job in this process, the truth tier's side-by-side jobs too, so a patched
    `run_task` sees every one)."""
    from bench.cli import main
    from bench.running import harness, pipeline
    from surrogates import checkpoint

    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 1)  # one job at a time: no worker process to count in

    calls = {"train": 0, "jobs": 0}

    def counted(key, fn):
        def wrapper(*args, **kwargs):
            calls[key] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(checkpoint, "train_surrogate", counted("train", checkpoint.train_surrogate))
    monkeypatch.setattr(harness, "run_task", counted("jobs", harness.run_task))
    argv = ["fidelity-curve", "--scale", "tiny", "--cells", "900,1200", "--depths", "none", "--reference-cells",
            "none", "--styles", "paired", "--methods", "saliency,input-x-gradient,random", "--bootstrap", "50",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 0
    # one surrogate per point; every (method, cell type, gene) job is a task on each tier: 2 points × 2 tiers ×
    # 3 methods × 7 jobs (a fresh cache holds nothing, so the counters see the work they are meant to see)
    assert calls == {"train": 2, "jobs": 2 * 2 * 3 * 7}
    first = pd.read_csv(tmp_path / "out" / "fidelity_curve.csv")
    assert list(first["n_cells"]) == [900, 1200] and set(first["style"]) == {"paired"}
    assert first["n_jobs"].eq(7).all()  # the first marker of each of the 7 cell types
    assert (first["tau_low"] <= first["tau_tiers"] + 1e-9).all()
    assert (first["tau_tiers"] <= first["tau_high"] + 1e-9).all()
    means = pd.read_csv(tmp_path / "out" / "fidelity_curve_methods.csv")
    assert len(means) == 2 * 3 and set(means["method"]) == {"saliency", "input-x-gradient", "random"}
    for name in ("fidelity_curve.md", "fidelity_curve.png", "run.json"):
        assert (tmp_path / "out" / name).exists()
    checkpoints = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.pt")}
    assert len(checkpoints) == 2
    calls.update(train=0, jobs=0)
    assert main(argv) == 0
    assert calls == {"train": 0, "jobs": 0}  # every surrogate and every job came from the caches
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.pt")} == checkpoints  # none rewritten
    again = pd.read_csv(tmp_path / "out" / "fidelity_curve.csv")
    cols = ["marker_r2", "interventional_spearman", "tau_tiers", "locus_heldout_gain_pct"]
    pd.testing.assert_frame_equal(first[cols], again[cols])
