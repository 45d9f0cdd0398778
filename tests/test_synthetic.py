"""The simulator: determinism, layout, the paper's regime at every scale, and the planted redundancy."""

import dataclasses

import numpy as np
import pytest

from datasets import synthetic
from datasets.markers import PAPER_MARKERS, marker_genes
from datasets.synthetic import SCALES, SimulationScale, simulate

PAIRS = [(ct, g) for ct, gs in PAPER_MARKERS.items() for g in gs]


@pytest.fixture(scope="module")
def tiny():
    return simulate("tiny", seed=3)


def regime(data, truth) -> dict:
    """The per-cell regime statistics the issue fixes (open peaks per cell, open fraction, background share)."""
    per_cell = np.diff(data.atac.indptr)
    planted = truth.planted_mask(data.n_peaks)
    return {"open_mean": per_cell.mean(), "open_fraction": data.atac.nnz / (data.n_cells * data.n_peaks),
            "background_share": 1.0 - planted[data.atac.indices].mean()}


def test_deterministic_in_seed():
    a, _ = simulate("tiny", seed=1)
    b, _ = simulate("tiny", seed=1)
    c, _ = simulate("tiny", seed=2)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_layout(tiny):
    data, truth = tiny
    assert data.cell_types == ["Exc", "SST", "VIP", "Astro", "Endo", "Micro", "OPC", "Oligo"]
    assert set(marker_genes()) <= set(data.gene_names)
    chrom, _ = data.chrom_codes()
    assert np.all(np.diff(chrom) >= 0)
    for gene in marker_genes():
        groups = truth.redundant_groups(gene)
        assert len(groups) == synthetic.MARKER_GROUPS
        assert all(len(g) in synthetic.GROUP_SIZES for g in groups)
        reg = truth.regulatory_peaks(gene)
        assert sorted(reg["redundant"]) == sorted(sum(groups, []))
        assert len(reg["additive"]) == synthetic.MARKER_SINGLES and len(reg["promoter"]) == 1
        assert sorted(truth.planted_peaks(gene).tolist()) == sorted(sum(reg.values(), []))
        gchrom = data.genes.loc[gene, "chrom"]
        assert all(data.peaks.loc[p, "chrom"] == gchrom for p in truth.planted_peaks(gene))


@pytest.mark.parametrize("scale", ["quick", "default", "paper"])
def test_paper_regime_at_every_scale(scale):
    """Thousands of open peaks per cell, 2–6 % of the peaks, ≥ 80 % of them background chromatin. Per-cell
    statistics do not depend on the number of cells, so paper scale is checked on 400 of its cells (the full
    10,266-cell draw takes ~40 s)."""
    sc = SCALES[scale]
    if scale == "paper":
        sc = dataclasses.replace(sc, n_cells=400)
    data, truth = simulate(sc, seed=0)
    stats = regime(data, truth)
    assert stats["open_mean"] >= 1500, stats
    assert 0.02 <= stats["open_fraction"] <= 0.06, stats
    assert stats["background_share"] >= 0.8, stats


@pytest.mark.parametrize("scale", ["quick", "default"])
def test_no_small_set_silences_a_marker(scale):
    """Under the truth, the best closure of 10 planted peaks leaves > 20 % of a marker's expression, closing all
    its planted peaks < 10 % (test cells of its cell type)."""
    data, truth = simulate(scale, seed=0)
    for ct, gene in PAIRS:
        cells = data.cells(ct, "test")
        _, left10 = truth.best_closure(cells, gene, 10)
        _, left_all = truth.best_closure(cells, gene, 10**6)
        assert left10 > 0.2, (ct, gene, left10)
        assert left_all < 0.1, (ct, gene, left_all)


@pytest.mark.parametrize("cell_type, gene", PAIRS)
def test_redundant_groups_are_redundant(tiny, cell_type, gene):
    """Closing one member changes a marker by < 3 %; closing a whole group does more than its members' sum."""
    data, truth = tiny
    cells = data.cells(cell_type)

    def f(closed):
        return truth.expression(cells, closed=closed, genes=[gene]).mean()

    base = f([])
    for group in truth.redundant_groups(gene):
        alone = [f([m]) / base - 1 for m in group]
        assert all(abs(a) < 0.03 for a in alone)
        whole = f(group) / base - 1
        assert whole < min(0.0, 1.5 * sum(alone))  # super-additive: the OR compensates single closures


def test_markers_are_specific_and_expression_matches_oracle(tiny):
    data, truth = tiny
    g = data.gene_index("MOG")
    oligo = np.expm1(data.cells("Oligo").rna[:, g]).mean()
    others = np.expm1(data.cells("Exc").rna[:, g]).mean()
    assert oligo > 5 * others
    oracle = truth.expression(data.cells("Oligo"), genes=["MOG"]).mean()
    assert abs(oligo / oracle - 1) < 0.15  # counts are drawn around the oracle mean


def test_background_closure_does_nothing_under_the_truth(tiny):
    data, truth = tiny
    cells = data.cells("Astro", "test")
    background = np.flatnonzero(~truth.planted_mask(data.n_peaks))[:500]
    np.testing.assert_allclose(truth.expression(cells, closed=background, genes=["AQP4"]),
                               truth.expression(cells, genes=["AQP4"]))


def test_unknown_scale_and_too_few_peaks_say_what_to_do():
    with pytest.raises(ValueError, match="unknown scale"):
        simulate("huge")
    with pytest.raises(ValueError, match="raise n_peaks"):
        simulate(SimulationScale(n_cells=100, n_peaks=500, n_genes=20, n_chrom=2))


def test_planted_enhancers_are_weaker_identity_markers_than_programs(tiny):
    """Per peak, a marker's planted enhancer is less enriched in its home types than a background program peak
    is in its own type (PROGRAM_ENRICHMENT), measured on the generated data."""
    data, truth = tiny
    x = data.atac.toarray().astype(float)
    types = data.obs["cell_type"].astype(str).to_numpy()
    ratios = []
    for ct, genes in PAPER_MARKERS.items():
        home = types == ct
        for gene in genes:
            enhancers = truth.regulatory_peaks(gene)["redundant"] + truth.regulatory_peaks(gene)["additive"]
            others = ~np.isin(types, [t for t, gs in PAPER_MARKERS.items() if gene in gs])
            ratios.append(x[home][:, enhancers].mean() / x[others][:, enhancers].mean())
    assert 2 < np.mean(ratios) < synthetic.PROGRAM_ENRICHMENT


def test_simulate_overrides_change_cells_and_depth_not_the_planted_truth():
    from datasets.synthetic import scale_with

    assert scale_with("tiny", {}) == "tiny"  # no overrides: the scale's name, so provenance and data are unchanged
    more = scale_with("tiny", {"n_cells": "1200", "umi_per_cell": "2e3"})
    assert (more.n_cells, more.umi_per_cell, more.n_peaks) == (1200, 2000.0, SCALES["tiny"].n_peaks)
    base, truth = simulate("tiny", seed=0)
    data, truth_more = simulate(more, seed=0)
    assert data.n_cells == 1200
    np.testing.assert_array_equal(truth.group, truth_more.group)  # the genome and regulation come before the cells
    np.testing.assert_array_equal(truth.single_weight, truth_more.single_weight)
    deep, _ = simulate(scale_with("tiny", {"umi_per_cell": "60000"}), seed=0)
    # 10× the depth: fewer zero counts in the RNA (log1p(counts per 1e5) is 0 only where no UMI was drawn)
    assert (deep.rna == 0).mean() < (base.rna == 0).mean() - 0.05


@pytest.mark.parametrize("overrides, says", [({"cells": "5"}, "unknown key 'cells'"),
                                             ({"n_cells": "5k"}, "takes an integer"),
                                             ({"n_cells": "10"}, "at least 300"),
                                             ({"umi_per_cell": "nan"}, "at least 100"),
                                             ({"open_fraction": "0.9"}, "between 0.005 and 0.5")])
def test_simulate_overrides_that_cannot_work_name_the_key(overrides, says):
    from datasets.synthetic import scale_with

    with pytest.raises(ValueError, match=says):
        scale_with("quick", overrides)


def test_profile_for_cells_scales_the_reference_steps_only_off_the_scale_size():
    from bench.config import PROFILES

    quick = PROFILES["quick"]
    assert quick.for_cells(SCALES["quick"].n_cells) is quick
    assert quick.for_cells(5000).reference_steps == tuple(round(s * 2.5) for s in quick.reference_steps)
    assert quick.for_cells(5000).surrogate == quick.surrogate  # the paired style counts epochs already


def test_the_quick_data_and_its_checkpoint_key_are_those_of_the_committed_example():
    """The simulator's new fields (umi_per_cell, …) default to its earlier draws: the quick scale's data, and so the
    committed quick leaderboard's surrogate checkpoint key, are unchanged."""
    import json
    from pathlib import Path

    from bench.config import PROFILES
    from surrogates.checkpoint import checkpoint_key

    run = json.loads((Path(__file__).resolve().parent.parent / "results/examples/quick/run.json").read_text())
    data, _ = simulate("quick", seed=0)
    key = checkpoint_key(data, PROFILES["quick"].surrogate_config("paired"))
    assert run["facts"]["checkpoints"] == [f"surrogate-{key}"]
