"""GRIDS-groups on hand-built models whose answers are known: a group of three OR-redundant enhancers that one-peak
swaps cannot assemble (GRIDS stays on the three single enhancers), closed whole by the ejection chains, on the
simulator's exact model (closed-form path) and on the same function handed over as a plain torch module (generic
path); with no chains it is GRIDS, step for step."""

import pytest
from torch import nn

from methods.base import Budget
from methods.grids import Grids
from methods.grids_groups import GridsGroups
from surrogates.protocol import TorchModel
from surrogates.truth import TruthModel
from tests.hand_models import A, B, C, D, E, F, cells_with_all_open, redundant_pair_model, triple_cells, triple_truth

GROUP, SINGLES = {A, B, E}, {C, D, F}


class _PlainTruth(nn.Module):
    """The exact model of `triple_truth` as a user's module: no fast path, one cell type."""

    def __init__(self, model: TruthModel):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.dense(x, cell_types="T").float()


def _models():
    truth = TruthModel(triple_truth(), triple_cells().n_peaks)
    plain = TorchModel(_PlainTruth(truth), ["target", "other"], triple_cells().n_peaks)
    return {"closed form": truth, "generic": plain}


def test_the_trap_is_real_the_group_beats_the_singles_but_no_single_swap_gains():
    model, d = _models()["closed form"], triple_cells()
    y0 = model.predict(d.atac, cell_types="T")[:, 0]

    def rel(closed):  # mean Rel Δ of closing `closed` on these cells
        y = model.predict(d.atac, closed=sorted(closed), cell_types="T")[:, 0]
        return float(((y - y0) / (1 + y0)).mean())

    assert rel(GROUP) < rel(SINGLES)  # the group whole is the best closure of 3
    for out in SINGLES:  # from the three singles, every one-peak swap for a group member loses
        for member in GROUP:
            assert rel(SINGLES - {out} | {member}) > rel(SINGLES)


@pytest.mark.parametrize("path", ["closed form", "generic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chains_close_the_three_member_group_where_one_swap_descent_cannot(path, seed):
    model, d = _models()[path], triple_cells()
    grids = Grids(steps=60, batch_size=32, seed=seed).explain(model, d, "target", 3)
    groups = GridsGroups(steps=60, batch_size=32, seed=seed).explain(model, d, "target", 3)
    assert set(grids.peaks.tolist()) == SINGLES  # GRIDS settles on the singles
    assert set(groups.peaks.tolist()) == GROUP and groups.info["group_moves"] >= 1
    assert groups.info["final_loss"] < grids.info["final_loss"]
    # each chain link is one gradient pass on the step's batch: evaluations = GRIDS's + batch × links (2 chains ≤ 4)
    assert grids.info["samples"] < groups.info["samples"] <= grids.info["samples"] + 60 * 32 * 2 * 4


def test_without_chains_it_is_grids_step_for_step():
    m, d = redundant_pair_model(), cells_with_all_open()
    plain = Grids(steps=40, batch_size=8, seed=3).explain(m, d, "target", 4)
    none = GridsGroups(steps=40, batch_size=8, seed=3, chains=0).explain(m, d, "target", 4)
    assert none.peaks.tolist() == plain.peaks.tolist() and none.info["loss_trace"] == plain.info["loss_trace"]
    assert none.info["samples"] == plain.info["samples"]


def test_on_the_surrogate_it_finds_the_redundant_pair_and_counts_its_links():
    m, d = redundant_pair_model(), cells_with_all_open()
    e = GridsGroups(steps=60, batch_size=16, seed=0).explain(m, d, "target", 3)
    assert {A, B} <= set(e.peaks.tolist()) and e.info["path"] == "embedding bags"
    plain = Grids(steps=60, batch_size=16, seed=0).explain(m, d, "target", 3)
    assert plain.info["samples"] < e.info["samples"] <= plain.info["samples"] + 60 * 16 * 2 * 3


def test_a_budget_cut_keeps_the_best_so_far_and_bad_settings_are_refused():
    model, d = _models()["closed form"], triple_cells()
    e = GridsGroups(steps=1000, batch_size=16, budget=Budget(seconds=60, samples=2000)).explain(model, d, "target", 3)
    assert e.status == "budget_exceeded" and len(set(e.peaks.tolist())) == 3
    with pytest.raises(ValueError, match="chains"):
        GridsGroups(chains=-1)
    with pytest.raises(ValueError, match="depth"):
        GridsGroups(depth=0)


def test_one_slot_has_no_chain():
    model, d = _models()["closed form"], triple_cells()
    e = GridsGroups(steps=20, batch_size=16, seed=0).explain(model, d, "target", 1)
    plain = Grids(steps=20, batch_size=16, seed=0).explain(model, d, "target", 1)
    assert e.peaks.tolist() == plain.peaks.tolist() and e.info["samples"] == plain.info["samples"]


def test_the_chains_draws_do_not_depend_on_earlier_jobs_of_the_same_explainer():
    model, d = _models()["closed form"], triple_cells()
    explainer = GridsGroups(steps=30, batch_size=16, seed=4)
    first = explainer.explain(model, d, "target", 3)
    explainer.explain(model, d, "target", 4)
    again = explainer.explain(model, d, "target", 3)
    assert first.peaks.tolist() == again.peaks.tolist() and first.info["loss_trace"] == again.info["loss_trace"]


def test_the_protocol_counts_the_rows_through_the_closed_form():
    """A search on the closed form sends its rows through `local_dense`, which the harness's count must see (the
    truth tier's anytime curves read it): at least one batch per step for the gains."""
    from surrogates.protocol import CountingModel

    counted = CountingModel(_models()["closed form"])
    GridsGroups(steps=10, batch_size=16, seed=0).explain(counted, triple_cells(), "target", 3)
    assert counted.evaluations >= 10 * 16
