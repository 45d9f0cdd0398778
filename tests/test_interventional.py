"""Interventional fidelity: the closure panel, its summaries (hand-computed), and the first-order expansion."""

import numpy as np
import pandas as pd
import pytest
import torch

from bench.scoring.evaluate import first_order_delta
from bench.fidelity.interventional import PANEL_SIZES, group_member_ratio, interventional_fidelity
from datasets.synthetic import simulate
from surrogates.model import SurrogateConfig
from surrogates.train import build_surrogate
from tests.hand_models import C, D, cells_with_all_open, redundant_pair_model


def test_group_member_ratio_by_hand():
    rows = [("member 1", "member", -1.0, -0.5, None), ("member 2", "member", -1.0, -0.5, None),
            ("group 0", "group", -2.0, -8.0, ["member 1", "member 2"]),
            ("member 3", "member", -2.0, 0.0, None), ("member 4", "member", -2.0, -1.0, None),
            ("group 1", "group", -8.0, -3.0, ["member 3", "member 4"])]
    table = pd.DataFrame([{"gene": "G", "cell_type": "T", "entry": e, "kind": k, "surrogate_rel_pct": s,
                           "oracle_rel_pct": o, "members": m} for e, k, s, o, m in rows])
    assert group_member_ratio(table, "surrogate_rel_pct") == pytest.approx((2 / 2 + 8 / 4) / 2)
    assert group_member_ratio(table, "oracle_rel_pct") == pytest.approx((8 / 1 + 3 / 1) / 2)


def test_panel_on_the_simulator():
    data, truth = simulate("tiny", seed=0)
    torch.manual_seed(0)
    model = build_surrogate(data, SurrogateConfig(hidden=16, latent=4)).eval()
    with torch.no_grad():  # an untrained but responsive surrogate: outputs above the clamp, peaks that matter
        model.dec_r[-1].bias.fill_(3.0)
        model.emb_open.normal_(0.0, 1.0)
    report = interventional_fidelity(model, data, truth, [("Astro", "AQP4")], seed=0)
    t = report.table
    groups = truth.redundant_groups("AQP4")
    assert (t["kind"] == "member").sum() == sum(len(g) for g in groups)
    assert (t["kind"] == "group").sum() == len(groups)
    assert set(t.loc[t["kind"] == "random", "n_peaks"]) == set(PANEL_SIZES)
    assert (t.loc[t["kind"] == "random", "oracle_rel_pct"] == 0).all()  # background peaks regulate nothing
    assert t.loc[t["kind"] == "all planted", "oracle_rel_pct"].item() < -85
    assert report.group_ratio_oracle > 2  # the truth is redundant
    # the panel's numbers, recomputed here entry by entry from the model and the truth
    cells = data.cells("Astro", "test")
    y0 = model.predict(cells.atac, genes=["AQP4"])[:, 0].numpy().astype(float)
    e0 = truth.expression(cells, genes=["AQP4"])[:, 0]
    for entry, peaks in (("all planted", truth.planted_peaks("AQP4")), ("group 0", np.array(groups[0]))):
        y1 = model.predict(cells.atac, closed=peaks, genes=["AQP4"])[:, 0].numpy().astype(float)
        e1 = truth.expression(cells, closed=peaks, genes=["AQP4"])[:, 0]
        row = t.set_index("entry").loc[entry]
        assert row["surrogate_rel_pct"] == pytest.approx(100 * np.mean(np.exp(y1 - y0) - 1), abs=1e-4)
        assert row["oracle_rel_pct"] == pytest.approx(100 * np.mean(e1 / e0 - 1), abs=1e-9)
    ranks = t[["surrogate_rel_pct", "oracle_rel_pct"]].rank()  # Spearman ρ = Pearson r of the ranks
    assert report.spearman == pytest.approx(np.corrcoef(ranks.to_numpy().T)[0, 1], abs=1e-12)
    assert -1 <= report.spearman <= 1 and report.spearman != 0
    assert set(report.summary()) >= {"interventional_spearman", "group_member_ratio_surrogate",
                                     "group_member_ratio_oracle"}


def test_first_order_delta_is_exact_where_the_model_is_linear():
    """In the hand-built model the decoys C and D enter the target linearly, so closing them changes the
    log-prediction exactly by the first-order term; the redundant pair does not (its soft OR is not linear)."""
    m, d = redundant_pair_model(), cells_with_all_open()
    y0 = m.predict(d.atac, genes=["target"])[:, 0].numpy()
    for closed in ([C], [C, D]):
        y1 = m.predict(d.atac, closed=closed, genes=["target"])[:, 0].numpy()
        np.testing.assert_allclose(first_order_delta(m, d, "target", closed), y1 - y0, atol=1e-5)
