"""A multiome simulator with planted regulatory truth — the benchmark's embedded default data.

Generative model (all randomness from one `np.random.Generator(seed)`):

* Genome: `n_chrom` chromosomes; each gene has a TSS; peaks lie along the genome, sorted by (chrom, start).
* Each gene is regulated by peaks near its TSS:
    - a **promoter** (one peak at the TSS); expression scales with ``eps_p + (1 - eps_p) * x_promoter``;
    - **redundant groups** of 3 enhancers, open mostly in the gene's "home" cell types, each acting as an
      OR: expression scales with ``eps + (1 - eps) * (1 - prod_j (1 - x_j))`` per group. Closing one member
      leaves the others to compensate; closing a group silences the gene. Every marker gene of the paper's
      Table 2 has two, active in the cell types it marks (other genes zero or one); a group is an enhancer
      program switched on per cell (p = GROUP_ON) before its members open independently;
    - 1–3 **additive** enhancers, each multiplying expression by ``1 + a * x_e``.
* Accessibility: a regulatory peak is open with probability ``1 - (1 - pi[type, peak]) ** depth_c`` (per-cell
  depth induces the realistic co-accessibility); background peaks follow cell-type programs and are drawn by an
  O(open entries) Poisson-process sampler, so paper scale (10,266 × 127,219) never builds a dense matrix.
* Expression: the oracle mean ``E = m_g * activity(x)`` in normalised counts (per 10⁵), UMI counts drawn
  Gamma-Poisson around ``lib_c * E / 1e5`` and normalised back to ``log1p(counts / lib_c * 1e5)``.

`simulate()` returns the data and a `SyntheticTruth` that holds the regulatory groups and evaluates the exact
oracle expression under any set of closed peaks.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from datasets.data import MultiomeData, assign_split
from datasets.markers import CELL_TYPES, PAPER_MARKERS, marker_genes

log = logging.getLogger(__name__)

SIMULATOR_VERSION = 1
GROUP_SIZE = 3
MAX_GROUPS = 2
GROUP_ON = 0.8  # probability that a redundant group's program is on in a cell of its home type
MEMBER_OPEN = 0.85  # open probability of each member of a group whose program is on (home types)
TYPE_SPECIFIC_FRACTION = 0.3  # background peaks that belong to one cell type's accessibility program
TYPE_ENRICHMENT = 3.0  # how much more often such a peak is open in its own type
MAX_ADDITIVE = 3
CELL_TYPE_SHARES = {"Exc": 0.34, "SST": 0.08, "VIP": 0.08, "Astro": 0.10, "Endo": 0.06, "Micro": 0.08,
                    "OPC": 0.10, "Oligo": 0.16}


@dataclass(frozen=True)
class SimulationScale:
    n_cells: int
    n_peaks: int
    n_genes: int
    n_chrom: int
    open_fraction: float = 0.038


SCALES = {
    "tiny": SimulationScale(n_cells=900, n_peaks=1200, n_genes=40, n_chrom=3),  # smoke tests: seconds
    "quick": SimulationScale(n_cells=2400, n_peaks=5000, n_genes=150, n_chrom=6),
    "default": SimulationScale(n_cells=4000, n_peaks=10000, n_genes=300, n_chrom=10),
    "paper": SimulationScale(n_cells=10266, n_peaks=127219, n_genes=3000, n_chrom=23),
}


@dataclass
class SyntheticTruth:
    """Planted regulation: per-gene peak indices (columns of `data.atac`) and the oracle expression function.

    Arrays are indexed by gene (rows of `genes`); -1 pads unused slots.
    """

    genes: list[str]
    cell_types: list[str]
    promoter: np.ndarray  # (G,) peak index
    promoter_eps: np.ndarray  # (G,) expression left when the promoter is closed (fraction)
    group: np.ndarray  # (G, MAX_GROUPS, GROUP_SIZE) redundant enhancer indices, -1 where absent
    group_eps: np.ndarray  # (G,)
    group_types: list[list[str]]  # home cell types of each gene's group
    additive: np.ndarray  # (G, MAX_ADDITIVE) indices, -1 padded
    additive_gain: np.ndarray  # (G, MAX_ADDITIVE)
    magnitude: np.ndarray  # (G,) m_g, normalised counts per 10^5 at full activity
    _reg_cols: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        cols = np.concatenate([self.promoter, self.group.ravel(), self.additive.ravel()])
        self._reg_cols = np.unique(cols[cols >= 0])

    def gene_index(self, gene: str) -> int:
        return self.genes.index(gene)

    def regulatory_peaks(self, gene: str) -> dict[str, list[int]]:
        """{'promoter': [...], 'redundant': [...], 'additive': [...]} peak indices for one gene."""
        g = self.gene_index(gene)
        return {
            "promoter": [int(self.promoter[g])],
            "redundant": [int(j) for j in self.group[g].ravel() if j >= 0],
            "additive": [int(j) for j in self.additive[g] if j >= 0],
        }

    def redundant_groups(self, gene: str) -> list[list[int]]:
        """Each redundant (OR) group of the gene as its own list of peak indices."""
        g = self.gene_index(gene)
        return [[int(j) for j in grp if j >= 0] for grp in self.group[g] if (grp >= 0).any()]

    def expression(self, atac: sp.csr_matrix, closed=None, genes=None, chunk: int = 2048) -> np.ndarray:
        """Oracle mean expression (normalised counts per 10⁵), cells × genes, with the peaks in `closed` set to 0."""
        gidx = np.arange(len(self.genes)) if genes is None else np.array([self.gene_index(g) for g in genes])
        out = np.empty((atac.shape[0], len(gidx)), dtype=np.float64)
        closed_mask = np.zeros(atac.shape[1], dtype=bool)
        if closed is not None and len(closed):
            closed_mask[np.asarray(closed, dtype=np.int64)] = True
        col_of = np.full(atac.shape[1], -1, dtype=np.int64)
        col_of[self._reg_cols] = np.arange(len(self._reg_cols))
        keep = (~closed_mask[self._reg_cols]).astype(np.float64)
        for start in range(0, atac.shape[0], chunk):
            x = atac[start:start + chunk][:, self._reg_cols].toarray().astype(np.float64) * keep
            x = np.concatenate([x, np.zeros((x.shape[0], 1))], axis=1)  # column -1 → always closed pad
            out[start:start + chunk] = self._activity(x, col_of, gidx) * self.magnitude[gidx]
        return out

    def _activity(self, x: np.ndarray, col_of: np.ndarray, gidx: np.ndarray) -> np.ndarray:
        def gather(idx):
            return x[:, np.where(idx >= 0, col_of[np.maximum(idx, 0)], -1)]

        prom = gather(self.promoter[gidx])
        act = self.promoter_eps[gidx] + (1 - self.promoter_eps[gidx]) * prom
        grp = gather(self.group[gidx])  # cells × G × groups × members
        has_group = (self.group[gidx] >= 0).any(axis=2)  # G × groups
        any_open = 1.0 - np.prod(1.0 - grp, axis=3)
        eps = self.group_eps[gidx][:, None]
        act *= np.prod(np.where(has_group, eps + (1 - eps) * any_open, 1.0), axis=2)
        act *= np.prod(1.0 + self.additive_gain[gidx] * gather(self.additive[gidx]), axis=2)
        return act


def _peak_layout(rng, scale: SimulationScale, n_genes: int):
    """Gene TSSs and regulatory peak positions; background peaks fill the rest. Returns unsorted tables."""
    chrom_len = rng.integers(60_000_000, 250_000_000, size=scale.n_chrom)
    g_chrom = rng.integers(0, scale.n_chrom, size=n_genes)
    tss = (rng.random(n_genes) * (chrom_len[g_chrom] - 1_000_000) + 500_000).astype(np.int64)
    n_add = rng.integers(1, MAX_ADDITIVE + 1, size=n_genes)
    return chrom_len, g_chrom, tss, n_add


def simulate(scale: str | SimulationScale = "quick", seed: int = 0) -> tuple[MultiomeData, SyntheticTruth]:
    """Generate a multiome dataset with planted redundant regulation. Deterministic in (scale, seed)."""
    t0 = time.perf_counter()
    sc = SCALES[scale] if isinstance(scale, str) else scale
    rng = np.random.default_rng(seed)
    types = list(CELL_TYPES)
    T = len(types)
    markers = marker_genes()
    G = sc.n_genes
    if G < len(markers):
        raise ValueError(f"n_genes must be ≥ {len(markers)} to hold the paper's marker genes")
    gene_names = markers + [f"SYN{i:05d}" for i in range(G - len(markers))]

    # ---- gene structure ------------------------------------------------------------------------------------
    chrom_len, g_chrom, tss, n_add = _peak_layout(rng, sc, G)
    home = np.zeros((G, T), dtype=bool)  # cell types where the gene's redundant group is open
    n_groups = np.zeros(G, dtype=int)
    for g, name in enumerate(gene_names):
        if name in markers:
            n_groups[g] = MAX_GROUPS
            for ct, genes in PAPER_MARKERS.items():
                home[g, types.index(ct)] |= name in genes
        elif rng.random() < 0.5:
            n_groups[g] = 1
            home[g, rng.choice(T, size=rng.integers(1, 4), replace=False)] = True
    has_group = n_groups > 0
    is_marker = np.isin(gene_names, markers)
    magnitude = np.where(is_marker, rng.lognormal(np.log(600), 0.4, G), rng.lognormal(np.log(40), 1.0, G))
    # marker promoters are near-constitutive and only partly required: the strong, cell-type-specific control
    # sits in the redundant groups, where no single peak matters
    promoter_eps = np.where(is_marker, 0.5, rng.uniform(0.05, 0.6, G))
    group_eps = np.where(is_marker, 0.03, rng.uniform(0.03, 0.2, G))
    gain = np.zeros((G, MAX_ADDITIVE))
    n_add[is_marker] = MAX_ADDITIVE
    for g in range(G):
        gain[g, : n_add[g]] = rng.uniform(0.2, 0.8, n_add[g])

    # regulatory peaks: promoter (1) + group (3 if any) + additive (n_add), placed near the TSS
    reg_gene, reg_kind, reg_pos, reg_group = [], [], [], []  # reg_group: running id of the peak's group, or -1
    n_group_ids = 0
    for g in range(G):
        kinds = ["promoter"] + ["group"] * (GROUP_SIZE * n_groups[g]) + ["additive"] * n_add[g]
        for i, k in enumerate(kinds):
            reg_group.append(n_group_ids + (i - 1) // GROUP_SIZE if k == "group" else -1)
            offset = 0 if k == "promoter" else int(rng.choice([-1, 1]) * rng.integers(5_000, 200_000))
            reg_gene.append(g)
            reg_kind.append(k)
            reg_pos.append(max(1000, tss[g] + offset))
        n_group_ids += n_groups[g]
    reg_group = np.array(reg_group, dtype=np.int64)
    # Each redundant group is an enhancer *program*: in a home-type cell it is switched on with probability
    # GROUP_ON (then members open independently), else the whole group is closed. Cells with the program off
    # show what closing the group does, so a surrogate can learn it; members that vary independently show that
    # one of them alone does not matter.
    group_home = np.zeros((T, n_group_ids), dtype=bool)
    for r in np.flatnonzero(reg_group >= 0):
        group_home[:, reg_group[r]] = home[reg_gene[r]]
    group_on = np.where(group_home, GROUP_ON, 1.0)
    n_reg = len(reg_gene)
    n_bg = sc.n_peaks - n_reg
    if n_bg < 0:
        raise ValueError(f"n_peaks={sc.n_peaks} is too small for {n_reg} regulatory peaks of {G} genes")
    bg_chrom = rng.choice(sc.n_chrom, size=n_bg, p=chrom_len / chrom_len.sum())
    bg_pos = (rng.random(n_bg) * (chrom_len[bg_chrom] - 1000)).astype(np.int64)
    chrom_all = np.concatenate([g_chrom[np.array(reg_gene, dtype=np.int64)], bg_chrom])
    pos_all = np.concatenate([np.array(reg_pos, dtype=np.int64), bg_pos])
    order = np.lexsort((pos_all, chrom_all))  # genome order → contiguous chromosome blocks
    new_index = np.empty_like(order)
    new_index[order] = np.arange(len(order))
    width = rng.integers(200, 1500, size=len(order))
    peaks = pd.DataFrame({
        "chrom": [f"chr{c + 1}" for c in chrom_all[order]],
        "start": pos_all[order],
        "end": pos_all[order] + width,
    })
    reg_index = new_index[:n_reg]

    promoter = np.full(G, -1, dtype=np.int64)
    group = np.full((G, MAX_GROUPS, GROUP_SIZE), -1, dtype=np.int64)
    additive = np.full((G, MAX_ADDITIVE), -1, dtype=np.int64)
    fill = {"group": np.zeros(G, int), "additive": np.zeros(G, int)}
    for j, g, k in zip(reg_index, reg_gene, reg_kind):
        if k == "promoter":
            promoter[g] = j
        else:
            n = fill[k][g]
            if k == "group":
                group[g, n // GROUP_SIZE, n % GROUP_SIZE] = j
            else:
                additive[g, n] = j
            fill[k][g] += 1

    # ---- per-type open probabilities of regulatory peaks ---------------------------------------------------
    reg_pi = np.empty((T, n_reg))
    for r, (g, k) in enumerate(zip(reg_gene, reg_kind)):
        if k == "promoter" and is_marker[g]:
            reg_pi[:, r] = 0.95
        elif k == "promoter":
            reg_pi[:, r] = np.where(home[g] | ~has_group[g], 0.85, 0.4)
        elif k == "group":
            reg_pi[:, r] = np.where(home[g], MEMBER_OPEN, 0.02)
        elif is_marker[g]:  # additive enhancers of markers: moderately cell-type specific
            reg_pi[:, r] = np.where(home[g], 0.6, 0.15)
        else:
            reg_pi[:, r] = rng.uniform(0.02, 0.4, T)

    # ---- cells ---------------------------------------------------------------------------------------------
    shares = np.array([CELL_TYPE_SHARES[t] for t in types])
    counts = np.maximum(1, np.round(shares / shares.sum() * sc.n_cells).astype(int))
    counts[0] += sc.n_cells - counts.sum()
    cell_type = np.repeat(np.arange(T), counts)
    cell_type = cell_type[rng.permutation(sc.n_cells)]
    depth = rng.lognormal(0.0, 0.35, sc.n_cells)
    lib = rng.lognormal(np.log(6000), 0.4, sc.n_cells)

    # background rate so that the total open fraction matches the target
    reg_open_mean = np.mean(1.0 - (1.0 - reg_pi[cell_type[:256]]) ** depth[:256, None]) * n_reg
    bg_target = max(0.0, sc.open_fraction * sc.n_peaks - reg_open_mean) / max(1, n_bg) / depth.mean()
    base = rng.lognormal(0.0, 1.0, n_bg)
    program = np.ones((T, n_bg))
    specific = rng.random(n_bg) < TYPE_SPECIFIC_FRACTION
    program[rng.integers(0, T, specific.sum()), np.flatnonzero(specific)] = TYPE_ENRICHMENT
    bg_pi = base * program
    bg_pi *= bg_target / bg_pi.mean(axis=1, keepdims=True)
    bg_pi = np.minimum(bg_pi, 0.9)
    bg_cols = new_index[n_reg:]

    rows, cols = [], []
    # regulatory peaks: exact Bernoulli draws, chunked over cells (only n_reg columns are ever dense)
    chunk = 1024
    for start in range(0, sc.n_cells, chunk):
        ct = cell_type[start:start + chunk]
        p = 1.0 - (1.0 - reg_pi[ct]) ** depth[start:start + chunk, None]
        on = rng.random((len(ct), n_group_ids)) < group_on[ct]
        grp_cols = reg_group >= 0
        p[:, grp_cols] *= on[:, reg_group[grp_cols]]
        r, c = np.nonzero(rng.random(p.shape) < p)
        rows.append(r + start)
        cols.append(reg_index[c])
    # background peaks: per cell, Poisson(depth * sum pi) draws from the type's categorical distribution
    for t in range(T):
        cells = np.flatnonzero(cell_type == t)
        cdf = np.cumsum(bg_pi[t])
        total = cdf[-1]
        n_open = rng.poisson(depth[cells] * total)
        picks = np.searchsorted(cdf, rng.random(n_open.sum()) * total, side="right")
        rows.append(np.repeat(cells, n_open))
        cols.append(bg_cols[np.minimum(picks, n_bg - 1)])
    rows = np.concatenate(rows)
    cols = np.concatenate(cols)
    atac = sp.csr_matrix((np.ones(len(rows), dtype=np.uint8), (rows, cols.astype(np.int32))),
                         shape=(sc.n_cells, sc.n_peaks))
    atac.data[:] = 1  # duplicates from the Poisson sampler were summed; accessibility stays binary

    truth = SyntheticTruth(
        genes=gene_names, cell_types=types, promoter=promoter, promoter_eps=promoter_eps, group=group,
        group_eps=group_eps, group_types=[[types[t] for t in np.flatnonzero(home[g])] for g in range(G)],
        additive=additive, additive_gain=gain, magnitude=magnitude,
    )

    # ---- expression ----------------------------------------------------------------------------------------
    mean = truth.expression(atac)  # normalised counts per 10^5
    shape = 10.0  # Gamma-Poisson (negative binomial) overdispersion
    lam = rng.gamma(shape, lib[:, None] * mean / 1e5 / shape)
    umi = rng.poisson(lam)
    rna = np.log1p(umi / lib[:, None] * 1e5).astype(np.float32)

    barcodes = pd.Index([f"cell{i:06d}" for i in range(sc.n_cells)], name="barcode")
    obs = pd.DataFrame({"cell_type": pd.Categorical([types[t] for t in cell_type], categories=types)},
                       index=barcodes)
    obs["split"] = assign_split(obs["cell_type"], seed)
    genes = pd.DataFrame({"chrom": [f"chr{c + 1}" for c in g_chrom], "tss": tss}, index=pd.Index(gene_names))
    uns = {"source": "synthetic", "simulator_version": SIMULATOR_VERSION, "seed": seed,
           "scale": scale if isinstance(scale, str) else repr(sc), "normalisation": "log1p(counts per 1e5)"}
    data = MultiomeData(atac, rna, obs, peaks, genes, uns)
    log.info("simulated %r in %.1fs", data, time.perf_counter() - t0)
    return data, truth
