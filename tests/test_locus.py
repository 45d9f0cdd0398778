"""surrogates/locus.py (the locus style) and bench/fidelity/locus_diagnostic.py (what the data identify at a locus)."""

import numpy as np
import pandas as pd
import pytest
import torch

from bench.fidelity.interventional import pooled_group_member_ratio
from bench.fidelity.locus_diagnostic import locus_features, ridge_fit
from surrogates.locus import CisLayer, window_pairs


def test_window_pairs_by_hand():
    peaks = pd.DataFrame({"chrom": ["chr1", "chr1", "chr1", "chr2"], "start": [900, 5_000, 400_000, 1_000],
                          "end": [1_100, 5_200, 400_200, 1_200]})
    genes = pd.DataFrame({"chrom": ["chr1", "chr2", "chr3"], "tss": [1_000, 300_000, 10]})
    g, p = window_pairs(peaks, genes, window=10_000)
    assert list(zip(g, p)) == [(0, 0), (0, 1)]  # chr1 gene: the two peaks within 10 kb; chr2's is 299 kb away
    g, p = window_pairs(peaks, genes, window=300_000)
    assert list(zip(g, p)) == [(0, 0), (0, 1), (1, 3)]


def test_a_cis_unit_with_large_weights_is_an_or_of_its_peaks():
    """One gene, one unit over a 3-peak window: large weights on all three → closing one of two open peaks changes
    almost nothing, closing both removes the unit's whole contribution (the redundancy the paired style lacks)."""
    cis = CisLayer(np.zeros(3, np.int64), np.arange(3), n_genes=1, units=1, monotone=False)
    with torch.no_grad():
        cis.A.fill_(8.0)
        cis.u.fill_(2.0)
    x = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    with torch.no_grad():
        out = cis(x)[:, 0]
    assert out[0] == pytest.approx(2.0, abs=1e-2)  # both open: saturated
    assert out[1] == pytest.approx(2.0, abs=1e-2)  # one closed: the other compensates
    assert out[2] == pytest.approx(0.0, abs=1e-6)  # both closed: the group's effect is gone


def test_locus_style_fits_caches_and_speaks_the_generic_protocol(tmp_path):
    from bench.config import PROFILES
    from datasets.synthetic import simulate
    from surrogates.checkpoint import fit_or_load
    from surrogates.protocol import AdditiveHidden, fast_path

    data, _ = simulate("tiny", seed=0)
    cfg = PROFILES["tiny"].surrogate_config("locus")
    model = fit_or_load(data, cfg, device="cpu", cache_dir=tmp_path, progress=False)
    assert fast_path(model, AdditiveHidden) is None  # explainers take their generic path on it
    assert model.meta["seconds"] == pytest.approx(model.meta["base_seconds"] + model.meta["cis_seconds"])
    cells = data.cells(split="test")
    gene = data.gene_names[0]
    closed = cells.atac[:5].indices[:3]
    x = torch.as_tensor(cells.atac[:5].toarray(), dtype=torch.float32)
    x[:, closed] = 0.0
    with torch.no_grad():
        dense = model.dense(x, genes=[gene])
    np.testing.assert_allclose(model.predict(cells.atac[:5], closed=closed, genes=[gene]).numpy(), dense.numpy(),
                               atol=1e-4)  # log-expression units
    again = fit_or_load(data, cfg, device="cpu", cache_dir=tmp_path, progress=False)
    assert again.meta["reused"] is True
    np.testing.assert_array_equal(again.predict(cells.atac).numpy(), model.predict(cells.atac).numpy())
    paired = fit_or_load(data, PROFILES["tiny"].surrogate_config("paired"), device="cpu", cache_dir=tmp_path,
                         progress=False)
    assert paired.meta["reused"] is True  # the locus style's base is the paired checkpoint


def test_pooled_ratio_by_hand():
    table = pd.DataFrame({"kind": ["member", "member", "group", "member", "member", "group"],
                          "rel": [-1.0, 0.5, -6.0, -1.5, 0.0, -4.0]})
    # Σ groups −10 over Σ members −2: 5 (per-group ratios would be 12 and 2.67)
    assert pooled_group_member_ratio(table, "rel") == pytest.approx(5.0)
    assert np.isnan(pooled_group_member_ratio(table[table["kind"] == "group"], "rel"))


def test_the_saturating_locus_model_recovers_an_or_from_cells():
    """Cells where y = 1 + 2·OR(x0, x1) + noise: the saturating model puts the effect on the OR term (closing one
    member does ~nothing, both ~−2), the additive model cannot, and the OR model predicts held-out cells better."""
    rng = np.random.default_rng(0)
    x = (rng.random((2000, 2)) < 0.5).astype(float)
    y = 1 + 2 * (1 - (1 - x[:, 0]) * (1 - x[:, 1])) + rng.normal(0, 0.3, 2000)
    sat = ridge_fit(locus_features(x[:1000], [], [[0, 1]], []), y[:1000])
    add = ridge_fit(locus_features(x[:1000], [], [[0, 1]], [], saturating=False), y[:1000])
    assert sat[1] == pytest.approx(2.0, abs=0.15) and abs(sat[2]) < 0.15 and abs(sat[3]) < 0.15
    err = {s: np.mean((locus_features(x[1000:], [], [[0, 1]], [], s) @ b - y[1000:]) ** 2)
           for s, b in ((True, sat), (False, add))}
    assert err[True] < err[False]


def test_locus_diagnostic_on_the_simulator_finds_redundancy_the_data_carry():
    from bench.fidelity.locus_diagnostic import locus_redundancy
    from datasets.synthetic import scale_with, simulate

    data, truth = simulate(scale_with("tiny", {"n_cells": "3000"}), seed=1)
    out = locus_redundancy(data, truth, [("Oligo", "MOG"), ("Astro", "AQP4"), ("OPC", "OLIG2")])
    assert out["locus_group_member_ratio"] > 1.5 and out["locus_heldout_gain_pct"] > 0


def test_trust_line_warns_below_the_levels(monkeypatch):
    from bench.reporting import trust

    summary = {"interventional_spearman": 0.4, "group_member_ratio_surrogate": 1.0, "group_member_ratio_oracle": 11.6}
    monkeypatch.setattr(trust, "TRUST_SPEARMAN", None)
    assert "⚠ No level of fidelity on the fidelity curves" in trust.trust_line(summary)
    monkeypatch.setattr(trust, "TRUST_SPEARMAN", 0.6)
    monkeypatch.setattr(trust, "TRUST_RATIO", None)
    assert "⚠ Below the levels (Spearman ≥ 0.6)" in trust.trust_line(summary)
    assert "⚠" not in trust.trust_line({**summary, "interventional_spearman": 0.7})
    assert "Spearman 0.40, group / Σ members 1.00 (truth 11.60)" in trust.trust_line(summary)


def test_a_monotone_cis_layer_never_rises_when_peaks_close():
    rng = np.random.default_rng(1)
    cis = CisLayer(np.repeat(np.arange(3), 4), rng.integers(0, 6, 12), n_genes=3, units=2)
    with torch.no_grad():
        cis.u.normal_(0, 3)
        cis.A.normal_(0, 2)
        x = torch.as_tensor((rng.random((50, len(cis.cols))) < 0.5).astype(np.float32))
        closed = x.clone()
        closed[:, :2] = 0.0
        assert (cis(closed) <= cis(x) + 1e-6).all()


def test_genes_without_a_position_get_no_window_and_a_data_set_without_any_says_so(tmp_path):
    peaks = pd.DataFrame({"chrom": ["chr1"], "start": [900], "end": [1_100]})
    genes = pd.DataFrame({"chrom": ["chr1", "chr1"], "tss": [1_000, np.nan]})
    g, p = window_pairs(peaks, genes, window=10_000)
    assert list(zip(g, p)) == [(0, 0)]
    from bench.config import PROFILES
    from bench.errors import UserError
    from bench.running.pipeline import fit_surrogate
    from datasets.synthetic import simulate

    data, _ = simulate("tiny", seed=0)
    data.genes["tss"] = np.nan
    with pytest.raises(UserError, match="needs gene positions"):
        fit_surrogate(PROFILES["tiny"], data, "locus", device="cpu", cache_dir=tmp_path, progress=False)


def test_a_cis_layer_is_refitted_when_its_paired_base_is_not_the_one_it_was_fitted_on(tmp_path):
    import dataclasses

    from bench.config import PROFILES
    from datasets.synthetic import simulate
    from surrogates.checkpoint import checkpoint_name, fit_or_load

    data, _ = simulate("tiny", seed=0)
    cfg = PROFILES["tiny"].surrogate_config("locus")
    first = fit_or_load(data, cfg, device="cpu", cache_dir=tmp_path, progress=False)
    assert first.meta["base"] == checkpoint_name(first.base.meta["checkpoint"])
    fit_or_load(data, dataclasses.replace(cfg, style="paired"), device="cpu", cache_dir=tmp_path, retrain=True,
                progress=False)  # the base is written again
    paired_path = first.base.meta["checkpoint"]
    import torch

    payload = torch.load(first.meta["checkpoint"], weights_only=False)
    payload["meta"]["base"] = "surrogate-0000000000000000"  # as if fitted on another base
    torch.save(payload, first.meta["checkpoint"])
    again = fit_or_load(data, cfg, device="cpu", cache_dir=tmp_path, progress=False)
    assert again.meta["reused"] is False and again.base.meta["checkpoint"] == paired_path
