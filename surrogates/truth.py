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

Its gradients are written out (`_ClosedForm`): a unit's partial derivative with respect to a member is a product
over the member's partners, so `local_dense` (the `ClosedForm` fast path, surrogates/protocol.py) evaluates and
differentiates a few genes from the few dozen peaks they read, and `predict` of one gene gathers only its peaks.
`dense` keeps plain autograd over the same formula as the independent check (tests/test_closed_form.py: values and
gradients equal to 1e-9 in every world).

Why a tier on it: redundancy here is real (closing one member of a group changes nothing while another is open),
and the best closure of at most L peaks is known exactly (`SyntheticTruth.best_closure`, a knapsack), so every
explainer gets a "% of optimum" on the model it explains (bench/scoring/evaluate.py).
Cell types are required (`cell_types=`): τ_g(t) is not in the ATAC.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from datasets.synthetic import SyntheticTruth

# 1: the multilinear extension of the simulator's E(x) in float64, log1p guarded at −1 + 1e−12
TRUTH_MODEL_VERSION = 1
_LOG_FLOOR = -1.0 + 1e-12


@dataclass
class _Units:
    """Some genes' units as column indices of a planted matrix (rows × columns, the last column an always-0 pad):
    OR groups (units × 4 members), single elements, AND units (units × 3, a padded slot reads 1) and each gene's
    promoter, with the output position of each unit's gene and the genes' constants."""

    n_out: int
    prom: torch.Tensor  # (G,) column of each gene's promoter
    group_out: torch.Tensor  # (U,) output position of each OR group
    group: torch.Tensor  # (U, 4) member columns
    gw: torch.Tensor
    single_out: torch.Tensor
    single: torch.Tensor  # (S,) columns
    sw: torch.Tensor
    coop_out: torch.Tensor
    coop: torch.Tensor  # (A, 3) member columns
    coop_pad: torch.Tensor  # (A, 3) True where a slot is padding (reads 1)
    cw: torch.Tensor
    const: torch.Tensor  # (G,) the silencers' constant Σ|w| (0 without silencers)
    z: torch.Tensor  # (G,) Z_g
    left: torch.Tensor  # (G,) ρ_g
    eps: torch.Tensor  # (G,) ε_g

    def remapped(self, col: torch.Tensor) -> _Units:
        """The same units reading column col[c] instead of c (col: old column → new, its last entry the new pad)."""
        return replace(self, prom=col[self.prom], group=col[self.group], single=col[self.single], coop=col[self.coop])


def _exclusive_products(v: torch.Tensor) -> torch.Tensor:
    """Π_{k≠j} v_k along the last axis, for every j, without division (v may contain zeros)."""
    ones = torch.ones_like(v[..., :1])
    left = torch.cumprod(torch.cat([ones, v[..., :-1]], -1), -1)
    right = torch.cumprod(torch.cat([ones, v.flip(-1)[..., :-1]], -1), -1).flip(-1)
    return left * right


class _ClosedForm(torch.autograd.Function):
    """ŷ = log1p(E) of planted rows, with the partial derivatives written out instead of taped by autograd.

    With A = ε + (1 − ε) S / Z and E = scale · P · A:
        ∂ŷ/∂E = 1 / (1 + E) (0 where E sits on the log1p guard),
        ∂E/∂x_promoter = scale · (1 − ρ) · A,      ∂E/∂S = scale · P · (1 − ε) / Z,
        ∂S/∂x_j = w_u · Π_{k∈u, k≠j} (1 − x_k) for an OR unit u, w_u · Π_{k∈u, k≠j} x_k for an AND unit, w_e for a
        single element (silencers: w_e < 0).
    A unit's partial derivative is a product over its partners, so the backward pass costs what the forward does."""

    @staticmethod
    def forward(ctx, planted, u: _Units, scale):
        on_or = 1.0 - planted[:, u.group]  # rows × groups × members: closed-ness
        s = planted.new_zeros(planted.shape[0], u.n_out)
        s = s.index_add(1, u.group_out, (1.0 - torch.prod(on_or, -1)) * u.gw)
        single = planted[:, u.single]
        s = s.index_add(1, u.single_out, single * u.sw)
        coop = torch.where(u.coop_pad, 1.0, planted[:, u.coop])
        s = s.index_add(1, u.coop_out, torch.prod(coop, -1) * u.cw) + u.const
        prom = planted[:, u.prom]
        p = u.left + (1 - u.left) * prom
        a = u.eps + (1 - u.eps) * s / u.z
        e = p * a * scale
        ctx.save_for_backward(planted, on_or, coop, p, a, e, scale)
        ctx.units = u
        return torch.log1p(e.clamp_min(_LOG_FLOOR))

    @staticmethod
    def backward(ctx, gy):
        planted, on_or, coop, p, a, e, scale = ctx.saved_tensors
        u = ctx.units
        g_e = torch.where(e >= _LOG_FLOOR, gy / (1.0 + e.clamp_min(_LOG_FLOOR)), 0.0)
        g_s = g_e * scale * p * (1 - u.eps) / u.z
        g_prom = g_e * scale * (1 - u.left) * a
        grad = torch.zeros_like(planted)
        grad = grad.index_add(1, u.prom, g_prom)
        grad = grad.index_add(1, u.single, g_s[:, u.single_out] * u.sw)
        rows = planted.shape[0]
        # OR: ∂/∂x_j [1 − Π(1 − x_k)] = Π_{k≠j}(1 − x_k);  AND: ∂/∂x_j Π x_k = Π_{k≠j} x_k (padded slots read 1)
        d_or = (g_s[:, u.group_out] * u.gw).unsqueeze(-1) * _exclusive_products(on_or)
        grad = grad.index_add(1, u.group.reshape(-1), d_or.reshape(rows, -1))
        d_and = (g_s[:, u.coop_out] * u.cw).unsqueeze(-1) * _exclusive_products(coop)
        d_and = torch.where(u.coop_pad, 0.0, d_and)
        grad = grad.index_add(1, u.coop.reshape(-1), d_and.reshape(rows, -1))
        return grad, None, None


class TruthModel:
    """The simulator's exact E_gc(x) as an `ExplainedModel` (surrogates/protocol.py): ŷ = log1p(E), float64.

    Fast paths: `InputSupport` (the planted peaks) and `ClosedForm` (`reads`, `readers`, `local_dense`: a gene set's
    outputs from the peaks they read, with the closed-form gradients of `_ClosedForm`). `dense` stays plain autograd
    over the same formula: the generic path the fast one is checked against (tests/test_truth_model.py)."""

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
        col_of = np.full(self.n_peaks, pad, dtype=np.int64)
        col_of[self._cols] = np.arange(pad)
        self._col_of = col_of

        def local(idx):
            return torch.as_tensor(np.where(idx >= 0, col_of[np.maximum(idx, 0)], pad))

        # only the groups, single elements and AND units that exist (the arrays pad every gene to 10 groups × 4)
        g_of_group, k_of_group = np.nonzero((t.group >= 0).any(-1))
        g_of_single, e_of_single = np.nonzero(t.single >= 0)
        g_of_coop, c_of_coop = np.nonzero((t.coop >= 0).any(-1))
        f64 = {"dtype": torch.float64}
        z, silenced = t.normalisers()
        self._units = _Units(
            n_out=self.n_genes, prom=local(t.promoter),
            group_out=torch.as_tensor(g_of_group), group=local(t.group[g_of_group, k_of_group]),
            gw=torch.as_tensor(t.group_weight[g_of_group, k_of_group], **f64),
            single_out=torch.as_tensor(g_of_single), single=local(t.single[g_of_single, e_of_single]),
            sw=torch.as_tensor(t.single_weight[g_of_single, e_of_single], **f64),
            coop_out=torch.as_tensor(g_of_coop), coop=local(t.coop[g_of_coop, c_of_coop]),
            coop_pad=torch.as_tensor(t.coop[g_of_coop, c_of_coop] < 0),
            cw=torch.as_tensor(t.coop_weight[g_of_coop, c_of_coop], **f64),
            const=torch.as_tensor(silenced, **f64), z=torch.as_tensor(z, **f64).clamp_min(1e-12),
            left=torch.as_tensor(t.promoter_left, **f64), eps=torch.as_tensor(t.floor, **f64))
        self._scale = torch.as_tensor(t.trans * t.magnitude, **f64)
        self._types = pd.Index(t.cell_types)
        self._type_code = {name: i for i, name in enumerate(t.cell_types)}  # one lookup without pandas overhead
        # which planted columns each gene reads (genes × planted columns + pad), for `reads` and `readers`
        u = self._units
        gene_col = [(u.group_out.repeat_interleave(u.group.shape[1]), u.group.reshape(-1)),
                    (u.single_out, u.single), (u.coop_out.repeat_interleave(u.coop.shape[1]), u.coop.reshape(-1)),
                    (torch.arange(self.n_genes), u.prom)]
        g = torch.cat([a for a, _ in gene_col]).numpy()
        c = torch.cat([b for _, b in gene_col]).numpy()
        keep = c < pad
        self._reads = sp.csr_matrix((np.ones(keep.sum(), dtype=bool), (g[keep], c[keep])),
                                    shape=(self.n_genes, pad))
        self._reads.sum_duplicates()
        self._read_by = self._reads.T.tocsr()
        self._local_cache: dict = {}

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
        names = names.astype(str)
        if len(names) and (names == names[0]).all():  # one cell type (an explainer's job): one lookup, not per row
            codes = np.full(len(names), self._type_code.get(names[0], -1))
        else:
            codes = self._types.get_indexer(names)
        if (codes < 0).any():
            raise ValueError(f"unknown cell type(s) {sorted(set(names[codes < 0]))}; the simulator has "
                             f"{list(self._types)}")
        return torch.as_tensor(codes, dtype=torch.long)

    def dense(self, x: torch.Tensor, genes=None, cell_types=None) -> torch.Tensor:
        """log1p(E) of the multilinear extension at real-valued x (cells × peaks), float64, differentiable by
        autograd over plain tensor operations (the generic path)."""
        gidx = self._gidx(genes)
        types = self.type_codes(cell_types, x.shape[0])
        planted = x[:, torch.as_tensor(self._cols)].double()
        planted = torch.cat([planted, planted.new_zeros(x.shape[0], 1)], dim=1)
        return self._log_expression(planted, gidx, types)

    @torch.no_grad()
    def predict(self, atac, closed=None, genes=None, cell_types=None, chunk: int = 4096) -> torch.Tensor:
        """log1p(E) of binary CSR rows with `closed` peaks set to 0 (cells × genes or the chosen `genes`). Only the
        columns the chosen genes read are gathered (one gene: its few dozen planted peaks, not all of them)."""
        gidx = self._gidx(genes)
        types = self.type_codes(cell_types, atac.shape[0])
        atac = sp.csr_matrix(atac)
        unique, back = torch.unique(gidx, return_inverse=True)
        if genes is None:
            col, pad, units = self._col_of, len(self._cols), self._select(unique)
        else:
            col, pad, units = self._genes_local(tuple(unique.tolist()))
        if closed is not None and len(closed):
            col = col.copy()
            col[np.asarray(closed, dtype=np.int64)] = pad
        out = []
        for s in range(0, atac.shape[0], chunk):
            part = atac if atac.shape[0] <= chunk else atac[s:s + chunk]
            local = col[part.indices]
            entry = np.flatnonzero(local < pad)  # open entries of the peaks read (a few per cent)
            row = np.searchsorted(part.indptr, entry, side="right") - 1
            planted = np.zeros((part.shape[0], pad + 1))
            planted[row, local[entry]] = 1.0  # binary rows: an open entry opens its column
            scale = self._scale[:, unique][types[s:s + chunk]]
            out.append(_ClosedForm.apply(torch.as_tensor(planted), units, scale)[:, back])
        return torch.cat(out) if out else torch.zeros(0, len(gidx), dtype=torch.float64)

    def input_support(self) -> np.ndarray:
        """The peaks any output reads: every gene's planted peaks (background regulates nothing)."""
        return self._cols

    # ------------------------------------------------------------------ the closed form (fast path)
    def reads(self, genes) -> np.ndarray:
        """The peaks (sorted) that the outputs of these gene indices read: their planted peaks."""
        genes = np.asarray(genes, dtype=np.int64)
        return self._cols[np.unique(self._reads[genes].indices)]

    def readers(self, peaks) -> np.ndarray:
        """The gene indices (sorted) whose outputs read at least one of these peaks."""
        local = self._col_of[np.asarray(peaks, dtype=np.int64)]
        local = local[local < len(self._cols)]
        return np.unique(self._read_by[local].indices).astype(np.int64)

    def local_dense(self, x: torch.Tensor, peaks, genes, cell_types=None) -> torch.Tensor:
        """log1p(E) of the gene indices `genes` (distinct; rows × len(genes), float64) where x (rows × len(peaks))
        holds the values of `peaks` and every other peak is closed; differentiable, by the closed-form partial
        derivatives of `_ClosedForm`. Pass `reads(genes)` as `peaks` for the genes' own values."""
        gidx = torch.as_tensor(np.asarray(genes, dtype=np.int64))
        types = self.type_codes(cell_types, x.shape[0])
        peaks = np.asarray(peaks, dtype=np.int64)
        col, pad, units = self._local(peaks, gidx)
        where = col[peaks]
        keep = np.flatnonzero(where < pad)  # peaks the genes read (the others are background to them)
        x = x.double()
        planted = x.new_zeros(x.shape[0], pad + 1).index_copy(1, torch.as_tensor(where[keep]),
                                                               x[:, torch.as_tensor(keep)])
        return _ClosedForm.apply(planted, units, self._scale[:, gidx][types])

    # ------------------------------------------------------------------ the function
    def _gidx(self, genes) -> torch.Tensor:
        if genes is None:
            return torch.arange(self.n_genes)
        return torch.as_tensor([self.gene_index(g) for g in genes], dtype=torch.long)

    def _select(self, gidx: torch.Tensor) -> _Units:
        """The units of the genes `gidx` (distinct, in output order) over the planted columns."""
        u = self._units
        out_of = torch.full((self.n_genes,), -1, dtype=torch.long)
        out_of[gidx] = torch.arange(len(gidx))
        g = torch.nonzero(out_of[u.group_out] >= 0).ravel()
        e = torch.nonzero(out_of[u.single_out] >= 0).ravel()
        a = torch.nonzero(out_of[u.coop_out] >= 0).ravel()
        return _Units(n_out=len(gidx), prom=u.prom[gidx], group_out=out_of[u.group_out[g]], group=u.group[g],
                      gw=u.gw[g], single_out=out_of[u.single_out[e]], single=u.single[e], sw=u.sw[e],
                      coop_out=out_of[u.coop_out[a]], coop=u.coop[a], coop_pad=u.coop_pad[a], cw=u.cw[a],
                      const=u.const[gidx], z=u.z[gidx], left=u.left[gidx], eps=u.eps[gidx])

    def _genes_local(self, genes: tuple) -> tuple[np.ndarray, int, _Units]:
        """`_local` of these genes' own peaks, kept for the last few gene sets (SAGE, LIME and CXPlain predict one
        gene thousands of times in small batches: building its narrow columns each time was half a call)."""
        hit = self._local_cache.get(genes)
        if hit is None:
            if len(self._local_cache) >= 64:
                self._local_cache.pop(next(iter(self._local_cache)))
            gidx = torch.as_tensor(genes, dtype=torch.long)
            hit = self._local_cache[genes] = self._local(self.reads(gidx.numpy()), gidx)
        return hit

    def _local(self, peaks: np.ndarray, gidx: torch.Tensor) -> tuple[np.ndarray, int, _Units]:
        """(peak → column of a narrow planted matrix that holds only `peaks`' planted columns, every other peak
        mapped to its pad column; that pad's index; the units of `gidx` remapped onto the narrow matrix)."""
        planted = np.unique(self._col_of[peaks])
        planted = planted[planted < len(self._cols)]
        pad = len(planted)
        narrow = np.full(len(self._cols) + 1, pad, dtype=np.int64)
        narrow[planted] = np.arange(pad)
        return narrow[self._col_of], pad, self._select(gidx).remapped(torch.as_tensor(narrow))

    def _log_expression(self, planted: torch.Tensor, gidx: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        """planted: rows × (planted columns + an always-0 pad), float64 → log1p(E) rows × len(gidx) (a gene asked
        for twice gets its column twice), in plain autograd-able operations."""
        unique, back = torch.unique(gidx, return_inverse=True)
        if len(unique) < len(gidx):
            return self._log_expression(planted, unique, types)[:, back]
        u = self._select(gidx)
        s = planted.new_zeros(planted.shape[0], len(gidx))
        s = s.index_add(1, u.group_out, (1.0 - torch.prod(1.0 - planted[:, u.group], dim=-1)) * u.gw)
        s = s.index_add(1, u.single_out, planted[:, u.single] * u.sw)
        x = torch.where(u.coop_pad, 1.0, planted[:, u.coop])
        s = s.index_add(1, u.coop_out, torch.prod(x, dim=-1) * u.cw) + u.const
        prom = planted[:, u.prom]
        activity = (u.left + (1 - u.left) * prom) * (u.eps + (1 - u.eps) * s / u.z)
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
