"""Perturbation screens: the data model (datasets/screens.py), the simulator's screens and confounding, the screen
surrogate style's pieces (surrogates/screen.py) and the fidelity curve's screen axis."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from bench.errors import UserError
from bench.fidelity.data_curve import CurvePoint, check_simulate, screen_points
from datasets.markers import marker_genes
from datasets.screens import Screen, split_screen
from datasets.synthetic import SCALES, scale_with, simulate
from surrogates.checkpoint import checkpoint_key
from surrogates.model import SurrogateConfig
from surrogates.screen import ScreenLayer, coaccessible_units, screen_effects


def _hand_screen() -> Screen:
    # 4 cells × 5 peaks; guides g0 → peak 1, g1 → peak 3, ntc → none
    atac = sp.csr_matrix(np.array([[1, 1, 0, 1, 0], [1, 0, 1, 1, 1], [0, 1, 1, 0, 0], [1, 1, 1, 1, 1]]))
    guides = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1]]))
    table = pd.DataFrame({"peak": [1, 3, -1]}, index=["g0", "g1", "ntc"])
    obs = pd.DataFrame({"cell_type": ["A", "A", "B", "B"], "split": ["train", "train", "train", "val"]},
                       index=[f"c{i}" for i in range(4)])
    return Screen(atac, np.zeros((4, 2)), obs, guides, table)


def test_screen_by_hand():
    s = _hand_screen()
    assert s.targeted_peaks().tolist() == [1, 3]
    assert s.perturbed().toarray().tolist() == [[0, 1, 0, 0, 0], [0, 0, 0, 1, 0], [0, 1, 0, 1, 0], [0] * 5]
    # do(x_j = 0) on each cell's targets, whatever its ATAC shows
    assert s.intervened_atac().toarray().tolist() == [[1, 0, 0, 1, 0], [1, 0, 1, 0, 1], [0, 0, 1, 0, 0],
                                                      [1, 1, 1, 1, 1]]
    summary = s.summary()
    assert summary["guides_per_cell"] == pytest.approx(6 / 4)
    assert summary["non_targeting_guides"] == 1 and summary["targeted_peaks"] == 2
    assert summary["target_hit_rate"] == pytest.approx(0.5)  # peak 1: cells 0, 2; peak 3: cells 1, 2
    assert summary["pair_cohit_rate"] == pytest.approx(0.25)  # peaks 1 and 3 together in cell 2 of 4
    # the one validation cell (no targeted peak) has the same empty combination as no training cell
    assert s.combination_overlap() == 0.0
    assert s.cells("val").n_cells == 1 and s.cells("train").n_cells == 3


def test_a_combination_is_its_targets_whichever_guides_reach_them():
    # two guides per element (as real libraries have): cells 0 and 1 hit peaks {1, 3} through other guides
    atac = sp.csr_matrix(np.ones((3, 5), dtype=np.uint8))
    guides = sp.csr_matrix(np.array([[1, 0, 0, 1], [0, 1, 1, 0], [1, 0, 0, 0]]))
    table = pd.DataFrame({"peak": [3, 3, 1, 1]}, index=["a3", "b3", "a1", "b1"])
    obs = pd.DataFrame({"cell_type": ["A"] * 3, "split": ["train", "val", "val"]}, index=["c0", "c1", "c2"])
    s = Screen(atac, np.zeros((3, 1)), obs, guides, table)
    assert s.perturbed()[1].indices.tolist() == [1, 3]
    assert s.combination_overlap() == 0.5  # c1's {1, 3} is c0's; c2's {3} is new


def test_a_stored_zero_is_no_guide():
    guides = sp.csr_matrix((np.array([1, 0], dtype=np.uint8), (np.array([0, 0]), np.array([0, 1]))), shape=(1, 2))
    s = Screen(sp.csr_matrix(np.ones((1, 3), dtype=np.uint8)), np.zeros((1, 1)),
               pd.DataFrame({"cell_type": ["A"], "split": ["train"]}, index=["c0"]), guides,
               pd.DataFrame({"peak": [0, 2]}, index=["g0", "g2"]))
    assert s.perturbed().toarray().tolist() == [[1, 0, 0]]
    # guide UMI counts: 256 is a guide received, not a uint8 wrap-around to 0
    counts = sp.csr_matrix(np.array([[256, 3]]))
    s = Screen(sp.csr_matrix(np.ones((1, 3), dtype=np.uint8)), np.zeros((1, 1)),
               pd.DataFrame({"cell_type": ["A"], "split": ["train"]}, index=["c0"]), counts,
               pd.DataFrame({"peak": [0, 2]}, index=["g0", "g2"]))
    assert s.perturbed().toarray().tolist() == [[1, 0, 1]]


def test_a_screen_that_takes_a_types_test_cells_is_refused():
    from datasets.guides import attach_screen
    from datasets.loaders import InputError

    data, _ = simulate("tiny", seed=0)
    endo_test = data.obs.index[(data.obs["cell_type"] == "Endo") & (data.obs["split"] == "test")]
    guides = sp.csr_matrix(np.ones((len(endo_test), 1), dtype=np.uint8))
    with pytest.raises(InputError, match=r"\['Endo'\] have no unperturbed cell in split\(s\) \['test'\]"):
        attach_screen(data, endo_test, ["g0"], guides, pd.DataFrame({"peak": [0]}, index=["g0"]), seed=0)


def test_split_screen_is_seeded():
    a, b = split_screen(1000, 0), split_screen(1000, 0)
    assert (a == b).all() and (a == "val").sum() == 100
    assert not (split_screen(1000, 1) == a).all()


def test_simulated_screen_leaves_the_observational_cells_as_they_were():
    plain, _ = simulate("tiny", seed=0)
    screened, truth = simulate(scale_with("tiny", {"screen_cells": "300", "screen_efficiency": "1"}), seed=0)
    assert plain.screen is None and screened.screen.n_cells == 300
    assert screened.fingerprint(screen=False) == plain.fingerprint()
    assert screened.fingerprint() != plain.fingerprint()
    # efficiency 1: every targeted peak is closed in the screened cell's ATAC
    s = screened.screen
    assert s.atac.multiply(s.perturbed()).nnz == 0
    # the locus library: every marker's planted peaks (within ±250 kb of its TSS) are targets
    marker_planted = np.unique(np.concatenate([truth.planted_peaks(g) for g in marker_genes()[:2]]))
    assert np.isin(marker_planted, s.targeted_peaks()).mean() > 0.95
    # guides per cell: Poisson(screen_moi), capped by the library
    moi = SCALES["tiny"].screen_moi
    per_cell = np.asarray(s.guides.sum(1)).ravel()
    assert per_cell.mean() == pytest.approx(min(moi, s.n_guides), rel=0.1)


def test_genome_library_and_confounding():
    locus, _ = simulate(scale_with("tiny", {"screen_cells": "300"}), seed=0)
    genome, _ = simulate(scale_with("tiny", {"screen_cells": "300", "screen_library": "genome"}), seed=0)
    assert len(genome.screen.targeted_peaks()) == len(locus.screen.targeted_peaks())
    assert not np.array_equal(genome.screen.targeted_peaks(), locus.screen.targeted_peaks())
    plain, _ = simulate("tiny", seed=0)
    confounded, _ = simulate(scale_with("tiny", {"confounding": "1"}), seed=0)
    assert confounded.fingerprint() != plain.fingerprint()
    assert confounded.peaks.equals(plain.peaks)


@pytest.mark.parametrize("key,value,words", [("screen_library", "exome", "locus, genome"),
                                              ("screen_efficiency", "1.5", "between 0 and 1"),
                                              ("confounding", "-1", "at least 0"),
                                              ("screen_cells", "many", "an integer")])
def test_screen_keys_are_checked(key, value, words):
    with pytest.raises(ValueError, match=words):
        scale_with("tiny", {key: value})


def test_only_the_screen_style_keys_on_the_screen():
    plain, _ = simulate("tiny", seed=0)
    screened, _ = simulate(scale_with("tiny", {"screen_cells": "300"}), seed=0)
    paired = SurrogateConfig(style="paired")
    assert checkpoint_key(plain, paired) == checkpoint_key(screened, paired)
    screen = SurrogateConfig(style="screen")
    assert checkpoint_key(plain, screen) != checkpoint_key(screened, screen)
    assert "screen_or_units" in screen.to_dict() and "screen_or_units" not in paired.to_dict()


def test_screen_layer_units_are_exact_or_and_and():
    # one gene, three window peaks: an OR unit over peaks 0, 1 and an AND unit over peaks 1, 2
    layer = ScreenLayer(np.zeros(3, dtype=int), np.array([10, 11, 12]), n_genes=1, or_units=1, and_units=1)
    with torch.no_grad():
        layer.a[:] = -30.0  # membership ≈ 0
        layer.a[[0, 1], 0] = 30.0  # membership ≈ 1
        layer.a[[1, 2], 1] = 30.0
        layer.u[:] = torch.log(torch.expm1(torch.tensor([[2.0, 1.0]])))  # u_or = 2, u_and = 1
        layer.eps[:] = float(torch.log(torch.expm1(torch.tensor(0.5))))
        layer.gate_r[:] = -30.0  # no gate
    x = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 0]], dtype=torch.float32)
    a = np.array([0.5 + 2 * max(r[0], r[1]) + 1 * (r[1] * r[2]) for r in x.tolist()])
    want = np.log(a) - np.log(3.5)
    assert layer(x).detach().numpy()[:, 0] == pytest.approx(want, abs=1e-4)
    with torch.no_grad():  # a gate on peak 2 of strength ½: closing it halves the activity, whatever else is open
        layer.gate_a[:] = -30.0
        layer.gate_a[2] = 30.0
        layer.gate_r[:] = 0.0
    gated = want + np.log(np.where(x[:, 2].numpy() == 1, 1.0, 0.5))
    assert layer(x).detach().numpy()[:, 0] == pytest.approx(gated, abs=1e-4)


def test_the_screen_layer_stays_finite_off_the_cube():
    # SmoothGrad adds Gaussian noise to the input: negative accessibility must not make log(activity) undefined
    layer = ScreenLayer(np.zeros(3, dtype=int), np.array([10, 11, 12]), n_genes=1, or_units=2, and_units=1)
    x = torch.tensor([[-0.8, -0.5, 1.7], [0.3, -2.0, 0.1]], requires_grad=True)
    out = layer(x)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()


def test_coaccessible_units_group_peaks_that_open_together():
    rng = np.random.default_rng(0)
    module = rng.random(2000) < 0.5
    x = np.stack([module & (rng.random(2000) < 0.9), module & (rng.random(2000) < 0.9), rng.random(2000) < 0.5,
                  rng.random(2000) < 0.5], axis=1)
    types = np.where(rng.random(2000) < 0.5, "A", "B")
    units = coaccessible_units(sp.csr_matrix(x.astype(np.uint8)), types, np.zeros(4, dtype=int),
                               np.arange(4), max_units=4)
    assert units == {0: [[0, 1]]}


def test_screen_effects_by_hand():
    hit = sp.csr_matrix(np.array([[1, 0], [1, 1], [0, 1], [0, 0]], dtype=np.uint8))
    residual = np.array([[-1.0], [-3.0], [0.0], [2.0]])
    effect = screen_effects(hit, residual, np.array([0, 0]), np.array([0, 1]), np.array([0]))
    assert effect.tolist() == [pytest.approx((-4 / 2) - (2 / 2)), pytest.approx((-3 / 2) - (1 / 2))]


def test_the_screen_axis():
    points = screen_points([0, 2000, 5000], 2000, 6000.0)
    assert points[0] == CurvePoint("paired", 2000, 6000.0)
    assert [p.screen_cells for p in points[1:3]] == [2000, 5000]
    extras = points[3:]
    assert {p.screen() for p in extras} == {"genome", "locus, confounding=1", "locus, world=mixed"}
    assert all(p.screen_cells == 5000 and p.style == "screen" for p in extras)
    assert dict(extras[0].overrides(SCALES["quick"]))["screen_cells"] == "5000"
    with pytest.raises(UserError, match="--screen-cells"):
        check_simulate([("screen_cells", "100")])
    with pytest.raises(UserError, match="--screen-extras"):
        check_simulate([("screen_library", "genome")])
    # with the observational grid: the screen axis' 0 point is the grid's own paired point, once, first
    from bench.fidelity.data_curve import curve_points, ordered

    grid = ordered(curve_points([2000], styles=("paired",), umi=6000.0) + points)
    assert grid[0] == CurvePoint("paired", 2000, 6000.0) and len(grid) == len(points)
    assert [p.screen_cells for p in grid] == [0, 2000, 5000, 5000, 5000, 5000]


def test_the_screen_style_end_to_end(tmp_path):
    import bench

    first = bench.fit("tiny", surrogate="screen", simulate={"screen_cells": 400}, cache_dir=tmp_path, progress=False)
    meta = first.model.meta
    assert meta["style"] == "screen" and meta["screen_cells_train"] == 360 and meta["screen_cells_val"] == 40
    assert meta["screen_val_combinations_seen"] == 0.0  # at MOI ≫ 1 every held-out combination is new
    assert {"interventional_spearman", "group_member_ratio_surrogate", "all_planted_surrogate_pct",
            "all_planted_oracle_pct"} <= set(first.summary)
    again = bench.fit("tiny", surrogate="screen", simulate={"screen_cells": 400}, cache_dir=tmp_path,
                      progress=False)
    assert again.model.meta["reused"] is True
    data = bench.fit("tiny", surrogate="paired", cache_dir=tmp_path, progress=False)
    assert data.model.meta["reused"] is True  # the screen style's base is the observational paired checkpoint
    cells = sp.random(5, again.model.n_peaks, density=0.05, format="csr", random_state=0)
    cells.data[:] = 1
    assert torch.equal(first.model.predict(cells), again.model.predict(cells))


def test_the_screen_style_on_a_screen_read_from_files(tmp_path):
    import bench
    from tests.multiome_files import add_guides_to_h5ad, toy_guides, toy_multiome, write_guide_table, write_h5ad_pair

    toy = toy_multiome()
    calls, table = toy_guides(toy)
    spec = write_h5ad_pair(tmp_path / "toy", toy)
    add_guides_to_h5ad(spec.split(",")[0], calls, key="guide")
    fitted = bench.fit("tiny", data=spec, label_key="cell_type", guides=write_guide_table(tmp_path / "g.csv", table),
                       guide_key="guide", surrogate="screen", cache_dir=tmp_path / "cache", progress=False)
    assert fitted.model.meta["style"] == "screen"
    assert fitted.model.meta["screen_cells_train"] + fitted.model.meta["screen_cells_val"] == 18
