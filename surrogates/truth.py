"""`TruthModel`: the simulator's exact expression function as a model of the protocol — the truth tier.

The simulator (datasets/synthetic.py) plants each gene's regulation; its mean expression in cell c of type t is

    E_gc(x) = m_g · τ_g(t) · P_g(x) · (ε_g + (1 − ε_g) · S_g(x) / Z_g),
    P_g = ρ_g + (1 − ρ_g) x_promoter,
    S_g = Σ_k w_k OR_k(x) + Σ_u w_u AND_u(x) + Σ_e a_e x_e + Σ_{a_e<0} |a_e|,
    OR_k = 1 − Π_{j∈k} (1 − x_j),   AND_u = Π_{j∈u} x_j,   Z_g = Σ |weights|
(AND units and silencers, a_e < 0, exist in some worlds only: datasets/worlds.py).

`TruthModel` outputs ŷ = log1p(E), like the surrogate's log-normalised predictions, so the evaluator's formulas
(Rel Δ = 100 · mean_c expm1(ŷ_closed − ŷ)) are unchanged. For real-valued x (IG paths, SmoothGrad noise) it is the
multilinear extension written above — exact on binary x, with exact gradients from autograd — computed in float64.
Outside [0, 1] E can fall below −1 (noise of σ = 0.15 on a closed group's members makes OR_k < 0); log1p is then
evaluated at −1 + 1e−12 (its gradient there is 0: such points carry no information about the binary model).
Background peaks regulate nothing, and only a gene's planted peaks enter its output, so the model is cheap.

Why a tier on it: redundancy here is real (closing one member of a group changes nothing while another is open),
and the best closure of at most L peaks is known exactly (`SyntheticTruth.best_closure`, a knapsack), so every
explainer gets a "% of optimum" on the model it explains (bench/scoring/evaluate.py).
Cell types are required (`cell_types=`): τ_g(t) is not in the ATAC.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from datasets.synthetic import SyntheticTruth

# 1: the multilinear extension of the simulator's E(x) in float64, log1p guarded at −1 + 1e−12
TRUTH_MODEL_VERSION = 1
_LOG_FLOOR = -1.0 + 1e-12


class TruthModel:
    """The simulator's exact E_gc(x) as an `ExplainedModel` (surrogates/protocol.py): ŷ = log1p(E), float64."""

    threads = 2  # jobs on it run on 2 torch threads, like the surrogate's (a fixed count repeats bit for bit)

    def __init__(self, truth: SyntheticTruth, n_peaks: int):
        self.truth, self.n_peaks = truth, int(n_peaks)
        self.gene_names = list(truth.genes)
        self.n_genes = len(self.gene_names)
        self.meta: dict = {}
        # the version and the planted truth itself: a modified truth never reuses the simulator's jobs
        self.cache_key = f"truth-v{TRUTH_MODEL_VERSION}-{_truth_hash(truth)}"
        t = truth
        cols = np.concatenate([t.promoter, t.group.ravel(), t.single.ravel(), t.coop.ravel()])
        self._cols = np.unique(cols[cols >= 0])  # every planted peak, sorted
        pad = len(self._cols)  # index of an always-closed column appended to the gathered planted columns
        col_of = np.full(self.n_peaks, pad, dtype=np.int32)
        col_of[self._cols] = np.arange(pad)
        self._col_of = col_of

        def local(idx):
            return torch.as_tensor(np.where(idx >= 0, col_of[np.maximum(idx, 0)], pad))

        # only the groups and single enhancers that exist (the arrays pad every gene to 10 groups × 4 members)
        g_of_group, k_of_group = np.nonzero((t.group >= 0).any(-1))
        g_of_single, e_of_single = np.nonzero(t.single >= 0)
        self._prom = local(t.promoter)
        self._group_gene, self._group = torch.as_tensor(g_of_group), local(t.group[g_of_group, k_of_group])
        self._single_gene, self._single = torch.as_tensor(g_of_single), local(t.single[g_of_single, e_of_single])
        f64 = {"dtype": torch.float64}
        self._gw = torch.as_tensor(t.group_weight[g_of_group, k_of_group], **f64)
        self._sw = torch.as_tensor(t.single_weight[g_of_single, e_of_single], **f64)
        self._left = torch.as_tensor(t.promoter_left, **f64)
        # AND units (the synergy and mixed worlds): a padded member slot reads an always-open column
        g_of_coop, c_of_coop = np.nonzero((t.coop >= 0).any(-1))
        self._coop_gene, self._coop = torch.as_tensor(g_of_coop), local(t.coop[g_of_coop, c_of_coop])
        self._coop_pad = torch.as_tensor(t.coop[g_of_coop, c_of_coop] < 0)
        self._cw = torch.as_tensor(t.coop_weight[g_of_coop, c_of_coop], **f64)
        # silencers (negative single weights): S gains the constant Σ|w| and Z counts |w|
        z, silenced = t.normalisers()
        self._neg = torch.as_tensor(silenced, **f64) if silenced.any() else None
        self._z = torch.as_tensor(z, **f64).clamp_min(1e-12)
        self._eps, self._scale = torch.as_tensor(t.floor, **f64), torch.as_tensor(t.trans * t.magnitude, **f64)
        self._types = pd.Index(t.cell_types)

    # ------------------------------------------------------------------ the protocol
    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def gene_index(self, gene: str) -> int:
        return self.truth.gene_index(gene)

    def evaluating(self):
        return contextlib.nullcontext(self)

    def type_codes(self, cell_types, n_rows: int) -> torch.Tensor:
        """Cell-type codes of `n_rows` rows (one name for all rows, or one per row); ValueError when missing."""
        if cell_types is None:
            raise ValueError("the truth model needs each cell's type (cell_types=...): the simulator's trans factor "
                             "τ_g(t) depends on it and is not in the ATAC")
        names = np.full(n_rows, cell_types, dtype=object) if isinstance(cell_types, str) else np.asarray(cell_types)
        if len(names) != n_rows:
            raise ValueError(f"cell_types has {len(names)} entries for {n_rows} rows")
        codes = self._types.get_indexer(names.astype(str))
        if (codes < 0).any():
            raise ValueError(f"unknown cell type(s) {sorted(set(names[codes < 0]))}; the simulator has "
                             f"{list(self._types)}")
        return torch.as_tensor(codes, dtype=torch.long)

    def dense(self, x: torch.Tensor, genes=None, cell_types=None) -> torch.Tensor:
        """log1p(E) of the multilinear extension at real-valued x (cells × peaks), float64, differentiable."""
        gidx = self._gidx(genes)
        types = self.type_codes(cell_types, x.shape[0])
        planted = x[:, torch.as_tensor(self._cols)].double()
        planted = torch.cat([planted, planted.new_zeros(x.shape[0], 1)], dim=1)
        return self._log_expression(planted, gidx, types)

    @torch.no_grad()
    def predict(self, atac, closed=None, genes=None, cell_types=None, chunk: int = 4096) -> torch.Tensor:
        """log1p(E) of binary CSR rows with `closed` peaks set to 0 (cells × genes or the chosen `genes`)."""
        gidx = self._gidx(genes)
        types = self.type_codes(cell_types, atac.shape[0])
        atac = sp.csr_matrix(atac)
        col = self._col_of.copy()  # peak → planted column, or the pad (background, and closed peaks)
        if closed is not None and len(closed):
            col[np.asarray(closed, dtype=np.int64)] = len(self._cols)
        out = []
        for s in range(0, atac.shape[0], chunk):
            part = atac[s:s + chunk]
            local = col[part.indices]
            entry = np.flatnonzero(local < len(self._cols))  # open entries of planted peaks (a few per cent)
            row = np.searchsorted(part.indptr, entry, side="right") - 1
            planted = np.zeros((part.shape[0], len(self._cols) + 1))
            planted[row, local[entry]] = 1.0  # binary rows: an open entry opens its planted column
            out.append(self._log_expression(torch.as_tensor(planted), gidx, types[s:s + chunk]))
        return torch.cat(out) if out else torch.zeros(0, len(gidx), dtype=torch.float64)

    def input_support(self) -> np.ndarray:
        """The peaks any output reads: every gene's planted peaks (background regulates nothing)."""
        return self._cols

    # ------------------------------------------------------------------ the function
    def _gidx(self, genes) -> torch.Tensor:
        if genes is None:
            return torch.arange(self.n_genes)
        return torch.as_tensor([self.gene_index(g) for g in genes], dtype=torch.long)

    def _log_expression(self, planted: torch.Tensor, gidx: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        """planted: rows × (planted columns + an always-0 pad), float64 → log1p(E) rows × len(gidx) (a gene asked
        for twice gets its column twice)."""
        unique, back = torch.unique(gidx, return_inverse=True)
        if len(unique) < len(gidx):
            return self._log_expression(planted, unique, types)[:, back]
        out_of = torch.full((self.n_genes,), -1, dtype=torch.long)
        out_of[gidx] = torch.arange(len(gidx))
        s = planted.new_zeros(planted.shape[0], len(gidx))
        for gene_of, cols, w, groups in ((self._group_gene, self._group, self._gw, True),
                                         (self._single_gene, self._single, self._sw, False)):
            pick = torch.nonzero(out_of[gene_of] >= 0).ravel()
            x = planted[:, cols[pick]]  # rows × units (× members for groups)
            on = 1.0 - torch.prod(1.0 - x, dim=-1) if groups else x  # OR over a group's members
            s = s.index_add(1, out_of[gene_of[pick]], on * w[pick])
        if len(self._coop_gene):
            pick = torch.nonzero(out_of[self._coop_gene] >= 0).ravel()
            x = torch.where(self._coop_pad[pick], 1.0, planted[:, self._coop[pick]])
            s = s.index_add(1, out_of[self._coop_gene[pick]], torch.prod(x, dim=-1) * self._cw[pick])
        if self._neg is not None:
            s = s + self._neg[gidx]
        prom = planted[:, self._prom[gidx]]  # rows × G
        left, eps = self._left[gidx], self._eps[gidx]
        activity = (left + (1 - left) * prom) * (eps + (1 - eps) * s / self._z[gidx])
        e = activity * self._scale[types][:, gidx]
        return torch.log1p(e.clamp_min(_LOG_FLOOR))

    # ------------------------------------------------------------------ the known optimum
    def best_closure(self, cells, gene: str, L: int) -> np.ndarray:
        """The closure of at most L peaks with the lowest Rel Δ of `gene` on `cells` — exactly: Rel Δ weighs cell
        c by 1 / exp(ŷ_c) = 1 / (1 + E_c), so it is `SyntheticTruth.best_closure` with those per-cell weights."""
        e0 = self.truth.expression(cells, genes=[gene])[:, 0]
        peaks, _ = self.truth.best_closure(cells, gene, L, weights=1.0 / (1.0 + e0))
        return peaks


def _truth_hash(truth: SyntheticTruth) -> str:
    """SHA-256 (12 hex) of every array and name of the planted truth."""
    import hashlib

    h = hashlib.sha256("\0".join([*truth.genes, "|", *truth.cell_types]).encode())
    for name in ("promoter", "promoter_left", "group", "group_weight", "single", "single_weight", "floor", "trans",
                 "magnitude"):
        h.update(np.ascontiguousarray(getattr(truth, name)).tobytes())
    if truth.coop.size:  # only worlds with AND units have them: the redundant world's key stays as it was
        h.update(np.ascontiguousarray(truth.coop).tobytes())
        h.update(np.ascontiguousarray(truth.coop_weight).tobytes())
    return h.hexdigest()[:12]
