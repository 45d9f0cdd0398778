import numpy as np
import pytest

from datasets.markers import PAPER_MARKERS, marker_genes
from datasets.synthetic import SimulationScale, simulate

SMALL = SimulationScale(n_cells=1600, n_peaks=1500, n_genes=40, n_chrom=4)


@pytest.fixture(scope="module")
def sim():
    return simulate(SMALL, seed=3)


def test_deterministic_in_seed():
    a, _ = simulate(SimulationScale(n_cells=200, n_peaks=600, n_genes=20, n_chrom=3), seed=1)
    b, _ = simulate(SimulationScale(n_cells=200, n_peaks=600, n_genes=20, n_chrom=3), seed=1)
    assert a.fingerprint() == b.fingerprint()


def test_layout(sim):
    data, truth = sim
    assert data.cell_types == ["Exc", "SST", "VIP", "Astro", "Endo", "Micro", "OPC", "Oligo"]
    assert set(marker_genes()) <= set(data.gene_names)
    chrom, _ = data.chrom_codes()
    assert np.all(np.diff(chrom) >= 0)
    for gene in marker_genes():
        reg = truth.regulatory_peaks(gene)
        groups = truth.redundant_groups(gene)
        assert len(groups) == 2 and all(len(g) == 3 for g in groups)
        assert sorted(reg["redundant"]) == sorted(sum(groups, []))
        gchrom = data.genes.loc[gene, "chrom"]
        assert all(data.peaks.loc[p, "chrom"] == gchrom for p in sum(reg.values(), []))


@pytest.mark.parametrize("cell_type, gene", [(ct, g) for ct, gs in PAPER_MARKERS.items() for g in gs])
def test_redundant_group_truth(sim, cell_type, gene):
    """Closing one member barely changes the target (<10%); closing the whole group silences it (>50%)."""
    data, truth = sim
    cells = data.cells(cell_type)
    base = truth.expression(cells.atac, genes=[gene]).mean()
    for group in truth.redundant_groups(gene):
        for member in group:
            one = truth.expression(cells.atac, closed=[member], genes=[gene]).mean()
            assert abs(one / base - 1) < 0.10
        whole = truth.expression(cells.atac, closed=group, genes=[gene]).mean()
        assert whole / base - 1 < -0.50


def test_markers_are_specific_and_expression_matches_oracle(sim):
    data, truth = sim
    g = data.gene_index("MOG")
    oligo = np.expm1(data.cells("Oligo").rna[:, g]).mean()
    others = np.expm1(data.cells("Exc").rna[:, g]).mean()
    assert oligo > 5 * others
    oracle = truth.expression(data.cells("Oligo").atac, genes=["MOG"]).mean()
    assert abs(oligo / oracle - 1) < 0.15  # counts are drawn around the oracle mean


def test_open_fraction_near_target():
    data, _ = simulate(SimulationScale(n_cells=300, n_peaks=30000, n_genes=200, n_chrom=5), seed=0)
    frac = data.atac.nnz / (data.n_cells * data.n_peaks)
    assert 0.03 < frac < 0.05
