"""CXPlain (Schwab & Karlen, 2019): an explanation model trained on Granger-causal attributions, in torch.

CXPlain trains a separate *explanation model* to predict, from an input, how much each input feature (or group)
matters for the explained model, supervised by Granger-causal targets: the increase of the model's loss when the
feature is masked, normalised over features. Ours, for binary ATAC with the closing perturbation:

* **Features = windows.** Non-overlapping windows of `window` (w = 4, as in the paper; also 16/32/64) contiguous
  peaks in genome order, so d = 127,219 peaks give 31,805 windows. Masking a window closes all its peaks.
* **Granger targets** (per training cell c, per window k), with ŷ the surrogate's log-expression of the gene:
  `granger="drop"` (default): Δε_ck = max(0, ŷ(x_c) − ŷ(x_c with window k closed)) — the loss is the predicted
  target expression itself, so a window counts by how much closing it *suppresses* the gene (the benchmark's
  goal; closing a window that raises the gene scores 0). `granger="squared"`: CXPlain's own error increase with
  the unperturbed prediction as the label, Δε_ck = (ŷ(x_c with k closed) − ŷ(x_c))², which is unsigned.
  ω_ck = Δε_ck / Σ_k' Δε_ck'. Only windows holding an open peak can change ŷ; all others are exactly 0 and are
  never evaluated. On a model with an additive first layer (the surrogate; `AdditiveHidden`,
  surrogates/protocol.py) each masked prediction re-uses the first layer: a = a(x_c) − Σ_{open j∈k} U_j, then the
  layers after the first for the target gene only, so the cost is O(open windows × hidden²), not a forward per
  window; on any other model every masked cell is one sparse row of a `predict` call — the same targets.
  Cells whose Δε are all 0 carry no target and are left out of training.
* **Explanation model.** A small 1-D U-net over the window sequence: input = per-window open count / w of the
  cell; two conv (kernel 5) + max-pool levels down, nearest-neighbour up-sampling with skip connections back up,
  a 1×1 conv to one logit per window; windows with no open peak get logit −10⁴ (their target is exactly 0).
  Memory is O(batch × channels × windows) — never O(batch × d²); the batch is lowered (from `batch_size` = 512)
  so that batch × windows × channels stays ≤ `max_batch_elements`.
* **Objective.** KL(ω_c ‖ softmax(logits_c)) averaged over cells, Adam (lr 5e-4) — the paper's setting. The paper
  trains 2,000 epochs; the default here is 100 (`epochs`; the profiles size it to their time). The U-net's own
  training evaluates no surrogate, so the epoch count, not the evaluation budget, decides how long it trains; the
  wall-time safety stop can still cut it.
* **Global importance.** Mean predicted attribution over all training cells per window; each peak gets its
  window's value, ties (same window) broken by how often the peak is open, then by index → top L.

Status `budget_exceeded` when the evaluation budget cuts the Granger stage, `time_limit` when the wall-time safety
stop cuts the Granger stage or the training short after at least one epoch: the ranking comes from the model as
trained so far. CXPlain's estimate is the trained explanation model, so when no
epoch finished — the budget ended first, or no cell has a non-zero Granger target to train on — the status is
`no_estimate` with no peaks and `info["no_estimate_reason"]` says which (ranking by the mean Granger targets or by
open frequency would be another method shown under CXPlain's name).
Paper: Schwab & Karlen, "CXPlain: Causal Explanations for Model Interpretation under Uncertainty", NeurIPS 2019.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from methods._shared import open_frequency, top_l
from methods.base import BudgetClock, Explainer, Explanation
from methods.registry import register
from surrogates.protocol import AdditiveHidden, cell_types_of, fast_path, row_types

_MASKED = -1e4  # logit of a window with no open peak (finite, so the KL's gradient stays finite)


def window_of(n_peaks: int, window: int) -> np.ndarray:
    """Window index of each peak: non-overlapping windows of `window` contiguous peaks."""
    return np.arange(n_peaks) // window


@torch.no_grad()
def granger_targets(model, X: sp.csr_matrix, gene: str, window: int, granger: str = "drop",
                    clock: BudgetClock | None = None, max_entries: int = 200_000, cell_types=None):
    """Granger-causal targets ω (cells × windows, CSR, rows sum to 1 or are empty) and the raw Δε (CSR).

    Returns (omega, delta, n_done): only the first `n_done` cells are filled when the clock ran out.
    """
    if granger not in ("drop", "squared"):
        raise ValueError("granger must be 'drop' or 'squared'")
    X = sp.csr_matrix(X)
    n_cells, n_peaks = X.shape
    n_win = math.ceil(n_peaks / window)
    mean_open = max(1.0, X.nnz / max(1, n_cells))
    per_chunk = int(max(1, min(256, max_entries // mean_open)))
    masked = _masked_fast if fast_path(model, AdditiveHidden) is not None else _masked_generic
    rows, cols, vals = [], [], []
    n_done = 0
    for start in range(0, n_cells, per_chunk):
        if clock is not None and clock.exhausted():
            break
        Xb = X[start:start + per_chunk]
        uniq, base, y = masked(model, Xb, gene, window, n_win, row_types(cell_types, slice(start, start + per_chunk)),
                               max_entries)
        cell = torch.div(uniq, n_win, rounding_mode="floor")
        delta = torch.relu(base - y) if granger == "drop" else (y - base) ** 2
        rows.append((cell + start).cpu().numpy())
        cols.append((uniq % n_win).cpu().numpy())
        vals.append(delta.double().cpu().numpy())
        if clock is not None:
            clock.spend(len(uniq) + Xb.shape[0])
        n_done = min(n_cells, start + per_chunk)
    if rows:
        r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    else:
        r = c = np.zeros(0, dtype=np.int64)
        v = np.zeros(0)
    delta = sp.csr_matrix((v, (r, c)), shape=(n_cells, n_win))
    total = np.asarray(delta.sum(axis=1)).ravel()
    scale = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)
    omega = sp.csr_matrix(sp.diags(scale) @ delta)
    omega.eliminate_zeros()
    return omega, delta, n_done


def _masked_fast(model, Xb, gene: str, window: int, n_win: int, cell_types, max_entries: int):
    """(key = cell · n_win + window of every open (cell, window), ŷ of the cell, ŷ with that window closed), through
    the additive first layer: a = a(x_c) − Σ_{open j in the window} U_j, then the target's row of the head."""
    gi = model.gene_index(gene)
    batch = model.sparse_batch(Xb)
    a0 = model.first_hidden(batch)
    y0 = model.head(a0, [gi])[:, 0]
    key = batch.row * n_win + torch.div(batch.idx, window, rounding_mode="floor")
    uniq, inv = torch.unique(key, return_inverse=True)
    V = torch.zeros(len(uniq), a0.shape[1], device=model.device, dtype=a0.dtype)
    V.index_add_(0, inv, model.peak_hidden(batch.idx))
    cell = torch.div(uniq, n_win, rounding_mode="floor")
    # a chunk of cells with no open peak has no window to mask (torch.cat of nothing would raise)
    y = torch.cat([y0[:0]] + [model.head(a0[cell[s:s + 4096]] - V[s:s + 4096], [gi])[:, 0]
                              for s in range(0, len(uniq), 4096)])
    return uniq, y0[cell], y


def _masked_generic(model, Xb, gene: str, window: int, n_win: int, cell_types, max_entries: int):
    """The same as `_masked_fast` on any model: each (cell, open window) is one sparse row, the cell with that
    window's peaks closed, predicted in `predict` calls of ≤ `max_entries` open entries."""
    Xb = sp.csr_matrix(Xb)
    Xb.sort_indices()
    y0 = model.predict(Xb, genes=[gene], cell_types=cell_types)[:, 0]
    keys, base, ys = [], [], []
    for c in range(Xb.shape[0]):
        peaks = Xb.indices[Xb.indptr[c]:Xb.indptr[c + 1]].astype(np.int64)
        win = peaks // window
        wins = np.unique(win)
        if not wins.size:
            continue
        keep = win[None, :] != wins[:, None]  # one row per open window: every other open peak stays open
        masked = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.uint8), np.tile(peaks, len(wins))[keep.ravel()],
                                np.concatenate([[0], np.cumsum(keep.sum(1))])), shape=(len(wins), Xb.shape[1]))
        types = row_types(cell_types, [c] * len(wins))
        step = max(1, max_entries // max(1, peaks.size))
        ys += [model.predict(masked[s:s + step], genes=[gene], cell_types=row_types(types, slice(s, s + step)))[:, 0]
               for s in range(0, len(wins), step)]
        keys.append(torch.as_tensor(c * n_win + wins, device=model.device))
        base.append(y0[c].expand(len(wins)))
    if not keys:
        empty = torch.zeros(0, dtype=torch.long, device=model.device)
        return empty, y0[:0], y0[:0]
    return torch.cat(keys), torch.cat(base), torch.cat(ys).to(y0.dtype)


class UNet1d(nn.Module):
    """Two-level 1-D U-net: (batch, windows) open fractions → (batch, windows) logits."""

    def __init__(self, channels: int = 8, kernel: int = 5):
        super().__init__()
        c, p = channels, kernel // 2
        self.enc1 = nn.Conv1d(1, c, kernel, padding=p)
        self.enc2 = nn.Conv1d(c, 2 * c, kernel, padding=p)
        self.mid = nn.Conv1d(2 * c, 2 * c, kernel, padding=p)
        self.dec2 = nn.Conv1d(4 * c, c, kernel, padding=p)
        self.dec1 = nn.Conv1d(2 * c, c, kernel, padding=p)
        self.out = nn.Conv1d(c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        pad = (-n) % 4
        h = F.pad(x.unsqueeze(1), (0, pad))
        s1 = F.relu(self.enc1(h))
        s2 = F.relu(self.enc2(F.max_pool1d(s1, 2)))
        m = F.relu(self.mid(F.max_pool1d(s2, 2)))
        u2 = F.relu(self.dec2(torch.cat([F.interpolate(m, scale_factor=2.0), s2], dim=1)))
        u1 = F.relu(self.dec1(torch.cat([F.interpolate(u2, scale_factor=2.0), s1], dim=1)))
        return self.out(u1)[:, 0, :n]


@register("cxplain", paper="Schwab & Karlen, CXPlain", year=2019, kind="explanation model",
          needs_gradients=False, ranking=True, version=2)
class CXPlain(Explainer):
    """CXPlain: a 1-D U-net explanation model trained on Granger-causal window attributions (KL objective)."""

    def __init__(self, window: int = 4, epochs: int = 100, batch_size: int = 512, lr: float = 5e-4,
                 channels: int = 8, granger: str = "drop", max_batch_elements: int = 8_000_000,
                 max_cells: int | None = None, **common):
        """
        Args:
            window: peaks per non-overlapping window (paper: 4, 16, 32, 64). Default: 4.
            epochs: training epochs of the explanation model (paper 2,000). Default: 100.
            batch_size: cells per step (paper 512), lowered to fit `max_batch_elements`. Default: 512.
            lr: Adam learning rate (paper 5e-4). Default: 5e-4.
            channels: U-net width (first level; the second has twice as many). Default: 8.
            granger: "drop" (suppression of the target) or "squared" (CXPlain's error increase). Default: "drop".
            max_batch_elements: cap on batch × windows × channels. Default: 8000000.
            max_cells: Granger targets and training on at most this many training cells (a seeded subset; the
                global importance still averages the model's attributions over all of them). The Granger stage
                costs one forward per open window per cell, ~1,800 per cell at quick scale, so small profiles
                cap it to reach a first estimate within their budget. Default: None (all cells).
        """
        super().__init__(**common)
        if window < 1 or epochs < 0 or batch_size < 1 or channels < 1:
            raise ValueError("window ≥ 1, epochs ≥ 0, batch_size ≥ 1 and channels ≥ 1 are required")
        if granger not in ("drop", "squared"):
            raise ValueError("granger must be 'drop' or 'squared'")
        self.window, self.epochs, self.batch_size, self.lr = window, epochs, batch_size, lr
        self.channels, self.granger, self.max_batch_elements = channels, granger, max_batch_elements
        self.max_cells = max_cells

    def explain(self, model, data, gene, L) -> Explanation:
        clock = BudgetClock(self.budget)
        rng = np.random.default_rng(self.seed)
        X = sp.csr_matrix(data.atac)
        n_cells, n_peaks = X.shape
        win = window_of(n_peaks, self.window)
        n_win = int(win.max()) + 1 if n_peaks else 0
        fit_cells = np.arange(n_cells)
        if self.max_cells is not None and n_cells > self.max_cells:
            fit_cells = np.sort(rng.choice(n_cells, size=self.max_cells, replace=False))
        with model.evaluating():
            omega, _, n_done = granger_targets(model, X[fit_cells], gene, self.window, self.granger, clock,
                                               cell_types=cell_types_of(data)[fit_cells])
        status = clock.stop_status() if n_done < len(fit_cells) else "ok"
        # per-window open fraction of every cell: X @ (peaks × windows indicator) / w
        M = sp.csr_matrix((np.full(n_peaks, 1.0 / self.window), (np.arange(n_peaks), win)), shape=(n_peaks, n_win))
        counts = sp.csr_matrix(X.astype(np.float32) @ M.astype(np.float32))
        has_target = np.flatnonzero(np.diff(omega.indptr) > 0)
        bs = int(max(1, min(self.batch_size, self.max_batch_elements // max(1, n_win * self.channels))))
        net, trace, stopped = self._fit(counts[fit_cells], omega, has_target, bs, rng, clock, model.device, gene)
        info = {"seconds": clock.seconds, "samples": clock.samples, "granger": self.granger, "window": self.window,
                "n_windows": n_win, "cells_fit": int(len(fit_cells)), "cells_with_targets": int(len(has_target)),
                "cells_granger_done": int(n_done), "epochs": len(trace), "epochs_planned": self.epochs,
                "batch_size": bs}
        if not trace:
            return Explanation.no_estimate(
                {**info, "no_estimate_reason": self._no_estimate_reason(n_done, len(fit_cells), len(has_target))})
        peak_score = self._mean_attribution(net, counts, bs, model.device)[win]
        peaks = top_l(peak_score, L, tiebreak=open_frequency(X))
        expl = Explanation(peaks=peaks, scores=peak_score[peaks], status="time_limit" if stopped else status,
                           info={**info, "final_kl": trace[-1], "kl_trace": trace[:: max(1, len(trace) // 50)]})
        return expl.flag("fewer_cells") if n_done < n_cells else expl  # the default fits every training cell

    def _fit(self, counts, omega, has_target, bs: int, rng, clock: BudgetClock, dev, gene: str):
        """Train the U-net on the cells with a Granger target (KL objective, Adam) → (model, mean KL per finished
        epoch, whether the budget stopped it)."""
        gen = torch.Generator().manual_seed(self.seed)
        model = UNet1d(self.channels)
        with torch.no_grad():  # seeded initialisation, no global RNG
            for p in model.parameters():
                bound = 1.0 / math.sqrt(max(1, p.shape[1] * p.shape[2])) if p.dim() == 3 else 0.0
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * bound if bound else torch.zeros_like(p))
        model.to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        trace = []
        bar = tqdm(range(self.epochs if len(has_target) else 0), desc=f"CXPlain {gene}", disable=not self.progress,
                   leave=False)
        for _ in bar:
            order = has_target[rng.permutation(len(has_target))]
            total = 0.0
            for s in range(0, len(order), bs):
                # the U-net evaluates no surrogate: only the wall-time safety stop can end its training early
                # (after an evaluation budget that cut the Granger stage, training still runs on the targets made)
                if clock.seconds > clock.budget.seconds:
                    bar.close()
                    return model, trace, True
                cells = np.sort(order[s:s + bs])
                x = torch.as_tensor(counts[cells].toarray(), device=dev)
                target = torch.as_tensor(omega[cells].toarray(), dtype=torch.float32, device=dev)
                logp = F.log_softmax(model(x).masked_fill(x == 0, _MASKED), dim=1)
                kl = torch.where(target > 0, target * (torch.log(target.clamp_min(1e-30)) - logp), 0.0)
                loss = kl.sum(1).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(cells)
            trace.append(total / len(has_target))
            bar.set_postfix(kl=f"{trace[-1]:.4f}")
        bar.close()
        return model, trace, False

    def _no_estimate_reason(self, n_done: int, n_cells: int, n_with_target: int) -> str:
        """Why no epoch of the explanation model finished."""
        if n_with_target:
            return ("epochs=0: the explanation model was never trained" if self.epochs == 0
                    else "the wall-time safety stop ended training before its first epoch finished")
        if n_done < n_cells:
            return (f"the budget ended in the Granger stage after {n_done} of {n_cells} cells, none with a "
                    "non-zero target")
        change = "lowers" if self.granger == "drop" else "changes"
        return f"no cell has a Granger target: closing no window {change} the gene's prediction"

    @torch.no_grad()
    def _mean_attribution(self, model, counts, bs, dev) -> np.ndarray:
        total = torch.zeros(counts.shape[1], dtype=torch.float64, device=dev)
        for s in range(0, counts.shape[0], bs):
            x = torch.as_tensor(counts[s:s + bs].toarray(), device=dev)
            p = torch.softmax(model(x).masked_fill(x == 0, _MASKED), dim=1)
            total += p.double().sum(0)
        return (total / max(1, counts.shape[0])).cpu().numpy()
