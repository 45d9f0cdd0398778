"""The explained model is a protocol, not a class: everything an explainer, the evaluator or the harness reads of the
model it works on.

An explainer explains *a model*: something that maps a batch of cells' accessibility (and their cell types: the
simulator's trans factor τ_g(t) is not in the ATAC) to log-expression of genes. Everything an explainer, the
evaluator or the harness does with a model goes through the members below; no caller reads anything else of a
model, and none looks for an optional member with `getattr`/`hasattr` of its own.

Required (`ExplainedModel`):

    gene_names, n_peaks, n_genes, device      what the model predicts, over how many peaks, where it computes
    gene_index(gene) -> int                    the output column of a gene (KeyError naming close names)
    predict(atac, closed=None, genes=None, cell_types=None) -> Tensor
        log-expression (cells × genes, or the chosen `genes`) of binary CSR rows with the peaks in `closed` set to
        0; no gradients. `cell_types`: one name per row, or one name for every row.
    dense(x, genes=None, cell_types=None) -> Tensor
        the same function on a dense real-valued (cells × peaks) tensor, differentiable: Integrated Gradients'
        paths and SmoothGrad's noise leave {0, 1}; gradients with respect to accessibility come from autograd on it.
    evaluating() -> context manager               evaluation mode inside (dropout off), the previous mode after.

Three kinds implement it: the trained `Surrogate` (surrogates/model.py; its locus style, surrogates/locus.py, too),
`TruthModel` (surrogates/truth.py, the simulator's exact E(x)) and `TorchModel` below (a user's own torch module on
dense input). Any other object with these members works too (`bench.run(model=...)`).

Optional capabilities, each a Protocol class below, in two kinds.

Fast paths — checked with `fast_path(model, Capability)`. Each explainer that uses one has a generic fallback
written against the required members alone, which gives the same answer (tests/test_protocol.py runs the tiny
golden grid both ways):

* `AdditiveHidden` — the first layer is additive over open peaks, a(x) = c + Σ_{j open} w_j U_j, and the rest of
  the network is a function `head(a)`: a perturbation then costs the layers after the first only (LIME's
  neighbourhoods, CXPlain's Granger targets, FIMAP's relaxed closure, GRIDS's swap scoring and the evaluator's
  closure gradients use it). Its `sparse_batch(X)` has `idx` (the peak of each open entry, CSR order) and `row`
  (the cell of each), which the per-entry `weights` of `first_hidden` follow.
* `EmbeddingBags` — per-chromosome embedding bags, from which GRIDS takes the eq. 4 gains of every peak in one
  backward pass through the gradient of the bag sums. `bag_batches(X)` prepares cells once per job; its
  `batch(cells)` is one step's `BagBatch`: the model's sparse batch of those cells (`atac`, what `embed` reads),
  the gradient of the bag sums gathered by peak (`peak_sums`) and the cells' columns (`columns`). How entries map to
  bags stays inside the model.
* `InputSupport` — `input_support()`: the peaks the model's outputs can depend on at all (the truth model: the
  planted peaks; a surrogate reads every peak, so it has none). Scoring many closures then drops the other entries
  of each row first (`restrict_to_support`), which changes no prediction, and gradients are taken on those peaks'
  columns only (`read_peaks`, `local_output`): every other peak's gradient is 0 by definition.
* `ClosedForm` — outputs that each read a few peaks, computed from those alone: `reads(genes)` (the peaks these
  output columns read), `readers(peaks)` (the output columns that read any of them) and `local_dense(x, peaks,
  genes)` (those columns from the values of `peaks`, every other peak closed; differentiable). The truth model
  offers it with its gradients in closed form: GRIDS then scores a closure on the genes it can move only, and the
  gradient explainers differentiate a gene's few dozen planted peaks instead of every peak.

Other capabilities — not about speed; checked with `capability(model, Capability)` (or the helpers named):

* `CellState` — `cell_state(atac, cell_types)`: a representation of each cell (the surrogate's ATAC latent), which
  FIMAP's perturbation network reads; without it, the cell's predicted log-expression of every gene (the
  `cell_state` helper).
* `KnownOptimum` — `best_closure(cells, gene, L)`: the closure of at most L peaks with the lowest Rel Δ, known
  exactly (the truth model: a knapsack); the evaluator then scores every job's "% of optimum"
  (bench/scoring/evaluate.py).
* `Cached` — `cache_key`: names the model in every job's cache key (bench/running/pipeline.py `model_key`, the
  report's header; `cache_key_of`); without it (or None) its jobs are not cached.
* `Described` — `meta`: a dict describing the model (how it was trained, its checkpoint, a user model's class),
  read by the run's header and the data curve (`meta_of`; {} without it).
* `FixedThreads` — `threads`: the torch thread count every job on the model runs with, so its answers repeat bit
  for bit (bench/running/runner.py `job_threads`); without it jobs keep torch's own count.
* `Movable` — `cpu()`: the model on the CPU, which the harness sends to dask worker processes
  (bench/running/harness.py; a torch module moves in place, so the harness calls it on a copy).

`without_fast_paths(model)` hides the fast paths only and keeps the other capabilities (a fast path changes how
fast an answer comes, the others what is computed or recorded: the truth model seen without its fast paths still
gets "% of optimum"), so a test or a user can run every explainer on its generic path.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import ContextManager, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from datasets.data import gene_position


@runtime_checkable
class ExplainedModel(Protocol):
    """The operations an explainer may use on the model it explains (see the module docstring)."""

    gene_names: list[str]
    n_peaks: int
    n_genes: int

    @property
    def device(self) -> torch.device: ...

    def gene_index(self, gene: str) -> int: ...

    def predict(self, atac, closed=None, genes=None, cell_types=None) -> torch.Tensor: ...

    def dense(self, x: torch.Tensor, genes=None, cell_types=None) -> torch.Tensor: ...

    def evaluating(self) -> ContextManager: ...


@runtime_checkable
class AdditiveHidden(Protocol):
    """Fast path: ŷ = head(a) with a(x) = c + Σ_{open j} w_j U_j over a batch's open entries (weights 1 = open,
    0 = closed, anything between = relaxed), so closing a set subtracts its rows of U and re-runs `head` only."""

    def sparse_batch(self, X): ...

    def first_hidden(self, batch, weights=None) -> torch.Tensor: ...

    def closed_weights(self, batch, closed) -> torch.Tensor | None: ...

    def peak_hidden(self, peaks) -> torch.Tensor: ...

    def head(self, a: torch.Tensor, cols=None) -> torch.Tensor: ...


@runtime_checkable
class BagBatch(Protocol):
    """One GRIDS step's cells, from `EmbeddingBags.bag_batches(X).batch(cells)`."""

    atac: object  # the model's sparse batch of these cells (what `embed` and `first_hidden` read; `atac.idx`)

    def peak_sums(self, d_s: torch.Tensor, peaks: slice | None = None) -> torch.Tensor:
        """For every peak j (or the peaks of the contiguous range `peaks`), Σ over its open entries e in these
        cells of ∂ℒ/∂s at e's bag, from the gradient of `embed`'s output (cells × bags·emb) → (peaks × emb).
        GRIDS passes ranges on one CPU thread, so each range's sums are reduced while they are in cache."""

    def columns(self, peaks: torch.Tensor) -> torch.Tensor:
        """x[:, peaks] of these cells as float 0/1 (cells × len(peaks))."""


@runtime_checkable
class EmbeddingBags(Protocol):
    """Fast path (GRIDS's gains): embedding sums s = const + Σ_open Δ_j per bag, then `first` (linear). The model
    prepares its bags (`bag_batches`), so a caller never needs to know how entries map to bags."""

    def bag_batches(self, X): ...

    def embedding_tables(self): ...

    def embed(self, batch, weights=None, tables=None) -> torch.Tensor: ...

    def first(self, s: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class InputSupport(Protocol):
    """Fast path: the peaks the outputs can depend on at all (`restrict_to_support` drops the others' entries)."""

    def input_support(self) -> np.ndarray: ...


@runtime_checkable
class CellState(Protocol):
    """A representation of each cell (cells × d), which FIMAP's perturbation network reads (`cell_state`)."""

    def cell_state(self, atac, cell_types=None) -> torch.Tensor: ...


@runtime_checkable
class KnownOptimum(Protocol):
    """A model whose best closure is known exactly: the peaks (at most L) whose closure lowers `gene`'s Rel Δ most
    on `cells` (a MultiomeData view). The evaluator adds the optimum and each job's % of it."""

    def best_closure(self, cells, gene: str, L: int) -> np.ndarray: ...


@runtime_checkable
class Cached(Protocol):
    """`cache_key`: what names the model in its jobs' cache keys (None: jobs not cached)."""

    cache_key: str


@runtime_checkable
class Described(Protocol):
    """`meta`: a dict describing the model (training, checkpoint, class), for headers and curves."""

    meta: dict


@runtime_checkable
class FixedThreads(Protocol):
    """`threads`: the torch thread count every job on the model runs with (a fixed count repeats bit for bit)."""

    threads: int


@runtime_checkable
class Movable(Protocol):
    """`cpu()`: the model on the CPU (what the harness sends to dask worker processes)."""

    def cpu(self): ...


@runtime_checkable
class ClosedForm(Protocol):
    """Fast path: each output column reads a few peaks, and a set of columns can be computed from those alone."""

    def reads(self, genes) -> np.ndarray: ...

    def readers(self, peaks) -> np.ndarray: ...

    def local_dense(self, x: torch.Tensor, peaks, genes, cell_types=None) -> torch.Tensor: ...


# what `without_fast_paths` hides, and what it keeps
FAST_PATHS = (AdditiveHidden, EmbeddingBags, InputSupport, ClosedForm)
CAPABILITIES = (CellState, KnownOptimum, Cached, Described, FixedThreads, Movable)


def members(protocol) -> list[str]:
    """The names a Protocol class above requires: its annotated attributes and its methods and properties."""
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {n for n, v in vars(protocol).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))}
    return sorted(names)


def offers(model, protocol) -> bool:
    """Whether `model` has every member of `protocol`, checked with `hasattr` (from Python 3.12 a runtime
    `isinstance` against a Protocol misses the attributes a torch module keeps in its buffers)."""
    return all(hasattr(model, name) for name in members(protocol))


def fast_path(model, capability):
    """`model` when it offers the optional fast path `capability` (one of `FAST_PATHS`) and its fast paths are not
    hidden, else None: the caller then takes its generic path."""
    if capability not in FAST_PATHS:
        raise TypeError(f"{capability.__name__} is not a fast path; check it with `capability`")
    return model if offers(model, capability) else None


def capability(model, cap):
    """`model` when it offers the optional capability `cap` (one of `CAPABILITIES`: not about speed, so
    `without_fast_paths` keeps it), else None."""
    if cap not in CAPABILITIES:
        raise TypeError(f"{cap.__name__} is not a capability of the protocol; a fast path is checked with `fast_path`")
    return model if offers(model, cap) else None


def meta_of(model) -> dict:
    """The model's `meta` (`Described`), or {} for a model without one."""
    described = capability(model, Described)
    return described.meta if described is not None else {}


def cache_key_of(model) -> str | None:
    """The model's `cache_key` (`Cached`), or None: its jobs are not cached."""
    cached = capability(model, Cached)
    return cached.cache_key if cached is not None else None


# the members of the capabilities a generic view passes through when its model has them (`cell_state` and `cpu`
# are the view's own methods: the first falls back to predictions, the second moves the model under the view)
_PASSED_THROUGH = frozenset(name for cap in CAPABILITIES for name in members(cap)) - {"cell_state", "cpu"}


class _GenericView:
    """A model seen through the protocol with every fast path hidden; the other capabilities stay (`cell_state`
    falls back to predictions; `cpu` moves the model under the view)."""

    def __init__(self, model):
        self._model = model
        self.gene_names, self.n_peaks, self.n_genes = model.gene_names, model.n_peaks, model.n_genes

    def __getattr__(self, name):
        model = self.__dict__.get("_model")  # absent while a copy or an unpickled view is being built
        if model is not None and name in _PASSED_THROUGH:
            return getattr(model, name)
        raise AttributeError(f"{type(self).__name__} has no {name!r} (fast paths are hidden)")

    @property
    def device(self):
        return self._model.device

    def gene_index(self, gene):
        return self._model.gene_index(gene)

    def predict(self, atac, closed=None, genes=None, cell_types=None):
        return self._model.predict(atac, closed=closed, genes=genes, cell_types=cell_types)

    def dense(self, x, genes=None, cell_types=None):
        return self._model.dense(x, genes=genes, cell_types=cell_types)

    def evaluating(self):
        return self._model.evaluating()

    def cell_state(self, atac, cell_types=None):
        return cell_state(self._model, atac, cell_types)

    def cpu(self):
        """This view of the model on the CPU (the view itself when the model cannot move)."""
        movable = capability(self._model, Movable)
        return self if movable is None else _GenericView(movable.cpu())


def without_fast_paths(model) -> _GenericView:
    """`model` with its optional fast paths hidden: explainers take their generic, protocol-only paths; the other
    capabilities (`best_closure`, `cache_key`, `meta`, `threads`, `cell_state`) stay."""
    return _GenericView(model)


class CountingModel:
    """`model` with every call that produces outputs counted: `evaluations` is the number of cells (rows) that went
    through `predict`, `dense`, `head` (the fast path's output layers), `local_dense` (the closed form's) or an own
    `cell_state`, forward. It is the one unit of effort every method shares, whatever path it takes
    (bench/studies/budget.py's anytime curves read it; the closed form's `local_dense` is an output too: uncounted,
    the truth tier's curves showed ~10² evaluations for a GRIDS job of ~10⁵ rows through it): a GRIDS step scoring
    32 candidate closures on 64 cells is 64 · 33 evaluations; a SmoothGrad cell with 10 noisy copies is 10. A
    backward pass is not counted apart (it costs about two forwards, on the cells already counted). Everything else
    — fast paths included — passes through unchanged, so the explainer's answer is the same."""

    _COUNTED = ("predict", "dense", "head", "cell_state", "local_dense")

    def __init__(self, model):
        self._model = model
        self.evaluations = 0

    def __getattr__(self, name):
        value = getattr(self._model, name)
        if name not in self._COUNTED or not callable(value):
            return value

        def counted(*args, **kwargs):
            out = value(*args, **kwargs)
            self.evaluations += int(out.shape[0]) if hasattr(out, "shape") and len(out.shape) else 0
            return out

        return counted


# ---------------------------------------------------------------------------------------------- generic helpers
def cell_types_of(cells) -> np.ndarray:
    """The cell type of each row of a `MultiomeData` (view), as strings: what `cell_types=` takes."""
    return cells.obs["cell_type"].astype(str).to_numpy()


def row_types(cell_types, rows) -> np.ndarray | str | None:
    """The cell types of a row selection (`rows`: a slice or indices) of `cell_types` (one name stays itself)."""
    if cell_types is None or isinstance(cell_types, str):
        return cell_types
    return np.asarray(cell_types)[rows]


def cell_state(model, atac, cell_types=None) -> torch.Tensor:
    """A representation of each cell: the model's own `cell_state` when it has one (the surrogate's ATAC latent),
    else its predicted log-expression of every gene (cells × genes)."""
    own = capability(model, CellState)
    if own is not None:
        return own.cell_state(atac, cell_types)
    return model.predict(atac, cell_types=cell_types).float()


def entry_gradients(model, atac: sp.csr_matrix, gene: str, cell_types=None, chunk: int = 64):
    """(row, peak, g) of every open entry of `atac` (CSR order, indices sorted): g = x_cj · ∂ŷ_c/∂x_cj, the first-
    order drop of the gene's log-prediction in cell c when peak j is closed. Fast path: one backward pass through
    the additive first layer's per-entry weights; generic: autograd of `dense` on batches of dense rows."""
    atac = sp.csr_matrix(atac)
    atac.sort_indices()
    gi = model.gene_index(gene)
    fast = fast_path(model, AdditiveHidden)
    if fast is not None:
        batch = fast.sparse_batch(atac)
        w = torch.ones(batch.idx.numel(), device=model.device, requires_grad=True)
        with torch.enable_grad():
            y = fast.head(fast.first_hidden(batch, w))[:, gi]
            (g,) = torch.autograd.grad(y.sum(), w)
        return batch.row, batch.idx, g
    rows, idx, grads = [], [], []
    peaks = read_peaks(model, gene)  # None: every peak; else the gene's gradient is 0 on every other peak
    if peaks is not None:
        col = np.full(atac.shape[1], len(peaks), dtype=np.int64)  # peak → its column, others → an all-0 column
        col[peaks] = np.arange(len(peaks))
    for start in range(0, atac.shape[0], chunk):
        part = atac[start:start + chunk]
        types = row_types(cell_types, slice(start, start + chunk))
        dense = part if peaks is None else part[:, peaks]
        x = torch.as_tensor(dense.toarray(), dtype=torch.float32, device=model.device).requires_grad_(True)
        with torch.enable_grad():
            y = (model.dense(x, genes=[gene], cell_types=types)[:, 0] if peaks is None
                 else local_output(model, x, peaks, gene, types))
            (g,) = torch.autograd.grad(y.sum(), x)
        r = torch.as_tensor(entry_rows(part), device=model.device)  # CSR order: by row, peaks ascending
        c = torch.as_tensor(part.indices.astype(np.int64), device=model.device)
        rows.append(r + start)
        idx.append(c)
        if peaks is not None:
            g = torch.cat([g, g.new_zeros(g.shape[0], 1)], 1)
            c = torch.as_tensor(col[part.indices], device=model.device)
        grads.append(g[r, c])
    if not rows:
        empty = torch.zeros(0, dtype=torch.long, device=model.device)
        return empty, empty, torch.zeros(0, device=model.device)
    return torch.cat(rows), torch.cat(idx), torch.cat(grads)


def entry_rows(atac: sp.csr_matrix) -> np.ndarray:
    """The row of every stored entry of a CSR matrix, in storage order."""
    return np.repeat(np.arange(atac.shape[0], dtype=np.int64), np.diff(atac.indptr))


def peak_mask(n_peaks: int, peaks) -> np.ndarray:
    """Boolean mask over `n_peaks` peaks, True at `peaks` (None or empty: all False)."""
    mask = np.zeros(n_peaks, dtype=bool)
    if peaks is not None and len(peaks):
        mask[np.asarray(peaks, dtype=np.int64)] = True
    return mask


def _drop_columns(atac: sp.csr_matrix, drop: np.ndarray) -> sp.csr_matrix:
    """A copy of `atac` without the entries of the peaks where the boolean mask `drop` is True."""
    atac = sp.csr_matrix(atac, copy=True)
    if drop.any():
        atac.data[drop[atac.indices]] = 0
        atac.eliminate_zeros()
    return atac


def close_columns(atac: sp.csr_matrix, closed) -> sp.csr_matrix:
    """A copy of binary CSR rows with the peaks in `closed` set to 0 (entries removed)."""
    return _drop_columns(atac, peak_mask(atac.shape[1], closed))


def close_rows(atac: sp.csr_matrix, closures, which) -> sp.csr_matrix:
    """Row i of `atac` with the peaks of `closures[which[i]]` set to 0, for every row, indices kept sorted. Only the
    entries of peaks in some closure are checked against their row's closure (closures are small: a pass over all
    entries is one 1-byte gather)."""
    atac = sp.csr_matrix(atac)
    atac.sort_indices()
    closed = np.stack([peak_mask(atac.shape[1], c) for c in closures])
    touched = np.flatnonzero(closed.any(0)[atac.indices])  # entries of a peak some closure closes
    row = np.searchsorted(atac.indptr, touched, side="right") - 1
    drop = touched[closed[np.asarray(which, dtype=np.int64)[row], atac.indices[touched]]]
    keep = np.ones(atac.nnz, dtype=bool)
    keep[drop] = False
    removed = np.bincount(np.searchsorted(atac.indptr, drop, side="right") - 1, minlength=atac.shape[0])
    indptr = atac.indptr - np.concatenate([[0], np.cumsum(removed)])
    return sp.csr_matrix((np.ones(atac.nnz - drop.size, dtype=atac.dtype), atac.indices[keep], indptr),
                         shape=atac.shape)


def restrict_to_support(model, atac: sp.csr_matrix) -> sp.csr_matrix:
    """`atac` without the entries of peaks outside the model's `input_support()` (the same predictions; less to
    read), or `atac` itself when the model declares no support."""
    support = fast_path(model, InputSupport)
    if support is None:
        return atac
    return _drop_columns(atac, ~peak_mask(atac.shape[1], support.input_support()))


def read_peaks(model, gene: str) -> np.ndarray | None:
    """The peaks (sorted) `gene`'s output can depend on: the model's own `reads` (`ClosedForm`), else its
    `input_support` (`InputSupport`); None when it declares neither (it may read every peak)."""
    closed = fast_path(model, ClosedForm)
    if closed is not None:
        return np.asarray(closed.reads([model.gene_index(gene)]), dtype=np.int64)
    support = fast_path(model, InputSupport)
    return None if support is None else np.sort(np.asarray(support.input_support(), dtype=np.int64))


def local_output(model, x: torch.Tensor, peaks: np.ndarray, gene: str, cell_types=None) -> torch.Tensor:
    """`gene`'s output (rows,) where x (rows × len(peaks)) holds the values of `peaks` = `read_peaks(model, gene)`:
    the model's `local_dense` (`ClosedForm`), else `dense` of x placed into otherwise-closed rows (the model reads
    no other peak, so their value does not matter); differentiable either way."""
    closed = fast_path(model, ClosedForm)
    if closed is not None:
        return closed.local_dense(x, peaks, [model.gene_index(gene)], cell_types=cell_types)[:, 0]
    full = x.new_zeros(x.shape[0], model.n_peaks).index_copy(1, torch.as_tensor(peaks, device=x.device), x)
    return model.dense(full, genes=[gene], cell_types=cell_types)[:, 0]


# ---------------------------------------------------------------------------------------------- a user's model
class ModelOutputError(ValueError):
    """A user's model returned something the protocol cannot use (shape or dtype); the message says what."""


class TorchModel:
    """A user's `torch.nn.Module` mapping a dense float [cells × peaks] batch to log-expression [cells × genes],
    wrapped as an `ExplainedModel` on the generic paths. Its output columns must follow `gene_names` (the data's
    gene order); `cell_types` are not passed to it (a model that needs them implements the protocol itself).

    Its jobs are cached under `cache_key`: by default a hash of the module's class name and its state_dict, so a
    retrained model (other weights) never reuses another model's jobs. What the hash cannot see — an edited
    `forward`, hyper-parameters or buffers kept outside the state_dict — needs a `cache_key` of your own (e.g.
    "mymodel-v2"), or a new class name."""

    def __init__(self, module: nn.Module, gene_names: Sequence[str], n_peaks: int, batch_size: int = 256,
                 cache_key: str | None = None):
        if not isinstance(module, nn.Module):
            raise TypeError(f"TorchModel wraps a torch.nn.Module, got {type(module).__name__}")
        self.module, self.gene_names = module, list(gene_names)
        self.n_peaks, self.n_genes, self.batch_size = int(n_peaks), len(self.gene_names), batch_size
        self._index = pd.Index(self.gene_names)
        self.meta = {"model": f"{type(module).__module__}.{type(module).__qualname__}"}
        self.cache_key = cache_key or f"torch-{state_hash(module)}"
        self.check_output()

    @property
    def device(self) -> torch.device:
        p = next(iter(self.module.parameters()), None)
        return p.device if p is not None else torch.device("cpu")

    def gene_index(self, gene: str) -> int:
        return gene_position(self._index, gene, "your model's outputs (columns in the data's gene order)")

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        y = self.module(x)
        if not isinstance(y, torch.Tensor) or y.shape != (x.shape[0], self.n_genes) or not y.is_floating_point():
            got = (f"{tuple(y.shape)} {y.dtype}" if isinstance(y, torch.Tensor) else type(y).__name__)
            raise ModelOutputError(
                f"your model must map a float [cells × {self.n_peaks} peaks] batch to log-expression [cells × "
                f"{self.n_genes} genes] (floating point, columns in the data's gene order); for {x.shape[0]} cells "
                f"it returned {got}")
        return y

    def check_output(self) -> None:
        """Call the module on two all-closed cells once, so a wrong output shape or dtype fails before any job."""
        with torch.no_grad(), self.evaluating():
            self._call(torch.zeros(2, self.n_peaks, device=self.device))

    def dense(self, x, genes=None, cell_types=None) -> torch.Tensor:
        y = self._call(x.to(self.device, torch.float32) if x.dtype != torch.float32 else x)
        return y if genes is None else y[:, [self.gene_index(g) for g in genes]]

    @torch.no_grad()
    def predict(self, atac, closed=None, genes=None, cell_types=None) -> torch.Tensor:
        atac = close_columns(atac, closed)
        out = [self.dense(dense_rows(atac[s:s + self.batch_size], self.device), genes)
               for s in range(0, atac.shape[0], self.batch_size)]
        return torch.cat(out) if out else torch.zeros(0, self.n_genes if genes is None else len(genes))

    def cpu(self) -> TorchModel:
        """The model on the CPU (`Movable`): its module moves in place, as torch's `Module.cpu()`."""
        self.module.cpu()
        return self

    @contextlib.contextmanager
    def evaluating(self):
        was = self.module.training
        self.module.eval()
        try:
            yield self
        finally:
            self.module.train(was)


def dense_rows(atac: sp.csr_matrix, device=None) -> torch.Tensor:
    """CSR rows (canonical: no duplicate entries) as a dense float32 tensor, their values written into float32
    zeros (scipy's `toarray` of binary uint8 rows and the float32 conversion after it took 1.6× as long at quick
    scale, 256 rows × 40,000 peaks)."""
    out = np.zeros(atac.shape, dtype=np.float32)
    out[entry_rows(atac), atac.indices] = atac.data
    return torch.from_numpy(out).to(device)


def state_hash(module: nn.Module) -> str:
    """SHA-256 (16 hex) of a module's class and state_dict (names, shapes, dtypes, values)."""
    h = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def as_model(model, data=None):
    """An `ExplainedModel` from what a user passes: a protocol object as it is, a torch module wrapped in
    `TorchModel` (its output columns follow `data`'s genes). TypeError otherwise, naming what is missing."""
    if isinstance(model, nn.Module) and not offers(model, ExplainedModel):
        if data is None:
            raise TypeError("a plain torch module needs the data (its gene order and peak count) to be wrapped")
        return TorchModel(model, data.gene_names, data.n_peaks)
    if offers(model, ExplainedModel):
        return model
    missing = [m for m in members(ExplainedModel) if not hasattr(model, m)]
    raise TypeError(f"{type(model).__name__} is neither a torch.nn.Module nor a model of the protocol in "
                    f"surrogates/protocol.py (missing: {', '.join(missing)})")
