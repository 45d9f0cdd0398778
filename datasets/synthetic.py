"""A multiome simulator with planted regulatory truth — the benchmark's embedded default data.

The simulator is built to sit in the paper's regime at every scale (tested in tests/test_synthetic.py):
thousands of open peaks per cell, 2–6 % of all peaks, most of them background chromatin, so that closing L = 128
peaks touches a few per cent of a cell's open chromatin, not half of it.

Generative model (all randomness from one `np.random.Generator(seed)`):

* **Genome.** `n_chrom` chromosomes; each gene has a TSS; peaks lie along the genome, sorted by (chrom, start).
* **Background accessibility** (every peak that regulates no gene). Each background peak has a propensity
  (log-normal); a share `PROGRAM_FRACTION` of them belongs to one cell type's accessibility *program* and is
  `PROGRAM_ENRICHMENT` times more often open in that type. Cell identity is therefore spread over thousands of
  peaks, no handful carries it. The background rate is set so the whole matrix reaches `open_fraction`, and it
  is drawn by an O(open entries) Poisson-process sampler, so paper scale never builds a dense matrix.
* **Planted regulation** near each gene's TSS. Expression of gene g in cell c of type t is

      E_gc = m_g · τ_g(t) · P_g(x) · (ε_g + (1 − ε_g) · S_g(x) / Z_g)

  - τ_g(t): *trans* activity (transcription factors present in the type; not visible in ATAC). Marker genes
    have τ = 1 in the types they mark and `MARKER_OFF_TRANS` elsewhere; other genes vary by type.
  - P_g(x) = ρ_g + (1 − ρ_g) · x_promoter: the promoter; closing it leaves the fraction ρ_g.
  - S_g(x) = Σ_k w_k · OR_k(x) + Σ_e a_e · x_e, Z_g = Σ_k w_k + Σ_e a_e: enhancer contributions *add up*.
    OR_k(x) = 1 − Π_{j∈k} (1 − x_j) is a **redundant group** (shadow enhancers): closing one member leaves the
    others to compensate, closing the whole group removes w_k. The single enhancers e add a_e each.
  - ε_g: what is left when every enhancer is closed.
  Marker genes (the paper's Table 2, by name) are regulated deeply, as real loci with dozens of candidate CREs:
  `MARKER_GROUPS` redundant groups of 2–4 enhancers and `MARKER_SINGLES` single enhancers, so no small set of
  peaks silences them: the best closure of 10 planted peaks leaves > 20 % of the expression and closing all of
  them < 10 % (tested). `OTHER_REGULATED` (20 %) of the other genes have a promoter, 0–2 groups and 1–3 single
  enhancers; the rest are regulated in trans only (no planted peaks), which keeps planted chromatin a small share
  of each cell's open peaks even with the paper's 3,000 genes.
  That is the default world, `redundant`. `--simulate world=NAME` (datasets/worlds.py) plants other logics with
  the same form — S a sum of units that each read their own members: AND units (Π x_j), silencers (negative
  weight), elements shared by two genes, weights ∝ activity × distance-decaying contact — in `additive`,
  `synergy`, `silencer` and `mixed`. The redundant world's data are bit for bit those of before the worlds.
* **Accessibility of planted peaks.** A redundant group is an enhancer *module*: in a cell of a home type it is
  on with probability `GROUP_ON` and its members then open independently (`MEMBER_OPEN`); when it is off all its
  members are closed, so the data show what closing a whole group does. Outside the home types enhancers open
  less often (`ENHANCER_ELSEWHERE`): a planted enhancer is ~6× enriched at home, a background program peak 8×,
  so planted enhancers are the weaker identity markers.
  Per-cell depth (log-normal) scales every open probability, which induces realistic co-accessibility.
* **Expression.** UMI counts drawn Gamma-Poisson around ``lib_c · E / 1e5`` and normalised back to
  ``log1p(counts / lib_c · 1e5)``, like real data.

`simulate()` returns the data and a `SyntheticTruth` that holds the planted peaks and evaluates the exact (oracle)
expression under any set of closed peaks. Constants were tuned on seed 1 (the development seed); the committed
examples use seed 0.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from datasets.data import MultiomeData, assign_split, gene_position
from datasets.markers import CELL_TYPES, PAPER_MARKERS, marker_genes
from datasets.screens import Screen, split_screen
from datasets.windows import WINDOW_BP, window_pairs
from datasets.worlds import COOP_SIZES, DEFAULT_WORLD, contact, plan_units, world_named

log = logging.getLogger(__name__)

SIMULATOR_VERSION = 2  # 2: background always present, identity programs, deep additive marker regulation, trans

# ---- background chromatin
PROGRAM_FRACTION = 0.6  # background peaks that belong to one cell type's accessibility program
PROGRAM_ENRICHMENT = 8.0  # how much more often a program peak is open in its own type
# ---- planted regulation of marker genes
MARKER_GROUPS = 10  # redundant enhancer groups per marker gene
MARKER_SINGLES = 6  # single (non-redundant) enhancers per marker gene
GROUP_SIZES = (2, 3, 4)  # members per redundant group, drawn uniformly
MARKER_PROMOTER_LEFT = 0.8  # ρ: expression left when a marker's promoter is closed
MARKER_FLOOR = 0.06  # ε: expression left (before ρ) when every enhancer of a marker is closed
MARKER_OFF_TRANS = 0.05  # τ of a marker gene outside the cell types it marks
# ---- planted regulation of other genes
OTHER_REGULATED = 0.2  # share of the other genes with planted peaks (the rest: trans regulation only)
OTHER_MAX_GROUPS = 2
OTHER_MAX_SINGLES = 3
# ---- accessibility of planted peaks
GROUP_ON = 0.7  # probability that a redundant group's module is on in a cell of a home type
MEMBER_OPEN = 0.8  # open probability of each member of a group whose module is on
SINGLE_OPEN = 0.6  # open probability of a single enhancer in a home type
SILENCER_OPEN = 0.9  # open probability of a silencer in a home type (worlds with silencers)
# open probability of a planted enhancer outside its gene's home types: at home a member opens with probability
# GROUP_ON · MEMBER_OPEN = 0.56 and a single with 0.6, so each planted enhancer is ~6× enriched in its home types,
# less than a background program peak (PROGRAM_ENRICHMENT = 8×): enhancers are the weaker identity markers
ENHANCER_ELSEWHERE = 0.1
PROMOTER_OPEN = 0.9  # markers: in every type; other genes: in their home types
PROMOTER_ELSEWHERE = 0.2  # open probability of another gene's promoter outside its home types
MAX_GROUPS = MARKER_GROUPS
MAX_MEMBERS = max(GROUP_SIZES)
MAX_SINGLES = max(MARKER_SINGLES, OTHER_MAX_SINGLES)
# ---- perturbation screens (`--simulate screen_cells=N`) and confounding (`--simulate confounding=κ`)
# guides per screened cell, Poisson mean: at quick scale the locus library has ~720 guides (the peaks within
# ±250 kb of the 16 markers' TSSs, plus 5 % non-targeting), so each target is hit in ~1 cell in 5 — the design
# of a locus-focused CRISPRi screen (tens of elements per gene, each in ~20 % of cells), here for 16 loci at once
SCREEN_MOI = 150.0
SCREEN_EFFICIENCY = 0.9  # probability that a guide closes its target (dCas9-KRAB; the rest leave it as it was)
SCREEN_NON_TARGETING = 0.05  # non-targeting control guides, as a share of the targeting ones (at least 10)
# confounding κ: a hidden per-cell factor h ~ N(0, 1) shifts every home module's on-probability on the logit scale
# by CONFOUND_ACCESS·κ·h and multiplies every gene's expression by exp(CONFOUND_EXPRESSION·κ·h), so within a cell
# type open modules go with high expression whether or not they cause it
CONFOUND_ACCESS = 1.5
CONFOUND_EXPRESSION = 0.5
CELL_TYPE_SHARES = {"Exc": 0.34, "SST": 0.08, "VIP": 0.08, "Astro": 0.10, "Endo": 0.06, "Micro": 0.08,
                    "OPC": 0.10, "Oligo": 0.16}


@dataclass(frozen=True)
class SimulationScale:
    n_cells: int
    n_peaks: int
    n_genes: int
    n_chrom: int
    open_fraction: float = 0.038
    umi_per_cell: float = 6000.0  # median library size (UMI per cell) of the RNA; per-cell depth is log-normal
    world: str = DEFAULT_WORLD  # the planted regulatory logic (datasets/worlds.py)
    # a perturbation screen beside the observational cells (`_simulate_screen`); 0 screened cells = none
    screen_cells: int = 0
    screen_moi: float = SCREEN_MOI
    screen_library: str = "locus"
    screen_efficiency: float = SCREEN_EFFICIENCY
    confounding: float = 0.0  # strength of a hidden within-type trans factor (`CONFOUND_*`); 0 = none


# What `--simulate key=value` may change, with the smallest value each takes (bench runs need ≥ 10 test cells of
# the rarest type, 6 % of cells; the paper's markers need 40 genes; below ~0.5 % open the paper's regime is gone).
SIMULATE_KEYS = {"n_cells": (int, 300), "n_peaks": (int, 1000), "n_genes": (int, 40), "n_chrom": (int, 1),
                 "open_fraction": (float, 0.005), "umi_per_cell": (float, 100.0), "world": (str, None),
                 "screen_cells": (int, 0), "screen_moi": (float, 0.0), "screen_library": (str, None),
                 "screen_efficiency": (float, 0.0), "confounding": (float, 0.0)}
SCREEN_LIBRARIES = ("locus", "genome")
_UPPER = {"open_fraction": 0.5, "screen_efficiency": 1.0}  # keys with an upper bound too


def scale_with(scale: str, overrides: dict[str, str] | None = None) -> "str | SimulationScale":
    """`scale` with `overrides` (key → text, from `--simulate key=value`) applied: the name itself when there are
    none, so the default data keep their provenance string. Unknown keys and values out of range raise ValueError
    naming the key, the value and what is allowed."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {sorted(SCALES)}")
    if not overrides:
        return scale
    changes = {}
    for key, text in overrides.items():
        if key not in SIMULATE_KEYS:
            raise ValueError(f"--simulate: unknown key {key!r}; the simulator takes {', '.join(SIMULATE_KEYS)}")
        kind, lowest = SIMULATE_KEYS[key]
        if key == "world":  # a name
            try:
                changes[key] = world_named(text.strip()).name
            except ValueError as exc:
                raise ValueError(f"--simulate {key}={text}: {exc}") from None
            continue
        if key == "screen_library":
            if text.strip() not in SCREEN_LIBRARIES:
                raise ValueError(f"--simulate {key}={text}: the screen library is one of {', '.join(SCREEN_LIBRARIES)}"
                                 " (locus: the peaks near each marker gene; genome: peaks drawn genome-wide)")
            changes[key] = text.strip()
            continue
        try:
            value = kind(float(text)) if kind is int and float(text).is_integer() else kind(text)
        except (TypeError, ValueError):
            raise ValueError(f"--simulate {key}={text}: {key} takes {'an integer' if kind is int else 'a number'}, "
                             f"e.g. {key}={SIMULATE_EXAMPLES[key]}") from None
        if not np.isfinite(value) or value < lowest or value > _UPPER.get(key, np.inf):
            allowed = f"between {lowest:g} and {_UPPER[key]:g}" if key in _UPPER else f"at least {lowest:g}"
            raise ValueError(f"--simulate {key}={text}: {key} must be {allowed}")
        changes[key] = value
    if changes == {"world": DEFAULT_WORLD}:  # naming the default world changes nothing: same data, same provenance
        return scale
    return replace(SCALES[scale], **changes)


SIMULATE_EXAMPLES = {"n_cells": 20000, "n_peaks": 40000, "n_genes": 150, "n_chrom": 10, "open_fraction": 0.04,
                     "umi_per_cell": 2000, "world": "additive", "screen_cells": 20000, "screen_moi": 100,
                     "screen_library": "locus", "screen_efficiency": 0.9, "confounding": 1}


# Scales shrink cells and genes, never open peaks per cell: quick and default keep ~1,800 / ~2,000 open peaks per
# cell (4.5 % / 4.0 % of the peaks), paper scale the paper's ~4,800 (3.8 %). `tiny` is for fast tests only.
SCALES = {
    "tiny": SimulationScale(n_cells=900, n_peaks=3000, n_genes=40, n_chrom=3),
    "quick": SimulationScale(n_cells=2000, n_peaks=40000, n_genes=150, n_chrom=10, open_fraction=0.045),
    "default": SimulationScale(n_cells=4000, n_peaks=50000, n_genes=300, n_chrom=12, open_fraction=0.04),
    "paper": SimulationScale(n_cells=10266, n_peaks=127219, n_genes=3000, n_chrom=23),
}


@dataclass
class SyntheticTruth:
    """Planted regulation: per-gene peak indices (columns of `data.atac`) and the oracle expression function.

    Arrays are indexed by gene (rows of `genes`); -1 pads unused peak slots and their weights are 0.
    """

    genes: list[str]
    cell_types: list[str]
    promoter: np.ndarray  # (G,) peak index
    promoter_left: np.ndarray  # (G,) ρ, expression fraction left when the promoter is closed
    group: np.ndarray  # (G, MAX_GROUPS, MAX_MEMBERS) redundant enhancer indices
    group_weight: np.ndarray  # (G, MAX_GROUPS) w_k
    single: np.ndarray  # (G, MAX_SINGLES) single-enhancer indices
    single_weight: np.ndarray  # (G, MAX_SINGLES) a_e
    floor: np.ndarray  # (G,) ε
    trans: np.ndarray  # (T, G) τ_g(t)
    magnitude: np.ndarray  # (G,) m_g, normalised counts per 10^5 at full activity
    coop: np.ndarray | None = None  # (G, MAX_COOP, 3) AND-unit members; None: the world has none
    coop_weight: np.ndarray | None = None  # (G, MAX_COOP)
    world: str = DEFAULT_WORLD
    _reg_cols: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        G = len(self.genes)
        if self.coop is None:
            self.coop = np.full((G, 0, max(COOP_SIZES)), -1, dtype=np.int64)
            self.coop_weight = np.zeros((G, 0))
        cols = np.concatenate([self.promoter, self.group.ravel(), self.single.ravel(), self.coop.ravel()])
        self._reg_cols = np.unique(cols[cols >= 0])
        self._index = {g: i for i, g in enumerate(self.genes)}
        # how many genes each planted peak regulates (> 1: an element shared by genes)
        per_gene = [np.unique(np.concatenate([self.promoter[g:g + 1], self.group[g].ravel(), self.single[g],
                                              self.coop[g].ravel()])) for g in range(G)]
        flat = np.concatenate(per_gene) if per_gene else np.zeros(0, dtype=np.int64)
        peaks, counts = np.unique(flat[flat >= 0], return_counts=True)
        self._shared = set(peaks[counts > 1].tolist())

    # ------------------------------------------------------------------ lookups
    def gene_index(self, gene: str) -> int:
        if gene in self._index:  # the fast path: the oracle looks genes up per evaluated job
            return self._index[gene]
        return gene_position(self.genes, gene, "the simulator's planted truth")

    def regulatory_peaks(self, gene: str) -> dict[str, list[int]]:
        """{'promoter', 'redundant' (OR-group members), 'additive' (single enhancers), 'cooperative' (AND-unit
        members), 'silencer'}: peak indices of one gene, by kind."""
        g = self.gene_index(gene)
        singles = [(int(j), w) for j, w in zip(self.single[g], self.single_weight[g]) if j >= 0]
        return {
            "promoter": [int(self.promoter[g])] if self.promoter[g] >= 0 else [],
            "redundant": [int(j) for j in self.group[g].ravel() if j >= 0],
            "additive": [j for j, w in singles if w >= 0],
            "cooperative": [int(j) for j in self.coop[g].ravel() if j >= 0],
            "silencer": [j for j, w in singles if w < 0],
        }

    def planted_peaks(self, gene: str) -> np.ndarray:
        """Every planted peak of one gene (promoter, group and AND-unit members, enhancers, silencers), sorted."""
        return np.array(sorted(p for ps in self.regulatory_peaks(gene).values() for p in ps), dtype=np.int64)

    def redundant_groups(self, gene: str) -> list[list[int]]:
        """Each redundant (OR) group of the gene as its own list of peak indices."""
        g = self.gene_index(gene)
        return [[int(j) for j in grp if j >= 0] for grp in self.group[g] if (grp >= 0).any()]

    def cooperative_units(self, gene: str) -> list[list[int]]:
        """Each cooperative (AND) unit of the gene as its own list of peak indices."""
        g = self.gene_index(gene)
        return [[int(j) for j in unit if j >= 0] for unit in self.coop[g] if (unit >= 0).any()]

    def shared_peaks(self, gene: str) -> list[int]:
        """The gene's planted peaks that also regulate another gene (closing them costs specificity)."""
        return [int(p) for p in self.planted_peaks(gene) if int(p) in self._shared]

    def units(self, gene: str) -> dict[str, list]:
        """The gene's planted regulation by unit kind, for the closure composition table (bench/scoring):
        promoter, groups (OR), coops (AND), singles (enhancers), silencers, shared (peaks also regulating another
        gene)."""
        reg = self.regulatory_peaks(gene)
        return {"promoter": reg["promoter"], "groups": self.redundant_groups(gene),
                "coops": self.cooperative_units(gene), "singles": reg["additive"], "silencers": reg["silencer"],
                "shared": self.shared_peaks(gene)}

    def planted_mask(self, n_peaks: int) -> np.ndarray:
        """Boolean mask over all peaks: True where the peak regulates some gene (False = background)."""
        mask = np.zeros(n_peaks, dtype=bool)
        mask[self._reg_cols] = True
        return mask

    def normalisers(self, gidx=slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """(Z_g, C_g) of the genes `gidx` (default: all): Z = Σ |w| over the gene's units and C = Σ |w| over its
        silencers, the constant of S = Σ_u w_u f_u(x) + C that keeps S in [0, Z] (datasets/worlds.py). One
        definition for the oracle, the knapsack and surrogates/truth.py."""
        single = self.single_weight[gidx]
        z = self.group_weight[gidx].sum(-1) + single.sum(-1)
        if self.coop.shape[1]:
            z = z + self.coop_weight[gidx].sum(-1)
        silenced = -np.minimum(single, 0.0).sum(-1)
        return z + 2 * silenced, silenced

    # ------------------------------------------------------------------ the oracle
    def expression(self, cells: MultiomeData, closed=None, genes=None) -> np.ndarray:
        """Oracle mean expression (normalised counts per 10⁵), cells × genes, with the peaks in `closed` set to 0.

        `cells` is a `MultiomeData` (or a view of one): its ATAC and its cell types are what the truth reads."""
        return self._expression(cells.atac, self.type_codes(cells), closed, genes)

    def type_codes(self, cells: MultiomeData) -> np.ndarray:
        return pd.Categorical(cells.obs["cell_type"].astype(str), categories=self.cell_types).codes.astype(np.int64)

    def _expression(self, atac: sp.csr_matrix, types: np.ndarray, closed=None, genes=None) -> np.ndarray:
        gidx = np.arange(len(self.genes)) if genes is None else np.array([self.gene_index(g) for g in genes])
        # the group gather is cells × genes × groups × members: keep it ≤ ~2·10⁷ floats per chunk
        chunk = int(max(16, min(4096, 2e7 // max(1, len(gidx) * self.group[0].size))))
        out = np.empty((atac.shape[0], len(gidx)), dtype=np.float64)
        closed_mask = np.zeros(atac.shape[1], dtype=bool)
        if closed is not None and len(closed):
            closed_mask[np.asarray(closed, dtype=np.int64)] = True
        cols = np.unique(np.concatenate([self.promoter[gidx], self.group[gidx].ravel(), self.single[gidx].ravel(),
                                         self.coop[gidx].ravel()]))
        cols = cols[cols >= 0]
        col_of = np.full(atac.shape[1], -1, dtype=np.int64)
        col_of[cols] = np.arange(len(cols))
        keep = (~closed_mask[cols]).astype(np.float64)
        for start in range(0, atac.shape[0], chunk):
            x = atac[start:start + chunk][:, cols].toarray().astype(np.float64) * keep
            x = np.concatenate([x, np.zeros((x.shape[0], 1))], axis=1)  # column -1 → an always-closed pad
            act = self.activity(x, col_of, gidx)
            out[start:start + chunk] = act * self.magnitude[gidx] * self.trans[types[start:start + chunk]][:, gidx]
        return out

    def activity(self, x: np.ndarray, col_of: np.ndarray, gidx: np.ndarray) -> np.ndarray:
        """P_g(x) · (ε_g + (1 − ε_g) S_g(x) / Z_g) for dense planted columns `x` (cells × cols, last col = 0)."""
        def gather(idx):
            return x[:, np.where(idx >= 0, col_of[np.maximum(idx, 0)], -1)]

        prom = gather(self.promoter[gidx])
        left = self.promoter_left[gidx]
        grp_open = 1.0 - np.prod(1.0 - gather(self.group[gidx]), axis=3)  # cells × G × groups
        s = (grp_open * self.group_weight[gidx]).sum(-1) + (gather(self.single[gidx]) * self.single_weight[gidx]).sum(-1)
        if self.coop.shape[1]:  # AND units: a padded member slot counts as open
            coop = self.coop[gidx]
            all_open = np.prod(np.where(coop >= 0, gather(coop), 1.0), axis=3)
            s = s + (all_open * self.coop_weight[gidx]).sum(-1)
        z, silenced = self.normalisers(gidx)
        if silenced.any():  # silencers: S gains |w| (1 − x)
            s = s + silenced
        eps = self.floor[gidx]
        return (left + (1 - left) * prom) * (eps + (1 - eps) * s / np.maximum(z, 1e-12))

    def best_closure(self, cells: MultiomeData, gene: str, L: int, weights=None) -> tuple[np.ndarray, float]:
        """The closure of at most L of the gene's planted peaks that lowers its mean oracle expression most —
        exactly, not by a search heuristic. With per-cell `weights` w_c (default 1) it minimises the weighted mean
        mean_c w_c E_c instead: w_c = 1 / (1 + E_c) makes it the closure with the lowest Rel Δ (surrogates/truth.py).

        Returns (peaks, the objective left as a fraction of its unperturbed value; NaN without cells or
        expression). A gene without a promoter keeps P = ρ (the simulator's always-closed pad).
        Why it can be exact: with the promoter's state fixed (left as it is, or closed), each cell's expression is
        A_c + B_c · S_c(x) and S_c sums one term per *unit* — an OR group, an AND unit, a single enhancer or a
        silencer (datasets/worlds.py) — that reads only its own members (a gene's units share no member), so the
        mean over cells is a constant plus one term per unit that depends only on which of that unit's members are
        closed. Choosing what to close is then a multiple-choice knapsack: every unit offers each subset of its
        members (≤ 2⁴) at a cost of its size, with capacity L (L − 1 when the promoter is closed), solved by
        dynamic programming over units × capacity; the better promoter state wins. Elements shared with another
        gene are one of this gene's units like any other."""
        g = self.gene_index(gene)
        peaks = self.planted_peaks(gene)
        n = len(peaks)
        if cells.n_cells == 0 or n == 0:
            return peaks[:0], float("nan") if cells.n_cells == 0 else 1.0
        pos = {int(p): i for i, p in enumerate(peaks)}
        x = cells.atac[:, peaks].toarray().astype(np.float64)  # cells × planted peaks
        w_c = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
        scale = w_c * self.trans[self.type_codes(cells), g] * self.magnitude[g]  # w_c · τ_c · m_g
        left, eps = self.promoter_left[g], self.floor[g]
        z, silenced = (float(v) for v in self.normalisers(g))
        prom = self.promoter[g]
        # (members, weight, logic): OR — the unit counts while any member is open; AND — while all are
        units = [([pos[int(j)] for j in grp if j >= 0], w, "or") for grp, w in zip(self.group[g], self.group_weight[g])
                 if (grp >= 0).any()]
        units += [([pos[int(j)] for j in unit if j >= 0], w, "and")
                  for unit, w in zip(self.coop[g], self.coop_weight[g]) if (unit >= 0).any()]
        units += [([pos[int(j)]], a, "or") for j, a in zip(self.single[g], self.single_weight[g]) if j >= 0]

        def solve(promoter_closed: bool, capacity: int):
            p_c = (np.full(len(x), left) if promoter_closed or prom < 0
                   else left + (1 - left) * x[:, pos[int(prom)]])
            A = float(np.mean(scale * p_c * (eps + (1 - eps) * silenced / max(z, 1e-12)))) if silenced else \
                float(np.mean(scale * p_c * eps))
            B = scale * p_c * (1 - eps) / max(z, 1e-12)  # per cell
            offers = []  # per unit: [(cost, mean contribution, closed member indices)]
            for members, w, logic in units:
                options = []
                for mask in range(1 << len(members)):
                    closed = [m for k, m in enumerate(members) if mask >> k & 1]
                    kept = [m for m in members if m not in closed]
                    if logic == "or":
                        on = 1.0 - np.prod(1.0 - x[:, kept], axis=1) if kept else np.zeros(len(x))
                    else:
                        on = np.prod(x[:, members], axis=1) if not closed else np.zeros(len(x))
                    options.append((len(closed), float(np.mean(B * w * on)), closed))
                offers.append(options)
            best = {0: (0.0, [])}  # cost used → (lowest total contribution, closed indices)
            for options in offers:
                nxt: dict[int, tuple[float, list]] = {}
                for used, (value, closed) in best.items():
                    for cost, contribution, members in options:
                        c = used + cost
                        if c <= capacity and (c not in nxt or value + contribution < nxt[c][0] - 1e-15):
                            nxt[c] = (value + contribution, closed + members)
                best = nxt
            value, closed = min(best.values(), key=lambda v: v[0])
            return A + value, closed + ([pos[int(prom)]] if promoter_closed else [])

        options = [solve(False, L)] + ([solve(True, L - 1)] if prom >= 0 and L >= 1 else [])
        value, closed = min(options, key=lambda o: o[0])
        base = float(np.mean(w_c * self._expression(cells.atac, self.type_codes(cells), genes=[gene])[:, 0]))
        return np.sort(peaks[closed]), value / base if base > 0 else float("nan")


# ---------------------------------------------------------------------------------------------------- the simulator
def _module_on(confounding: float, hidden):
    """Per-cell probability that a home module is on: GROUP_ON, or with confounding shifted on the logit scale by
    CONFOUND_ACCESS·κ·h (a column, one row per cell)."""
    if not confounding:
        return GROUP_ON
    logit = np.log(GROUP_ON / (1 - GROUP_ON)) + CONFOUND_ACCESS * confounding * hidden
    return (1.0 / (1.0 + np.exp(-logit)))[:, None]


def _expression_factor(confounding: float, hidden):
    """Per-cell multiplier of every gene's mean expression: exp(CONFOUND_EXPRESSION·κ·h); None without confounding.
    The truth model does not read h (a closure's effect on a cell is relative, so it is the same for any h)."""
    return np.exp(CONFOUND_EXPRESSION * confounding * hidden) if confounding else None


def _draw_planted(rng, cell_type, depth, reg_pi, module_home, module_id, is_member, reg_index, module_on):
    """Open planted peaks of the cells: exact Bernoulli draws, only the planted columns dense, 1,024 cells at a
    time; a module of a home type is on with `module_on` (a probability, or a column of them per cell).
    Returns (rows, cols, number of open entries)."""
    rows, cols, n_open = [], [], 0
    chunk = 1024
    for start in range(0, len(cell_type), chunk):
        ct, dep = cell_type[start:start + chunk], depth[start:start + chunk, None]
        p = 1.0 - (1.0 - reg_pi[ct]) ** dep
        on_p = module_on if np.isscalar(module_on) else module_on[start:start + chunk]
        on = np.where(module_home[ct], rng.random((len(ct), module_home.shape[1])) < on_p, True)
        p[:, is_member] *= on[:, module_id[is_member]]
        r, c = np.nonzero(rng.random(p.shape) < p)
        rows.append(r + start)
        cols.append(reg_index[c])
        n_open += len(r)
    return rows, cols, n_open


def _draw_background(rng, cell_type, depth, bg_pi, bg_cols) -> tuple[list, list]:
    """Open background peaks: per cell, Poisson(depth · Σπ) draws from its type's categorical distribution."""
    rows, cols = [], []
    n_bg = bg_pi.shape[1]
    for t in range(bg_pi.shape[0]):
        cells = np.flatnonzero(cell_type == t)
        cdf = np.cumsum(bg_pi[t])
        n_open = rng.poisson(depth[cells] / depth.mean() * cdf[-1])
        picks = np.searchsorted(cdf, rng.random(n_open.sum()) * cdf[-1], side="right")
        rows.append(np.repeat(cells, n_open))
        cols.append(bg_cols[np.minimum(picks, n_bg - 1)])
    return rows, cols


def _binary_atac(rows: list, cols: list, shape) -> sp.csr_matrix:
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    atac = sp.csr_matrix((np.ones(len(rows), dtype=np.uint8), (rows, cols.astype(np.int32))), shape=shape)
    atac.data[:] = 1  # duplicates from the Poisson sampler were summed; accessibility stays binary
    return atac


def _draw_rna(rng, truth, atac, cell_type, lib, factor=None) -> np.ndarray:
    """UMI counts Gamma-Poisson around lib · E / 1e5 (E: the truth's mean, times a per-cell `factor`), normalised
    back to log1p(counts / lib · 1e5)."""
    mean = truth._expression(atac, cell_type)  # normalised counts per 10^5
    if factor is not None:
        mean = mean * factor[:, None]
    shape = 10.0  # Gamma-Poisson (negative binomial) overdispersion
    lam = rng.gamma(shape, lib[:, None] * mean / 1e5 / shape)
    umi = rng.poisson(lam)
    return np.log1p(umi / lib[:, None] * 1e5).astype(np.float32)


def screen_library(sc: "SimulationScale", rng, peaks: pd.DataFrame, genes: pd.DataFrame, markers) -> np.ndarray:
    """Targeted peaks of a simulated screen, sorted. `locus`: every peak within ±WINDOW_BP of a marker gene's TSS
    (its planted peaks and the candidates around them, as a locus-focused CRISPRi library tiles a locus); `genome`:
    as many peaks drawn uniformly from the whole genome (a genome-wide design, most targets regulating nothing)."""
    marker_rows = genes.index.isin(list(markers))
    _, near = window_pairs(peaks, genes[marker_rows], WINDOW_BP)
    locus = np.unique(near)
    if sc.screen_library == "locus":
        return locus
    return np.sort(rng.choice(len(peaks), size=min(len(locus), len(peaks)), replace=False))


def _simulate_screen(sc: "SimulationScale", seed: int, truth: "SyntheticTruth", peaks, genes, markers, draw_cells):
    """`sc.screen_cells` more cells of the same population, each given Poisson(`screen_moi`) guides drawn from the
    library (`screen_library`) and 5 % non-targeting controls; a guide closes its target with probability
    `screen_efficiency`, and the cell's ATAC shows the closure (dCas9-KRAB closes the chromatin it binds), while its
    RNA is drawn from the truth's expression *with* the closure. One stream of its own (seed, 3), so the
    observational cells are those of the data without a screen, bit for bit."""
    rng = np.random.default_rng([seed, 3])
    targets = screen_library(sc, rng, peaks, genes, markers)
    n_ntc = max(10, int(round(SCREEN_NON_TARGETING * len(targets))))
    names = [f"sg_{c}:{a}-{b}" for c, a, b in peaks.iloc[targets][["chrom", "start", "end"]].itertuples(index=False)]
    table = pd.DataFrame({"peak": np.concatenate([targets, np.full(n_ntc, -1)])},
                         index=pd.Index(names + [f"NTC_{i:03d}" for i in range(n_ntc)], name="guide"))
    n, n_guides = sc.screen_cells, len(table)
    hidden = rng.standard_normal(n) if sc.confounding else None
    types, lib, atac = draw_cells(rng, n, hidden)
    k = np.minimum(rng.poisson(sc.screen_moi, n), n_guides)
    g_rows = np.repeat(np.arange(n), k)
    g_cols = np.concatenate([rng.choice(n_guides, size=m, replace=False) for m in k]) if n else np.zeros(0, int)
    guides = sp.csr_matrix((np.ones(len(g_rows), dtype=np.uint8), (g_rows, g_cols)), shape=(n, n_guides))
    peak = table["peak"].to_numpy()[g_cols]
    works = (peak >= 0) & (rng.random(len(g_cols)) < sc.screen_efficiency)
    closed = sp.csr_matrix((np.ones(int(works.sum())), (g_rows[works], peak[works])), shape=atac.shape)
    atac = sp.csr_matrix(atac - atac.multiply(closed.astype(bool)), dtype=np.uint8)
    atac.eliminate_zeros()
    rna = _draw_rna(rng, truth, atac, types, lib, _expression_factor(sc.confounding, hidden))
    obs = pd.DataFrame({"cell_type": pd.Categorical([truth.cell_types[t] for t in types],
                                                    categories=truth.cell_types),
                        "split": split_screen(n, seed)},
                       index=pd.Index([f"screen{i:06d}" for i in range(n)], name="barcode"))
    return Screen(atac, rna, obs, guides, table)


def _gene_structure(rng, gene_names: list[str], markers: list[str], types: list[str]):
    """Per gene: home cell types, number and sizes of redundant groups, single enhancers, weights, trans, m_g."""
    G, T = len(gene_names), len(types)
    is_marker = np.isin(gene_names, markers)
    home = np.zeros((G, T), dtype=bool)
    sizes = np.zeros((G, MAX_GROUPS), dtype=int)
    n_single = np.zeros(G, dtype=int)
    regulated = np.ones(G, dtype=bool)
    for g, name in enumerate(gene_names):
        if is_marker[g]:
            for ct, genes in PAPER_MARKERS.items():
                home[g, types.index(ct)] |= name in genes
            sizes[g] = rng.choice(GROUP_SIZES, size=MARKER_GROUPS)
            n_single[g] = MARKER_SINGLES
        else:
            home[g, rng.choice(T, size=rng.integers(1, 4), replace=False)] = True
            k = rng.integers(0, OTHER_MAX_GROUPS + 1)
            sizes[g, :k] = rng.choice(GROUP_SIZES[:2], size=k)
            n_single[g] = rng.integers(1, OTHER_MAX_SINGLES + 1)
            if rng.random() >= OTHER_REGULATED:  # no cis-regulation among the peaks: activity ≡ 1
                regulated[g] = False
                sizes[g], n_single[g] = 0, 0
    group_w = np.where(sizes > 0, rng.uniform(0.5, 1.5, (G, MAX_GROUPS)), 0.0)
    single_w = np.where(np.arange(MAX_SINGLES) < n_single[:, None], rng.uniform(0.1, 0.5, (G, MAX_SINGLES)), 0.0)
    trans = np.where(home.T, 1.0, np.where(is_marker, MARKER_OFF_TRANS, 1.0)[None, :])
    trans = trans * np.where(is_marker, 1.0, rng.lognormal(0.0, 0.5, (T, G)))  # non-markers vary by type
    magnitude = np.where(is_marker, rng.lognormal(np.log(600), 0.4, G), rng.lognormal(np.log(40), 1.0, G))
    promoter_left = np.where(is_marker, MARKER_PROMOTER_LEFT, np.where(regulated, rng.uniform(0.3, 0.8, G), 1.0))
    floor = np.where(is_marker, MARKER_FLOOR, np.where(regulated, rng.uniform(0.05, 0.3, G), 1.0))
    return regulated, is_marker, home, sizes, n_single, group_w, single_w, trans, magnitude, promoter_left, floor


def _poisson_rate_scale(weights: np.ndarray, distinct: float) -> float:
    """s such that Σ_j (1 − exp(−s·w_j)) = `distinct`: the Poisson-process sampler draws peaks with replacement,
    and a peak drawn twice is open once, so the rate is scaled to give the wanted number of *distinct* peaks."""
    lo, hi = 0.0, 1.0
    while np.sum(-np.expm1(-hi * weights)) < distinct:
        hi *= 2.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.sum(-np.expm1(-mid * weights)) < distinct else (lo, mid)
    return 0.5 * (lo + hi)


def _world_entries(plans) -> tuple[list, list, list]:
    """Planted peaks of a world other than `redundant`, per regulated gene in order: promoter (kind 0), OR-group
    members (1, slot (group, member)), single enhancers (2, (slot, 0)), AND-unit members (3, (unit, member)),
    silencers (4, (slot after the enhancers, 0)). Borrowed elements get no peak of their own."""
    reg_gene, reg_kind, reg_slot = [], [], []
    for g, p in enumerate(plans):
        if not (p.groups or p.coops or p.single_w or p.silencer_w or p.borrowed):
            continue
        entries = [(0, (0, 0))]
        entries += [(1, (k, m)) for k, size in enumerate(p.groups) for m in range(size)]
        entries += [(2, (e, 0)) for e in range(len(p.single_w))]
        entries += [(3, (c, m)) for c, size in enumerate(p.coops) for m in range(size)]
        entries += [(4, (len(p.single_w) + e, 0)) for e in range(len(p.silencer_w))]
        for kind, slot in entries:
            reg_gene.append(g), reg_kind.append(kind), reg_slot.append(slot)
    return reg_gene, reg_kind, reg_slot


def _world_weights(world, plans, group, coop, single, reg_index, offset, widths):
    """(group_w, coop_w, single_w) of a world: its draws, times each unit's contact with the TSS (the mean over
    its members) where the world decays with distance; silencers negative; borrowed elements their own draw."""
    G = len(plans)
    distance = np.zeros(int(reg_index.max()) + 1 if len(reg_index) else 0)
    distance[reg_index] = np.abs(offset)

    def decay(peaks) -> float:
        peaks = [j for j in np.ravel(peaks) if j >= 0]
        return float(np.mean(contact(distance[peaks]))) if world.distance_decay and peaks else 1.0

    group_w, coop_w, single_w = np.zeros((G, widths[0])), np.zeros((G, widths[1])), np.zeros((G, widths[2]))
    for g, p in enumerate(plans):
        for k, w in enumerate(p.group_w):
            group_w[g, k] = w * decay(group[g, k])
        for c, w in enumerate(p.coop_w):
            coop_w[g, c] = w * decay(coop[g, c])
        own = [(w, 1.0) for w in p.single_w] + [(w, -1.0) for w in p.silencer_w]
        for e, (w, sign) in enumerate(own):
            single_w[g, e] = sign * w * decay(single[g, e])
        for k, (owner, e, w) in enumerate(p.borrowed):  # the weight already holds its drawn contact
            single_w[g, len(own) + k] = (-w if e >= len(plans[owner].single_w) else w)
    return group_w, coop_w, single_w


def simulate(scale: str | SimulationScale = "quick", seed: int = 0) -> tuple[MultiomeData, SyntheticTruth]:
    """Generate a multiome dataset with the planted regulation of the scale's world (datasets/worlds.py; default
    `redundant`). Deterministic in (scale, seed)."""
    t0 = time.perf_counter()
    if isinstance(scale, str) and scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {sorted(SCALES)}")
    sc = SCALES[scale] if isinstance(scale, str) else scale
    rng = np.random.default_rng(seed)
    types = list(CELL_TYPES)
    T = len(types)
    markers = marker_genes()
    G = sc.n_genes
    if G < len(markers):
        raise ValueError(f"n_genes must be ≥ {len(markers)} to hold the paper's marker genes")
    gene_names = markers + [f"SYN{i:05d}" for i in range(G - len(markers))]
    (regulated, is_marker, home, sizes, n_single, group_w, single_w, trans, magnitude, promoter_left,
     floor) = _gene_structure(rng, gene_names, markers, types)

    # ---- genome layout: planted peaks near their gene's TSS, background peaks anywhere ----------------------
    chrom_len = rng.integers(60_000_000, 250_000_000, size=sc.n_chrom)
    g_chrom = rng.integers(0, sc.n_chrom, size=G)
    tss = (rng.random(G) * (chrom_len[g_chrom] - 1_000_000) + 500_000).astype(np.int64)
    world = world_named(sc.world)
    if world.name == DEFAULT_WORLD:  # v2's draws, bit for bit
        plans, layout_rng = None, rng
        reg_gene, reg_kind, reg_slot = [], [], []  # kind: 0 promoter, 1 group member, 2 single; slot: (group, member)
        for g in np.flatnonzero(regulated):
            reg_gene.append(g), reg_kind.append(0), reg_slot.append((0, 0))
            for k in range(MAX_GROUPS):
                for m in range(sizes[g, k]):
                    reg_gene.append(g), reg_kind.append(1), reg_slot.append((k, m))
            for e in range(n_single[g]):
                reg_gene.append(g), reg_kind.append(2), reg_slot.append((e, 0))
        widths = (MAX_GROUPS, 0, MAX_SINGLES)
    else:  # the world's own stream, after everything the worlds share
        layout_rng = np.random.default_rng([seed, world.code])
        plans = plan_units(world, layout_rng, regulated, is_marker, home, g_chrom, tss)
        reg_gene, reg_kind, reg_slot = _world_entries(plans)
        widths = (max(1, max(len(p.groups) for p in plans)), max(1, max(len(p.coops) for p in plans)),
                  max(1, max(len(p.single_w) + len(p.silencer_w) + len(p.borrowed) for p in plans)))
    reg_gene, reg_kind = np.array(reg_gene), np.array(reg_kind)
    n_reg = len(reg_gene)
    n_bg = sc.n_peaks - n_reg
    if n_bg < n_reg:
        raise ValueError(f"n_peaks={sc.n_peaks} is too small: {G} genes plant {n_reg} regulatory peaks and the "
                         "background needs at least as many; raise n_peaks or lower n_genes")
    offset = layout_rng.choice([-1, 1], n_reg) * layout_rng.integers(2_000, 250_000, n_reg)
    reg_pos = np.maximum(1000, tss[reg_gene] + np.where(reg_kind == 0, 0, offset))
    bg_chrom = rng.choice(sc.n_chrom, size=n_bg, p=chrom_len / chrom_len.sum())
    bg_pos = (rng.random(n_bg) * (chrom_len[bg_chrom] - 1000)).astype(np.int64)
    chrom_all = np.concatenate([g_chrom[reg_gene], bg_chrom])
    pos_all = np.concatenate([reg_pos, bg_pos])
    order = np.lexsort((pos_all, chrom_all))  # genome order → contiguous chromosome blocks
    new_index = np.empty_like(order)
    new_index[order] = np.arange(len(order))
    width = rng.integers(200, 1500, size=len(order))
    peaks = pd.DataFrame({"chrom": [f"chr{c + 1}" for c in chrom_all[order]], "start": pos_all[order],
                          "end": pos_all[order] + width})
    reg_index = new_index[:n_reg]
    bg_cols = new_index[n_reg:]

    max_groups, max_coops, max_singles = widths
    promoter = np.full(G, -1, dtype=np.int64)
    group = np.full((G, max_groups, MAX_MEMBERS), -1, dtype=np.int64)
    single = np.full((G, max_singles), -1, dtype=np.int64)
    coop = np.full((G, max_coops if plans is not None else 0, max(COOP_SIZES)), -1, dtype=np.int64)
    for j, g, kind, (a, b) in zip(reg_index, reg_gene, reg_kind, reg_slot):
        if kind == 0:
            promoter[g] = j
        elif kind == 1:
            group[g, a, b] = j
        elif kind == 3:
            coop[g, a, b] = j
        else:  # 2 single enhancer, 4 silencer: one row of slots, silencers after the enhancers
            single[g, a] = j
    coop_w = np.zeros(coop.shape[:2])  # the redundant world has no AND unit
    if plans is not None:
        group_w, coop_w, single_w = _world_weights(world, plans, group, coop, single, reg_index, offset, widths)
        for g, p in enumerate(plans):  # elements borrowed from a neighbouring gene: the owner's peak
            for k, (owner, e, _) in enumerate(p.borrowed):
                single[g, len(p.single_w) + len(p.silencer_w) + k] = single[owner, e]

    # ---- open probabilities of planted peaks per cell type ------------------------------------------------
    reg_home = home[reg_gene].T  # T × n_reg
    promoter_pi = np.where(reg_home | is_marker[reg_gene], PROMOTER_OPEN, PROMOTER_ELSEWHERE)
    is_member = np.isin(reg_kind, (1, 3))  # members of OR groups and AND units: their unit is a module
    reg_pi = np.where(reg_kind == 0, promoter_pi,
                      np.where(reg_home, np.where(is_member, MEMBER_OPEN, SINGLE_OPEN), ENHANCER_ELSEWHERE))
    reg_pi = np.where(reg_home & (reg_kind == 4), SILENCER_OPEN, reg_pi)
    if world.distance_decay:  # its single enhancers stand in for v2's group members: open as often as those
        reg_pi = np.where(reg_home & (reg_kind == 2), MEMBER_OPEN, reg_pi)
    module_id = np.full(n_reg, -1)  # one module per (gene, group or AND unit) with members
    module_key = reg_gene[is_member] * (max_groups + coop.shape[1]) + np.array(
        [s[0] + (max_groups if k == 3 else 0) for s, k in zip(reg_slot, reg_kind) if k in (1, 3)], dtype=np.int64)
    _, module_id[is_member] = np.unique(module_key, return_inverse=True)
    n_modules = int(module_id.max()) + 1 if is_member.any() else 0
    module_home = np.zeros((T, max(n_modules, 1)), dtype=bool)
    module_home[:, module_id[is_member]] = reg_home[:, is_member]

    # ---- cells --------------------------------------------------------------------------------------------
    shares = np.array([CELL_TYPE_SHARES[t] for t in types])
    counts = np.maximum(1, np.round(shares / shares.sum() * sc.n_cells).astype(int))
    counts[0] += sc.n_cells - counts.sum()
    cell_type = np.repeat(np.arange(T), counts)[rng.permutation(sc.n_cells)]
    depth = rng.lognormal(0.0, 0.35, sc.n_cells)
    lib = rng.lognormal(np.log(sc.umi_per_cell), 0.4, sc.n_cells)

    hidden = np.random.default_rng([seed, 31]).standard_normal(sc.n_cells) if sc.confounding else None
    rows, cols, reg_open = _draw_planted(rng, cell_type, depth, reg_pi, module_home, module_id, is_member, reg_index,
                                         _module_on(sc.confounding, hidden))
    # background: always present, whatever the planted peaks leave of the target open fraction (at least 80 %
    # of it), with cell-type programs
    bg_per_cell = max(sc.open_fraction * sc.n_peaks - reg_open / sc.n_cells, 0.8 * sc.open_fraction * sc.n_peaks)
    base = rng.lognormal(0.0, 1.0, n_bg)
    program = np.ones((T, n_bg))
    in_program = np.flatnonzero(rng.random(n_bg) < PROGRAM_FRACTION)
    program[rng.integers(0, T, in_program.size), in_program] = PROGRAM_ENRICHMENT
    bg_pi = base * program
    bg_pi *= np.array([_poisson_rate_scale(row, bg_per_cell) for row in bg_pi])[:, None]
    bg_rows, bg_cols_drawn = _draw_background(rng, cell_type, depth, bg_pi, bg_cols)
    atac = _binary_atac(rows + bg_rows, cols + bg_cols_drawn, (sc.n_cells, sc.n_peaks))

    def draw_cells(cell_rng, n: int, h):
        """n more cells of the same population (the screen's), from `cell_rng`: (types, library sizes, ATAC)."""
        types_ = cell_rng.choice(T, size=n, p=shares / shares.sum())
        depth_ = cell_rng.lognormal(0.0, 0.35, n)
        lib_ = cell_rng.lognormal(np.log(sc.umi_per_cell), 0.4, n)
        r, c, _ = _draw_planted(cell_rng, types_, depth_, reg_pi, module_home, module_id, is_member, reg_index,
                                _module_on(sc.confounding, h))
        br, bc = _draw_background(cell_rng, types_, depth_, bg_pi, bg_cols)
        return types_, lib_, _binary_atac(r + br, c + bc, (n, sc.n_peaks))

    truth = SyntheticTruth(genes=gene_names, cell_types=types, promoter=promoter, promoter_left=promoter_left,
                           group=group, group_weight=group_w, single=single, single_weight=single_w, floor=floor,
                           trans=trans, magnitude=magnitude, coop=coop, coop_weight=coop_w, world=world.name)

    # ---- expression ----------------------------------------------------------------------------------------
    rna = _draw_rna(rng, truth, atac, cell_type, lib, _expression_factor(sc.confounding, hidden))

    barcodes = pd.Index([f"cell{i:06d}" for i in range(sc.n_cells)], name="barcode")
    obs = pd.DataFrame({"cell_type": pd.Categorical([types[t] for t in cell_type], categories=types)},
                       index=barcodes)
    obs["split"] = assign_split(obs["cell_type"], seed)
    genes = pd.DataFrame({"chrom": [f"chr{c + 1}" for c in g_chrom], "tss": tss}, index=pd.Index(gene_names))
    uns = {"source": "synthetic", "simulator_version": SIMULATOR_VERSION, "seed": seed, "world": world.name,
           "scale": scale if isinstance(scale, str) else repr(sc), "normalisation": "log1p(counts per 1e5)"}
    screen = _simulate_screen(sc, seed, truth, peaks, genes, markers, draw_cells) if sc.screen_cells else None
    data = MultiomeData(atac, rna, obs, peaks, genes, uns, screen)
    log.info("simulated %r in %.1fs", data, time.perf_counter() - t0)
    return data, truth
