"""The cross-modal ATAC→RNA surrogate of GRIDS (Liu et al., Appendix A), sparse by construction.

Architecture (paper): a categorical embedding per peak (one vector for "closed", one for "open"), summed within
each chromosome, then an MLP encoder to a 20-d ATAC latent; an RNA autoencoder with its own 20-d latent;
cross-maps f_AR (ATAC→RNA latent) and f_RA (an MLP, or the reference's gated per-cell-type affine maps);
cell-type-conditional discriminators on the latents (one network, one output per type; adversarial weight
γ = 0.3) and cycle losses; reconstruction by a balanced focal BCE (ATAC) and MSE (RNA).
F̂(x) = Dec_r(f_AR(Enc_a(W(x)))) ≥ 0.

Sparsity: for binary x the chromosome sums are ``s_k(x) = Σ_{j∈k} W_closed[j] + Σ_{j∈k, x_j=1} Δ[j]`` with
``Δ = W_open − W_closed``. The first term is a per-chromosome constant; the second is one
``F.embedding_bag(mode="sum")`` over the cell's open peaks with one bag per (cell, chromosome). A forward/backward
therefore costs O(open peaks × embedding) — never a dense [cells × peaks × embedding] tensor. Closing peaks sets
their `per_sample_weights` to 0, and the gradient w.r.t. those weights is the first-order effect of closing each
open entry (eq. 4 of the paper), so GRIDS gets all gains from one backward pass.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from datasets.data import gene_position

# 3: training styles (paired / reference), gated affine f_AR, column-sampled ATAC reconstruction; 4: training on a
# fixed number of torch threads with deterministic algorithms (reproducible weights)
MODEL_VERSION = 4
# "locus": the paired surrogate plus a saturating cis layer per gene (surrogates/locus.py)
# "screen": the paired surrogate plus a cis layer of OR/AND units fitted on a perturbation screen (surrogates/screen.py)
STYLES = ("paired", "reference", "locus", "screen")
# SurrogateConfig fields added at MODEL_VERSION 4 with a default that trains exactly as before they existed
_ADDED_FIELDS = {"emb_lr": 0.0, "emb_open_init": 0.1, "sparse_decoder": False}
# the locus style's cis-layer fields: in the key of a locus checkpoint only (they do not change the other styles)
_CIS_FIELDS = ("cis_units", "cis_window", "cis_lr", "cis_monotone")
# the screen style's fields (it reads cis_window too): in the key of a screen checkpoint only
_SCREEN_FIELDS = ("screen_or_units", "screen_and_units", "screen_sparsity", "screen_lr")


@dataclass(frozen=True)
class SurrogateConfig:
    """Hyper-parameters. Defaults follow the paper (embedding 32, latent 20, γ = 0.3, batch 128, Adam).

    `style` picks how the cross-map F̂ = Dec_r ∘ f_AR ∘ Enc_a is trained (surrogates/train.py has the details):
      * "paired": every loss at once, including the paired cross-prediction MSE(F̂(x), y), with an MLP f_AR
        (it sees each cell's own RNA; at the simulator's noise it still learns within-type effects only weakly).
      * "reference": the released reference code (jhliu17/nnpert): ATAC autoencoder, then RNA autoencoder, then
        both frozen while a gated per-cell-type affine f_AR/f_RA learns from *unpaired* mini-batches with cycle and
        cell-type-conditional adversarial losses only — aligned at cell-type level, no paired loss.
    """

    emb_dim: int = 32
    hidden: int = 256
    latent: int = 20
    gamma: float = 0.3  # adversarial loss weight
    cycle_weight: float = 1.0
    atac_weight: float = 1.0  # weight of the ATAC reconstruction
    focal_gamma: float = 2.0  # focal BCE exponent of the ATAC reconstruction (the reference uses a focal loss)
    recon_peaks: int = 4096  # peaks (columns) drawn per batch for the ATAC reconstruction; see train.py
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    max_epochs: int = 200  # paired style
    patience: int = 10  # paired style: early stopping on validation cross-prediction MSE
    min_epochs: int = 30  # training plateaus early before cell-type structure is learned; never stop before
    max_seconds: float = 0.0  # wall-time budget for training; 0 = no budget
    style: str = "paired"
    # reference style: mini-batch steps of its three phases (ATAC autoencoder, RNA autoencoder, cross-maps). The
    # reference runs 36,000 / 9,000 / 36,000; profiles scale them to their training budget (bench/config.py).
    reference_steps: tuple[int, int, int] = (36000, 9000, 36000)
    cross_lr: float = 5e-4
    disc_lr: float = 1e-4
    # The reference updates its discriminators every 5 steps over 36k steps. With the ~10 % of those steps the
    # profiles afford, that discriminator lost the game (quick scale, seed 1, 6,000 steps: f_AR(z_a) landed in the
    # right cell type for 68 % of cells, marker R² 0.30, validation MSE rising); updated every step: 100 %, R²
    # 0.95 after 4,000 steps.
    disc_every: int = 1
    affine_layers: int = 3
    seed: int = 0
    # torch threads for training and for every job on this surrogate. Part of the checkpoint key: float sums are
    # split differently across threads, so only the same count gives the same weights (measured at quick scale:
    # 1 and 2 threads train bit-identical weights, 4 differ by up to 8e-6 after one epoch). 2 = the CI machine; on
    # more cores, scale out with --scheduler local (one worker per `threads` cores). torch's thread count is
    # process-wide, so a dask worker must run one task at a time (threads_per_worker=1, as `local` does).
    threads: int = 2
    # torch's fused Adam kernel (one pass over each parameter) instead of its default one (per-parameter tensor ops
    # on CPU, multi-tensor "foreach" on CUDA): the same update rule, rounded differently, so other weights at the
    # last bits. At paper scale (41M parameters, most in the 127,219-peak ATAC decoder and embeddings) it takes a
    # training epoch from 19.3 s to 12.9 s on 2 threads. Off by default so the smaller profiles keep their committed,
    # bit-reproducible weights; the paper profile turns it on.
    fused_adam: bool = False
    # Peak-embedding training (paired style). `emb_lr`: Adam's learning rate for the two peak-embedding tables
    # (0 = `lr`); `emb_open_init`: the standard deviation the open-state table starts from (the closed one starts at
    # a tenth of 0.1). Why they exist: at paper scale a cell has ~4,800 open peaks, ~92 % of them background, and the
    # chromosome sums start as noise of std ≈ emb_open_init·√(open peaks per chromosome); the few hundred
    # type-specific peaks of the smallest cell types (Endo, Micro) must outgrow it one sparse update at a time.
    # See bench/config.py's paper profile for what they measured.
    emb_lr: float = 0.0
    emb_open_init: float = 0.1
    # Paired style: the ATAC decoder's last layer (hidden × peaks, 32.6M of the paper scale's 41M parameters) reads
    # only the `recon_peaks` rows drawn for a batch; with `sparse_decoder` those rows come through a sparse
    # embedding lookup and torch's SparseAdam updates only them ("lazy" Adam: the other rows' moments wait), instead
    # of a dense Adam pass over every row each step. See bench/config.py's paper profile for what it measured.
    sparse_decoder: bool = False
    # locus style (surrogates/locus.py): soft-OR units per gene over the peaks within ±cis_window bp of its TSS,
    # fitted with Adam at cis_lr on the paired base's residuals. Chosen on seed 1, quick scale: at 2,000 cells 12 /
    # 24 units and lr 0.003 / 0.01 / 0.03 all gave interventional Spearman 0.60–0.63 (base 0.36; a per-peak linear
    # term beside the units: 0.38), but at 5,000 cells the free-signed layer fell to −0.23 (closing a member or
    # group *raised* expression: units of both signs cancelling, fitted to co-accessible modules and wrong outside
    # them); with `cis_monotone` (u ≥ 0: opening a peak never lowers its gene's cis term) 0.55 at 2,000 and 0.48 at
    # 5,000 cells, single members' effects at the truth's size (−0.41 % against −0.39 %).
    cis_units: int = 12
    cis_window: int = 250_000
    cis_lr: float = 0.01
    cis_monotone: bool = True
    # screen style (surrogates/screen.py): OR and AND units per gene over the targeted peaks of its window, the
    # sparsity prior's weight λ and Adam's learning rate. Chosen on seed 1 (checked on seed 2), quick scale, 20,000
    # screened cells, locus library: λ 0.002 / 0.01 / 0.05 / 0.2 gave interventional Spearman 0.81 / 0.85 / 0.68 /
    # 0.63 with the size prior alone; with the in-or-out term 0.89 (seed 2: 0.89), group / member 5.9 (seed 2: 4.8).
    screen_or_units: int = 16
    screen_and_units: int = 4
    screen_sparsity: float = 0.01
    screen_lr: float = 0.01

    def __post_init__(self):
        if self.style not in STYLES:
            raise ValueError(f"surrogate style must be one of {STYLES}, not {self.style!r}")
        if len(self.reference_steps) != 3 or min(self.reference_steps) < 1:
            raise ValueError(f"reference_steps needs three positive step counts, got {self.reference_steps}")
        if self.recon_peaks < 1:
            raise ValueError("recon_peaks must be ≥ 1")

    def to_dict(self) -> dict:
        """The fields as a dict. Fields added after a profile's checkpoints were committed are left out while they
        hold their default (which reproduces the earlier training exactly), so those checkpoints keep their keys."""
        d = asdict(self)
        for name, default in _ADDED_FIELDS.items():
            if d[name] == default:
                del d[name]
        for name in _CIS_FIELDS:
            if self.style != "locus" and not (self.style == "screen" and name == "cis_window"):
                del d[name]
        if self.style != "screen":
            for name in _SCREEN_FIELDS:
                del d[name]
        return d


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


@functools.cache
def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks of up to 1 GiB for reuse instead of unmapping them (process-wide,
    once; False where there is no glibc, e.g. macOS, which is left as it is).

    Why: by default a block over the (dynamic, ≤ 32 MiB) mmap threshold is unmapped when freed, so every training
    step's fresh 130 MB gradient of the ATAC decoder (127,219 × 256) and every temporary of the Adam update
    page-faults in again. Measured at paper scale on 2 threads: one training epoch 35.0 s → 19.3 s with
    bit-identical weights; a 130 MB `torch.zeros` 58 → 8 ms. Freed memory stays in the process (RSS keeps its high
    water mark); `bench.running.memory.release_freed_memory` still hands it back when a measurement needs that."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block on exactly `n` torch intra-op threads with deterministic algorithms (what makes a seeded run
    repeat bit for bit on a machine of the same kind); the caller's settings are restored afterwards."""
    # cuBLAS is deterministic only with a fixed workspace; must be set before its first use (no effect on CPU)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    keep_freed_memory()
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(int(n))
    # warn_only: an op without a deterministic CUDA kernel warns instead of failing (CUDA scatter-adds are not
    # bit-deterministic, so GPU runs repeat only within a tolerance)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


class GatedAffine(nn.Module):
    """The reference code's cross-map: a softmax gate over one chain of affine maps per cell type.

    gate(z) = softmax(MLP(z)) over K = number of cell types; layer l applies the gate-weighted affine map
    A_l(z) = (Σ_k g_k W_lk) z + Σ_k g_k b_lk, with PReLU between layers. Initialised near the identity (the
    reference draws N(0, 1) matrices; near-identity trains stably with frozen autoencoders)."""

    def __init__(self, dim: int, n_types: int, layers: int = 3, gen: torch.Generator | None = None):
        super().__init__()
        self.dim, self.n_types = dim, n_types
        eye = torch.eye(dim).expand(n_types, dim, dim)
        self.weight = nn.ParameterList([nn.Parameter(eye + 0.01 * torch.randn(n_types, dim, dim, generator=gen))
                                        for _ in range(layers)])
        self.bias = nn.ParameterList([nn.Parameter(torch.zeros(n_types, dim)) for _ in range(layers)])
        self.gate = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, n_types))
        self.act = nn.ModuleList([nn.PReLU() for _ in range(layers - 1)])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        g = torch.softmax(self.gate(z), dim=-1)  # (..., K)
        out = z
        for layer, (w, b) in enumerate(zip(self.weight, self.bias)):
            out = torch.einsum("...k,kij,...j->...i", g, w, out) + g @ b
            if layer < len(self.act):
                out = self.act[layer](out)
        return out


@dataclass
class SparseAtac:
    """A batch of binary ATAC rows in embedding-bag form: open peak `idx`, bag `offsets` (cell × chromosome)."""

    idx: torch.Tensor  # (nnz,) long, peak index of each open entry
    offsets: torch.Tensor  # (n_cells * n_chrom,) long
    row: torch.Tensor  # (nnz,) long, the cell of each open entry
    n_cells: int


class StepBatch:
    """One step's cells (the `BagBatch` of surrogates/protocol.py), grouped by peak: every open entry's (cell,
    chromosome) bag, peak by peak and within a peak by cell (`peak_sums`), and its cell (`columns`). The same cells
    by cell, `atac` (exactly `Surrogate.sparse_batch` of these cells, what `embed` reads), is built only when read:
    a GRIDS step never reads it (it starts from each cell's all-open first layer, methods/grids.py)."""

    def __init__(self, owner: CellBatches, cells: np.ndarray, bags: torch.Tensor, offsets: torch.Tensor):
        self._owner, self.cells, self.n_cells = owner, cells, len(cells)
        # each open entry's bag, row · n_chrom + chromosome, peak by peak and within a peak by row; where each
        # peak's entries start (n_peaks + 1: the last is their count)
        self.peak_bags, self.peak_offsets = bags, offsets

    @functools.cached_property
    def atac(self) -> SparseAtac:
        return self._owner.sparse(self.cells)

    def peak_sums(self, d_s: torch.Tensor, peaks: slice | None = None) -> torch.Tensor:
        """Σ_{e: idx(e)=j} ∂ℒ/∂s_b(e) for every peak j (peaks × emb), or for the range `peaks` (a slice with step 1:
        a caller that reduces the sums at once can keep each range in cache), from ∂ℒ/∂s (cells ×
        chromosomes·emb): one embedding bag over the small gradient table, bagged by peak."""
        table = d_s.reshape(self.n_cells * self._owner.n_chrom, -1)
        if peaks is None:
            return F.embedding_bag(self.peak_bags, table, self.peak_offsets[:-1], mode="sum")
        first, stop, _ = peaks.indices(len(self.peak_offsets) - 1)
        offsets = self.peak_offsets[first:stop]
        lo, hi = int(self.peak_offsets[first]), int(self.peak_offsets[stop])
        return F.embedding_bag(self.peak_bags[lo:hi], table, offsets - lo, mode="sum")

    def columns(self, peaks: torch.Tensor) -> torch.Tensor:
        """x[:, peaks] as float 0/1 (cells × len(peaks)), from the peak-ordered entries: each peak's entries are one
        slice of `peak_bags` (bag // n_chrom is the row), gathered for all the peaks at once."""
        off = self.peak_offsets
        peaks = torch.as_tensor(peaks, device=off.device).long().reshape(-1)
        start = off[peaks].long()
        length = off[peaks + 1].long() - start
        col = torch.repeat_interleave(torch.arange(len(peaks), device=off.device), length)
        # position of each selected entry: its slice's start + its rank inside the slice
        before = torch.cumsum(length, 0) - length
        pos = torch.arange(len(col), device=off.device) + torch.repeat_interleave(start - before, length)
        out = torch.zeros(self.n_cells, len(peaks), device=off.device)
        out[torch.div(self.peak_bags[pos], self._owner.n_chrom, rounding_mode="floor"), col] = 1.0
        return out


class CellBatches:
    """The explained cells' ATAC prepared once per job (`Surrogate.bag_batches`), so a step's batch costs O(its open
    entries) with no per-peak or per-cell Python: the rows' open entries become keys peak·2^b + row (b bits for the
    row in the batch), one integer sort puts them in (peak, cell) order, and a count per peak gives each peak's slice;
    peaks are in genome order, so each chromosome is one run of the sorted keys and an entry's bag (cell,
    chromosome) needs no per-entry chromosome lookup."""

    def __init__(self, peak_chrom: torch.Tensor, n_chrom: int, X: sp.spmatrix):
        X = sp.csr_matrix(X)
        if not X.has_sorted_indices:
            X = X.sorted_indices()
        self.X = X
        chrom = peak_chrom.cpu().numpy().astype(np.int64)
        self.peak_chrom = chrom
        self.chrom_start = np.searchsorted(chrom, np.arange(n_chrom + 1))  # first peak of each chromosome
        self.n_chrom, self.n_peaks, self.dev = n_chrom, X.shape[1], peak_chrom.device
        self._shifted = {}

    def sparse(self, cells: np.ndarray) -> SparseAtac:
        """The embedding bags (cell × chromosome) of these rows: exactly `Surrogate.sparse_batch(X[cells])`."""
        sub = self.X[cells]
        n = len(cells)
        row = np.repeat(np.arange(n, dtype=np.int64), np.diff(sub.indptr))
        bag = row * self.n_chrom + self.peak_chrom[sub.indices]
        offsets = np.searchsorted(bag, np.arange(n * self.n_chrom))  # bags are sorted: peaks in genome order
        idx, offsets, row = (torch.as_tensor(a, device=self.dev) for a in (sub.indices.astype(np.int64), offsets, row))
        return SparseAtac(idx=idx, offsets=offsets, row=row, n_cells=n)

    def batch(self, cells: np.ndarray) -> StepBatch:
        cells = np.asarray(cells, dtype=np.int64)
        return StepBatch(self, cells, *self._by_peak(cells))

    def _by_peak(self, cells: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        n, n_chrom, X = len(cells), self.n_chrom, self.X
        bits = max(1, (n - 1).bit_length())
        fits = max(self.n_peaks << bits, n * n_chrom, int(X.indptr[-1])) < 2**31
        kind = np.int32 if fits else np.int64
        shifted = self._shifted.get((bits, kind))
        if shifted is None:  # each entry's peak · 2^bits, once per job (a batch size keeps its bits)
            shifted = self._shifted[bits, kind] = X.indices.astype(kind) << bits
        start, end = X.indptr[cells], X.indptr[cells + 1]
        key = np.concatenate([shifted[a:b] for a, b in zip(start.tolist(), end.tolist())] or [shifted[:0]])
        key |= np.repeat(np.arange(n, dtype=kind), end - start)
        key.sort()  # (peak, row) order: what the by-peak bags and columns read
        # int32 bags and offsets where they fit (embedding_bag takes either; half the index bytes to read); torch's
        # bincount and cumsum: half NumPy's time here
        counts = torch.bincount(torch.from_numpy(key >> bits), minlength=self.n_peaks)
        offsets = torch.zeros(self.n_peaks + 1, dtype=torch.int32 if kind == np.int32 else torch.int64)
        torch.cumsum(counts, 0, dtype=offsets.dtype, out=offsets[1:])
        # in place, key → bag = row · n_chrom + chromosome; chromosome k's peaks are one run of the sorted keys
        key &= (1 << bits) - 1
        key *= n_chrom
        runs = offsets[torch.from_numpy(self.chrom_start)].tolist()
        for k in range(1, n_chrom):
            key[runs[k]:runs[k + 1]] += k
        return torch.from_numpy(key).to(self.dev), offsets.to(self.dev)


def _in_place_relus(x: torch.Tensor, *modules: nn.Module) -> torch.Tensor:
    """x through `modules` in order (a Sequential's layers one by one), each ReLU that follows a Linear applied in
    place: the same values as calling them, without a new rows × hidden array per ReLU (no autograd: call it with
    gradients off). A ReLU before any Linear runs as usual: x may still be the caller's tensor."""
    layers = [m for module in modules for m in (module if isinstance(module, nn.Sequential) else [module])]
    own = False
    for layer in layers:
        if own and type(layer) is nn.ReLU:
            x = x.relu_()
        else:
            x = layer(x)
            own = own or isinstance(layer, nn.Linear)
    return x


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Surrogate(nn.Module):
    """Differentiable ATAC→RNA model. `forward(x_dense)` maps dense 0/1 rows to log-expression (for captum);
    `predict(csr, closed=...)` is the sparse path used everywhere else."""

    def __init__(self, peak_chrom: np.ndarray, gene_names: list[str], cell_types: list[str],
                 config: SurrogateConfig = SurrogateConfig()):
        super().__init__()
        self.config = config
        self.gene_names = list(gene_names)
        self._gene_index = pd.Index(self.gene_names)
        self.cell_types = list(cell_types)
        chrom = torch.as_tensor(np.asarray(peak_chrom), dtype=torch.long)
        if chrom.numel() and torch.any(chrom[1:] < chrom[:-1]):
            raise ValueError("peaks must be sorted by chromosome (contiguous blocks)")
        self.register_buffer("peak_chrom", chrom, persistent=True)
        self.n_peaks = int(chrom.numel())
        self.n_chrom = int(chrom.max()) + 1 if self.n_peaks else 1
        self.n_genes = len(self.gene_names)
        e, h, z = config.emb_dim, config.hidden, config.latent
        gen = torch.Generator().manual_seed(config.seed)
        self.emb_closed = nn.Parameter(torch.randn(self.n_peaks, e, generator=gen) * 0.01)
        self.emb_open = nn.Parameter(torch.randn(self.n_peaks, e, generator=gen) * config.emb_open_init)
        self.first = nn.Linear(self.n_chrom * e, h)  # the layer that is linear in the peak embeddings
        self.enc_a_rest = nn.Sequential(nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, z))
        self.dec_a = _mlp([z, h, self.n_peaks])
        self.enc_r = _mlp([self.n_genes, h, h, z])
        self.dec_r = _mlp([z, h, h, self.n_genes])
        n_types = len(self.cell_types)
        if config.style == "reference":
            self.f_ar = GatedAffine(z, n_types, config.affine_layers, gen)
            self.f_ra = GatedAffine(z, n_types, config.affine_layers, gen)
        else:
            self.f_ar = _mlp([z, h // 2, z])
            self.f_ra = _mlp([z, h // 2, z])
        # cell-type-conditional discriminators D^k, as the reference: one network with one output per cell type;
        # a latent is judged by the output of its own type (one pass for a whole batch instead of a loop over K)
        self.disc_a = _mlp([z, 64, n_types])
        self.disc_r = _mlp([z, 64, n_types])
        self.meta: dict = {}

    # ------------------------------------------------------------------ sparse input
    def sparse_batch(self, X: sp.csr_matrix) -> SparseAtac:
        """Embedding-bag form of CSR rows (peaks must be in genome order, which `MultiomeData` guarantees)."""
        X = sp.csr_matrix(X)
        X.sort_indices()
        dev = self.peak_chrom.device
        idx = torch.as_tensor(X.indices.astype(np.int64), device=dev)
        row = torch.repeat_interleave(torch.arange(X.shape[0], device=dev),
                                      torch.as_tensor(np.diff(X.indptr), device=dev))
        bag = row * self.n_chrom + self.peak_chrom[idx]
        offsets = torch.searchsorted(bag, torch.arange(X.shape[0] * self.n_chrom, device=dev))
        return SparseAtac(idx=idx, offsets=offsets, row=row, n_cells=X.shape[0])

    def bag_batches(self, X: sp.spmatrix) -> CellBatches:
        """The cells X prepared for many steps' batches (`EmbeddingBags` of surrogates/protocol.py): `.batch(cells)`
        is those rows' `StepBatch`, its `atac` exactly `sparse_batch(X[cells])`."""
        return CellBatches(self.peak_chrom, self.n_chrom, X)

    def closed_weights(self, batch: SparseAtac, closed) -> torch.Tensor | None:
        """Per-entry weights: 0 for entries whose peak is in `closed`, else 1 (None if nothing is closed)."""
        if closed is None or len(closed) == 0:
            return None
        mask = torch.zeros(self.n_peaks, dtype=torch.bool, device=batch.idx.device)
        mask[torch.as_tensor(np.asarray(closed, dtype=np.int64), device=mask.device)] = True
        return (~mask[batch.idx]).to(self.first.weight.dtype)

    def chrom_constant(self) -> torch.Tensor:
        """Σ of the closed-state embeddings per chromosome: the input to `first` when every peak is closed."""
        const = torch.zeros(self.n_chrom, self.config.emb_dim, device=self.emb_closed.device,
                            dtype=self.emb_closed.dtype)
        return const.index_add(0, self.peak_chrom, self.emb_closed)

    def embedding_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Δ = W_open − W_closed per peak, the per-chromosome constant): what `embed` sums. A caller that embeds
        many batches on frozen weights computes them once and passes them as `tables` (both cost a pass over all
        peaks, more than one batch's open entries at paper scale)."""
        return self.emb_open - self.emb_closed, self.chrom_constant()

    def embed(self, batch: SparseAtac, weights: torch.Tensor | None = None, tables=None) -> torch.Tensor:
        """Per-chromosome summed embeddings, flattened: (cells, n_chrom * emb_dim)."""
        delta, const = self.embedding_tables() if tables is None else tables
        opened = F.embedding_bag(batch.idx, delta, batch.offsets, mode="sum", per_sample_weights=weights)
        s = opened.view(batch.n_cells, self.n_chrom, -1) + const
        return s.flatten(1)

    def embed_dense(self, x: torch.Tensor) -> torch.Tensor:
        """Same as `embed` for a dense (cells × peaks) 0/1 (or relaxed) input: one matmul per chromosome block,
        so memory is O(cells × peaks), never O(cells × peaks × emb)."""
        delta = self.emb_open - self.emb_closed
        bounds = torch.searchsorted(self.peak_chrom, torch.arange(self.n_chrom + 1, device=x.device))
        parts = [x[:, a:b] @ delta[a:b] for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())]
        s = torch.stack(parts, dim=1) + self.chrom_constant()
        return s.flatten(1)

    # ------------------------------------------------------------------ the network
    def first_hidden(self, batch: SparseAtac, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Pre-activation of the first encoder layer, a(x) = c + Σ_{open j} U_j (cells × hidden)."""
        return self.first(self.embed(batch, weights))

    def peak_hidden(self, peaks: torch.Tensor) -> torch.Tensor:
        """U_j: how much opening peak j adds to the first pre-activation (len(peaks) × hidden)."""
        peaks = torch.as_tensor(peaks, dtype=torch.long, device=self.peak_chrom.device).reshape(-1)
        # only these rows: Δ of all peaks is 127k × 32. index_select: the values of advanced indexing (w[:, chrom,
        # :], emb[peaks]) at a fifth of its time on CPU
        delta = torch.index_select(self.emb_open, 0, peaks) - torch.index_select(self.emb_closed, 0, peaks)
        w = self.first.weight.view(self.config.hidden, self.n_chrom, self.config.emb_dim)
        chrom = torch.index_select(self.peak_chrom, 0, peaks)
        return torch.einsum("hne,ne->nh", torch.index_select(w, 1, chrom), delta)

    def head_from_hidden(self, a: torch.Tensor) -> torch.Tensor:
        """log-expression from the first pre-activation (any leading batch shape)."""
        return self.rna_from_atac_latent(self.enc_a_rest(a))

    def head(self, a: torch.Tensor, cols=None) -> torch.Tensor:
        """log-expression of the output columns `cols` (all when None) from the first pre-activation a (any leading
        shape): `head_from_hidden` for every gene; for a few, only those rows of the RNA decoder's last layer (the
        full 3,000-gene output is ~20× the cost when scoring many perturbations of one gene). `cols` of length 1
        computes one dot product per row; the `AdditiveHidden` fast path of surrogates/protocol.py."""
        if cols is None:
            return self.head_from_hidden(a)
        cols = torch.as_tensor(cols, dtype=torch.long, device=self.device).reshape(-1)
        dec = self.dec_r
        if not (isinstance(dec, nn.Sequential) and isinstance(dec[-1], nn.Linear)):  # pragma: no cover
            return self.head_from_hidden(a)[..., cols]
        if torch.is_grad_enabled():
            hidden = dec[:-1](self.f_ar(self.enc_a_rest(a)))
        else:
            hidden = _in_place_relus(a, self.enc_a_rest, self.f_ar, *list(dec)[:-1])
        if cols.numel() == 1:
            return (hidden @ dec[-1].weight[cols[0]] + dec[-1].bias[cols[0]]).clamp_min(0.0).unsqueeze(-1)
        y = hidden @ torch.index_select(dec[-1].weight, 0, cols).T
        if torch.is_grad_enabled():
            return (y + torch.index_select(dec[-1].bias, 0, cols)).clamp_min(0.0)
        # the same operations in the product's memory (GRIDS scores ~1,400 rows × 257 genes per step this way)
        return y.add_(torch.index_select(dec[-1].bias, 0, cols)).clamp_min_(0.0)

    def rna_from_atac_latent(self, z_a: torch.Tensor) -> torch.Tensor:
        return self.dec_r(self.f_ar(z_a)).clamp_min(0.0)

    def encode_atac(self, batch: SparseAtac, weights=None) -> torch.Tensor:
        return self.enc_a_rest(self.first_hidden(batch, weights))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dense path: (cells × peaks) → log-expression (cells × genes)."""
        return self.head_from_hidden(self.first(self.embed_dense(x)))

    def dense(self, x: torch.Tensor, genes=None, cell_types=None) -> torch.Tensor:
        """The protocol's differentiable dense path: (cells × peaks), real-valued → log-expression of `genes`
        (all when None; the decoder rows of those genes only). The surrogate reads no cell types."""
        a = self.first(self.embed_dense(x))
        return self.head_from_hidden(a) if genes is None else self.head(a, [self.gene_index(g) for g in genes])

    @torch.no_grad()
    def cell_state(self, X, cell_types=None, chunk: int = 256) -> torch.Tensor:
        """Each cell's ATAC latent z = Enc_a(x) (cells × latent): the representation FIMAP's perturbation network
        reads (surrogates/protocol.py, `cell_state`)."""
        out = [self.encode_atac(self.sparse_batch(X[s:s + chunk])) for s in range(0, X.shape[0], chunk)]
        return torch.cat(out) if out else torch.zeros(0, self.config.latent, device=self.device)

    # ------------------------------------------------------------------ convenience
    @property
    def device(self) -> torch.device:
        return self.peak_chrom.device

    @property
    def threads(self) -> int:
        """The torch thread count every job on this surrogate runs with (`SurrogateConfig.threads`)."""
        return self.config.threads

    def gene_index(self, gene: str) -> int:
        return gene_position(self._gene_index, gene, "the surrogate's outputs")

    @contextlib.contextmanager
    def evaluating(self):
        """`with surrogate.evaluating(): ...` — eval mode inside, the previous mode restored after, even when the
        block raises (an explainer that fails must not leave a surrogate in training mode for the next job)."""
        was_training = self.training
        self.eval()
        try:
            yield self
        finally:
            self.train(was_training)

    @torch.no_grad()
    def predict(self, X: sp.csr_matrix, closed=None, genes=None, cell_types=None,
                batch_size: int = 1024) -> torch.Tensor:
        """log-expression ŷ (cells × genes, or the selected `genes`) with the peaks in `closed` set to 0. The
        surrogate reads no cell types (`cell_types` is the protocol's, surrogates/protocol.py)."""
        cols = None if genes is None else [self.gene_index(g) for g in genes]
        out = []
        with self.evaluating():
            for start in range(0, X.shape[0], batch_size):
                batch = self.sparse_batch(X[start:start + batch_size])
                y = self.head_from_hidden(self.first_hidden(batch, self.closed_weights(batch, closed)))
                out.append(y if cols is None else y[:, cols])
        if not out:
            return torch.empty(0, self.n_genes if cols is None else len(cols), device=self.device)
        return torch.cat(out)
