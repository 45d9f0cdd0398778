"""A surrogate that can saturate per locus: the paired surrogate plus a cis layer over each gene's window of peaks.

The paired surrogate sums peak embeddings per chromosome before any non-linearity, so a specific enhancer's effect
on a specific gene is (to first order) additive; it learns cell identity well but closing a redundant group looks
like the sum of closing its members (group / Σ members ≈ 1, truth ≈ 12; bench/fidelity/interventional.py). A per-locus
model told where the planted peaks are finds the saturation in the same cells (bench/fidelity/locus_diagnostic.py), so
the data carry it.

`LocusSurrogate` adds, for every gene g, a small saturating network over the peaks in a window of ±`window` bp
around its TSS (peak coordinates only, as any real data set has; nothing from the simulator):

    ŷ_g(x) = base_g(x) + b_g + Σ_h u_gh · (1 − exp(−Σ_{j ∈ W_g} softplus(A_gjh) · x_j)),   u_gh = softplus(ũ_gh) ≥ 0

Each of the H units is a soft OR over the peaks it weighs (one open peak of large weight saturates it) and, at small
weights, a sum: the data decide between redundancy and additivity. u ≥ 0 (monotone: opening a peak never lowers
the cis term; `monotone=False` frees the sign, which on development data fitted co-accessible modules with units
of both signs and predicted that closing an enhancer *raises* expression). The base is the paired surrogate, trained as
always (its cached checkpoint); the cis layer is then fitted to the base's residuals on the training cells, early
stopped on the validation cells (`fit_cis_layer`). The model speaks the plain protocol (predict / dense) and the
capabilities that are not about speed (`cell_state`, `meta`, `threads`, `cpu`), none of the fast paths (no additive
first layer, no embedding bags: the cis layer is neither), so explainers take their generic path on it.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

from datasets.windows import WINDOW_BP, window_pairs


class NoCisWindowError(ValueError):
    """No gene has a peak within its window (genes without chromosome and TSS, or peaks on other chromosomes)."""


def pairs_digest(pair_gene: np.ndarray, pair_peak: np.ndarray) -> str:
    """A short hash of the (gene, peak) window pairs: a cis layer is only valid for the pairs it was fitted on."""
    import hashlib

    return hashlib.sha256(np.stack([pair_gene, pair_peak]).astype(np.int64).tobytes()).hexdigest()[:16]


def window_sums(x_cols: torch.Tensor, weights: torch.Tensor, pair_gene: torch.Tensor, pair_col: torch.Tensor,
                n_genes: int, genes=None):
    """z[c, g, h] = Σ_{(g, j) window pairs} weights[pair, h] · x_cj for every gene (`genes` None) or the genes asked
    for, without a cells × pairs × units tensor for all genes. Returns (z, the genes' rows as an index, the map from
    the requested order back to them or None)."""
    units = weights.shape[1]
    if genes is None:  # every gene: one sparse (genes·units × window peaks) product
        index = torch.stack([(pair_gene[:, None] * units + torch.arange(units, device=x_cols.device)).reshape(-1),
                             pair_col.repeat_interleave(units)])
        w = torch.sparse_coo_tensor(index, weights.reshape(-1).to(x_cols.dtype), (n_genes * units, x_cols.shape[1]),
                                    check_invariants=False)
        z = torch.sparse.mm(w, x_cols.T).T.reshape(x_cols.shape[0], n_genes, units)
        return z, slice(None), None
    # a few genes: only their pairs, summed into a (cells × those genes × units) block, not one per gene
    wanted, back = torch.unique(genes, return_inverse=True)
    slot = torch.full((n_genes,), -1, dtype=torch.long, device=wanted.device)
    slot[wanted] = torch.arange(len(wanted), device=wanted.device)
    keep = slot[pair_gene] >= 0
    contrib = x_cols[:, pair_col[keep]].unsqueeze(-1) * weights[keep]  # cells × pairs × units
    z = torch.zeros(x_cols.shape[0], len(wanted), units, dtype=x_cols.dtype, device=x_cols.device)
    return z.index_add(1, slot[pair_gene[keep]], contrib), wanted, back


class CisLayer(nn.Module):
    """Σ_h u_gh · (1 − exp(−Σ_{j∈W_g} softplus(A_gjh) x_j)) + b_g for every gene (see the module docstring)."""

    def __init__(self, pair_gene: np.ndarray, pair_peak: np.ndarray, n_genes: int, units: int, seed: int = 0,
                 monotone: bool = True):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.n_genes, self.units = n_genes, units
        cols, local = np.unique(pair_peak, return_inverse=True)
        self.register_buffer("cols", torch.as_tensor(cols, dtype=torch.long))  # peaks in some window
        self.register_buffer("pair_col", torch.as_tensor(local, dtype=torch.long))  # pair → position in cols
        self.register_buffer("pair_gene", torch.as_tensor(pair_gene, dtype=torch.long))
        # softplus(−3) ≈ 0.05: every unit starts nearly linear and small; u = 0 starts the layer at the base
        self.A = nn.Parameter(torch.randn(len(pair_peak), units, generator=gen) * 0.5 - 3.0)
        self.monotone = monotone
        # monotone: u = softplus(ũ) ≥ 0, so opening a peak never lowers the cis term; started at softplus(−6) ≈ 0
        self.u = nn.Parameter(torch.full((n_genes, units), -6.0) if monotone else torch.zeros(n_genes, units))
        self.b = nn.Parameter(torch.zeros(n_genes))

    def forward(self, x_cols: torch.Tensor, genes=None) -> torch.Tensor:
        """x_cols: (cells × len(cols)) accessibility of the window peaks → (cells × genes) cis term."""
        z, wanted, back = window_sums(x_cols, F.softplus(self.A), self.pair_gene, self.pair_col, self.n_genes, genes)
        out = (-torch.expm1(-z) * self.weights()[wanted]).sum(-1) + self.b[wanted]
        return out if back is None else out[:, back]

    def weights(self) -> torch.Tensor:
        """u_gh: each unit's effect on its gene (≥ 0 when monotone)."""
        return F.softplus(self.u) if self.monotone else self.u


class LocusSurrogate(nn.Module):
    """The paired surrogate (`base`) plus a `CisLayer`; the explained-model protocol without fast paths."""

    def __init__(self, base, cis: CisLayer):
        super().__init__()
        self.base, self.cis = base, cis
        self.gene_names, self.cell_types, self.n_peaks = base.gene_names, base.cell_types, base.n_peaks
        self.n_genes = base.n_genes
        self.config = base.config
        self.meta: dict = {}

    @property
    def device(self) -> torch.device:
        return self.base.device

    @property
    def threads(self) -> int:
        """Its jobs run on the base's fixed torch thread count (`FixedThreads`, bench/running/runner.py)."""
        return self.base.threads

    def gene_index(self, gene: str) -> int:
        return self.base.gene_index(gene)

    @contextlib.contextmanager
    def evaluating(self):
        was = self.training
        self.eval()
        try:
            yield self
        finally:
            self.train(was)

    def _cols(self, X: sp.csr_matrix, closed=None) -> torch.Tensor:
        cols = self.cis.cols.cpu().numpy()
        x = np.asarray(X[:, cols].todense(), dtype=np.float32)
        if closed is not None and len(closed):
            x[:, np.isin(cols, np.asarray(closed))] = 0.0
        return torch.as_tensor(x, device=self.device)

    @torch.no_grad()
    def predict(self, X: sp.csr_matrix, closed=None, genes=None, cell_types=None,
                batch_size: int = 256) -> torch.Tensor:
        cols = None if genes is None else torch.as_tensor([self.gene_index(g) for g in genes], device=self.device)
        base = self.base.predict(X, closed=closed, genes=genes)
        out = []
        with self.evaluating():
            for s in range(0, X.shape[0], batch_size):
                out.append(self.cis(self._cols(X[s:s + batch_size], closed), cols))
        cis = torch.cat(out) if out else torch.zeros_like(base)
        return self.combine(base, cis)

    def dense(self, x: torch.Tensor, genes=None, cell_types=None) -> torch.Tensor:
        cols = None if genes is None else torch.as_tensor([self.gene_index(g) for g in genes], device=self.device)
        return self.combine(self.base.dense(x, genes), self.cis(x[:, self.cis.cols], cols))

    @staticmethod
    def combine(base: torch.Tensor, cis: torch.Tensor) -> torch.Tensor:
        """The prediction from the base's log-expression and the cis term: their sum, ≥ 0."""
        return (base + cis).clamp_min(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(x)

    @torch.no_grad()
    def cell_state(self, X, cell_types=None, chunk: int = 256) -> torch.Tensor:
        return self.base.cell_state(X, cell_types, chunk)


def early_stopped(layer: nn.Module, batch_loss, val_loss, n_train: int, lr: float, batch_size: int,
                  max_epochs: int, patience: int, seed: int, desc: str, progress: bool) -> tuple[float, list]:
    """Adam on `layer`'s parameters over seeded shuffles of `n_train` cells (`batch_loss(indices)`), stopped when
    `val_loss()` has not improved for `patience` epochs; the best state is loaded back. Returns (best validation
    loss, the validation loss of every epoch)."""
    from tqdm.auto import tqdm

    opt = torch.optim.Adam(layer.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    best, best_state, waited, history = float("inf"), None, 0, []
    bar = tqdm(range(max_epochs), desc=desc, disable=not progress, leave=False)
    for _ in bar:
        layer.train()
        for idx in torch.randperm(n_train, generator=gen).split(batch_size):
            opt.zero_grad()
            loss = batch_loss(idx)
            loss.backward()
            opt.step()
        with torch.no_grad():
            val = float(val_loss())
        history.append(val)
        bar.set_postfix(val_mse=f"{val:.4f}")
        if val < best - 1e-6:
            best, waited = val, 0
            best_state = {k: v.detach().clone() for k, v in layer.state_dict().items()}
        else:
            waited += 1
            if waited >= patience:
                break
    if best_state is not None:
        layer.load_state_dict(best_state)
    return best, history


def fit_cis_layer(base, data, units: int = 12, window: int = WINDOW_BP, lr: float = 1e-2, batch_size: int = 128,
                  max_epochs: int = 200, patience: int = 10, seed: int = 0, progress: bool = True,
                  monotone: bool = True) -> LocusSurrogate:
    """Fit the cis layer on the base's residuals (training cells), early stopped on validation MSE."""
    t0 = time.perf_counter()
    pair_gene, pair_peak = window_pairs(data.peaks, data.genes, window)
    if not len(pair_peak):
        raise NoCisWindowError(f"the locus style needs gene positions (chromosome and TSS) and peaks within "
                               f"±{window:,} bp of them; this data set has none: use --surrogate paired")
    cis = CisLayer(pair_gene, pair_peak, data.n_genes, units, seed, monotone).to(base.device)
    model = LocusSurrogate(base, cis)
    cols = cis.cols.cpu().numpy()

    def residuals(split):
        cells = data.cells(split=split)
        x = torch.as_tensor(np.asarray(cells.atac[:, cols].todense(), dtype=np.float32), device=base.device)
        r = torch.as_tensor(cells.rna, device=base.device) - base.predict(cells.atac)
        return x, r

    (x_tr, r_tr), (x_va, r_va) = residuals("train"), residuals("val")
    best, history = early_stopped(cis, lambda idx: F.mse_loss(cis(x_tr[idx]), r_tr[idx]),
                                  lambda: F.mse_loss(cis(x_va), r_va), len(x_tr), lr=lr, batch_size=batch_size,
                                  max_epochs=max_epochs, patience=patience, seed=seed, desc="fitting cis layer",
                                  progress=progress)
    model.eval()
    seconds = time.perf_counter() - t0
    # `seconds` is the whole training cost (base + cis layer), so styles compare at their real cost
    model.meta = {**{k: v for k, v in base.meta.items() if k not in ("checkpoint", "reused")},
                  "style": "locus", "base_seconds": base.meta.get("seconds"), "cis_seconds": seconds,
                  "seconds": (base.meta.get("seconds") or 0.0) + seconds, "cis_epochs": len(history),
                  "cis_val_mse": best, "cis_pairs": len(pair_peak),
                  "cis_pairs_digest": pairs_digest(pair_gene, pair_peak)}
    return model


def load_cis_layer(base, data, config, state_dict) -> LocusSurrogate:
    """A fitted cis layer (its state_dict) on `base`; the window pairs are recomputed from the data's coordinates."""
    pair_gene, pair_peak = window_pairs(data.peaks, data.genes, config.cis_window)
    cis = CisLayer(pair_gene, pair_peak, data.n_genes, config.cis_units, config.seed, config.cis_monotone)
    cis.load_state_dict(state_dict)
    model = LocusSurrogate(base, cis.to(base.device))
    model.meta = {"cis_pairs_digest": pairs_digest(pair_gene, pair_peak)}
    return model
