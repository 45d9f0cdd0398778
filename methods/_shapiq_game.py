"""Shared code of the Shapley-interaction explainers (shapiq): the players, the closure game and the selection.

**Players.** A Shapley-interaction estimate needs a few dozen players, not 40,000 peaks, so each job first picks
its candidate peaks (`candidate_players`), all of them open in at least one explained cell (closing a peak that is
never open changes no prediction):

* a model that declares the peaks the gene reads (`read_peaks` of surrogates/protocol.py: the simulator's truth
  model reads its ~40 planted peaks and the promoter): those peaks;
* any other model (a trained surrogate, a user's module): the peaks in the gene's cis window (±`WINDOW_BP` of its
  TSS, by peak midpoint, as datasets/windows.py; a gene without coordinates has no window), where cis-regulatory
  elements sit, plus the peaks of a first-order screen from anywhere, so that the cell-identity peaks a surrogate
  also responds to can compete. The screen is each peak's summed Input × Gradient over the explained cells,
  s_j = Σ_c x_cj ∂ŷ_c/∂x_cj (protocol `entry_gradients`: one backward pass), the first-order drop of ŷ when j is
  closed; the largest first. Peaks with s_j = 0 exactly do not join from the screen.

Then a **dummy screen** (cells × (2 · candidates + 1) evaluations) drops the candidates that look like dummies of
the game at both ends of the lattice: j stays when closing it alone moves some cell's prediction, or opening it
alone (every other candidate closed) does. On a general model both ends are not a proof (a peak could matter only
in between); on the simulator's truth (additive over units, each an OR, an AND or a single element, times the
promoter) they are exact, so a truth model seen through the bare protocol (no `read_peaks`: window + screen) ends up
with the same players as with its fast paths, and with the same explanation. Fewer players also leave the
regression fewer unknowns. If more than `max_players` remain, the largest first-order screens are kept, the window
keeping at least half of the slots (a surrogate's identity peaks can outscore every cis peak).

**Game.** `closure_game` is a `shapiq.Game` over the players whose value of a coalition S (players closed in every
explained cell) is the suppression of the gene, the negative of the benchmark's Rel Δ (bench/scoring/metrics.py):

    v(S) = −100 · mean_c expm1(ŷ_c(S) − ŷ_c) = −100 · mean_c (E_c(S) − E_c) / (1 + E_c),      v(∅) = 0,

with ŷ = log1p(E) the model's log-expression; a good closure has a large positive value. Coalitions are evaluated in
batches (`ClosureEvaluator`), each on the model's cheapest path: the closed form (`ClosedForm`: the gene's read
columns of the cells gathered once, the coalition's columns zeroed, `local_dense`); the additive first layer
(`AdditiveHidden`: a_S = a_open − Σ_{j∈S} x_cj U_j from `peak_hidden`, then `head` on the gene's column only: the
cells are embedded once per job); else `predict` of the closed rows (`close_rows`, on the model's input support
when it declares one). One evaluation is one cell under one coalition: the methods' budget unit.

**Selection.** `best_subset` reads the estimated interactions {S: φ_S} of a faithful index, whose sum over subsets
approximates the game, v̂(T) = Σ_{S ⊆ T} φ_S, and picks T with |T| ≤ L and a large v̂(T): greedy forward selection
(a move adds one player, or every missing member of one interaction term's support, whichever gains most per added
peak without passing L), then 1-swap local search on v̂ until no swap (or, below L, no addition) improves it. No
model evaluation; a heuristic, not the exact maximum of v̂.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from math import comb

import numpy as np
import scipy.sparse as sp
import torch

from datasets.windows import WINDOW_BP, window_pairs
from methods._shared import open_frequency, rank_peaks
from methods.base import BudgetClock
from surrogates.protocol import (
    AdditiveHidden,
    ClosedForm,
    cell_types_of,
    close_rows,
    entry_gradients,
    fast_path,
    read_peaks,
    restrict_to_support,
)

TIE = 1e-6  # relative to Σ|φ|: moves within this of the best one are ties (shapiq's big-M regression weights
# leave ~1e-8 of rounding in φ), broken by player order
DUMMY_TOL = 1e-9  # |Δŷ| at or below this in every cell: the closure does not move the prediction


class TimeUp(Exception):
    """The wall-time safety stop ran out while the game was being evaluated."""


class NoEstimate(Exception):
    """The evaluation budget affords no estimate (the message says why)."""


def n_terms(n: int, max_order: int) -> int:
    """The number of interactions of order 0…max_order over n players: the regression's unknowns."""
    return sum(comb(n, k) for k in range(min(n, max_order) + 1))


# ---------------------------------------------------------------------------------------------- the model's values
class ClosureEvaluator:
    """The gene's log-expression ŷ in each explained cell with a set of the candidate `peaks` closed, batched over
    closures on the model's cheapest path (`path`: "closed form", "additive hidden" or "generic")."""

    rows_per_chunk = 65_536  # cells × closures per model call (closed form / additive hidden)
    max_entries = 4_000_000  # open entries per `predict` call on the generic path

    def __init__(self, model, cells, gene: str, peaks: np.ndarray, clock: BudgetClock):
        self.model, self.gene, self.clock = model, gene, clock
        self.peaks = np.asarray(peaks, dtype=np.int64)
        self.n_cells = cells.n_cells
        self.gi = model.gene_index(gene)
        types = cell_types_of(cells)
        self.types = types[0] if len(set(types)) == 1 else types  # one name: no per-row lookup of the truth's types
        atac = sp.csr_matrix(cells.atac)
        atac.sort_indices()
        self.atac = atac
        self.closed_form, self.additive = fast_path(model, ClosedForm), fast_path(model, AdditiveHidden)
        with torch.no_grad():
            if self.closed_form is not None:
                self.path = "closed form"
                self.read = np.asarray(read_peaks(model, gene), dtype=np.int64)
                self.x0 = torch.as_tensor(atac[:, self.read].toarray(), dtype=torch.float64)
                col = np.full(model.n_peaks, -1, dtype=np.int64)
                col[self.read] = np.arange(len(self.read))
                self.col = col[self.peaks]  # a candidate the gene does not read (never, here) moves nothing
            elif self.additive is not None:
                self.path = "additive hidden"
                fast = self.additive
                self.a_open = fast.first_hidden(fast.sparse_batch(atac))
                self.U = fast.peak_hidden(torch.as_tensor(self.peaks, device=model.device))
                self.xp = torch.as_tensor(atac[:, self.peaks].toarray(), dtype=self.U.dtype, device=model.device)
            else:
                self.path = "generic"
                self.atac = restrict_to_support(model, atac)
        self.y0 = self._values(np.zeros((1, len(self.peaks)), dtype=bool))[0]

    def _tiled_types(self, n_closures: int):
        return self.types if isinstance(self.types, str) else np.tile(self.types, n_closures)

    @torch.no_grad()
    def _chunk(self, closed: np.ndarray) -> np.ndarray:
        """ŷ (closures × cells, float64) for a boolean (closures × candidates) matrix of closed candidates."""
        b, n = closed.shape[0], self.n_cells
        if self.path == "closed form":
            keep = torch.ones(b, self.x0.shape[1], dtype=torch.float64)
            rows, cols = np.nonzero(closed[:, self.col >= 0])
            keep[torch.as_tensor(rows), torch.as_tensor(self.col[self.col >= 0][cols])] = 0.0
            x = (self.x0.unsqueeze(0) * keep.unsqueeze(1)).reshape(b * n, -1)
            y = self.closed_form.local_dense(x, self.read, [self.gi], cell_types=self._tiled_types(b))[:, 0]
        elif self.path == "additive hidden":
            d = torch.as_tensor(closed, dtype=self.U.dtype, device=self.U.device)
            shift = (d.unsqueeze(1) * self.xp.unsqueeze(0)).reshape(b * n, -1) @ self.U
            a = (self.a_open.unsqueeze(0) - shift.view(b, n, -1)).reshape(b * n, -1)
            y = self.additive.head(a, [self.gi])[:, 0]
        else:
            stacked = sp.vstack([self.atac] * b, format="csr")
            closures = [self.peaks[row] for row in closed]
            x = close_rows(stacked, closures, np.repeat(np.arange(b), n))
            y = self.model.predict(x, genes=[self.gene], cell_types=self._tiled_types(b))[:, 0]
        return y.detach().double().cpu().numpy().reshape(b, n)

    def _values(self, closed: np.ndarray) -> np.ndarray:
        if self.path == "generic":
            per_chunk = max(1, self.max_entries // max(1, self.atac.nnz))
        else:
            per_chunk = max(1, self.rows_per_chunk // max(1, self.n_cells))
        out = []
        for s in range(0, closed.shape[0], per_chunk):
            if self.clock.seconds > self.clock.budget.seconds:
                raise TimeUp
            part = closed[s:s + per_chunk]
            out.append(self._chunk(part))
            self.clock.spend(part.shape[0] * self.n_cells)
        return np.concatenate(out) if out else np.zeros((0, self.n_cells))

    def predictions(self, closed: np.ndarray) -> np.ndarray:
        """ŷ (closures × cells) with the candidates where `closed` (closures × candidates, bool) is True closed."""
        return self._values(np.asarray(closed, dtype=bool))

    def suppression(self, closed: np.ndarray) -> np.ndarray:
        """v = −Rel Δ (%) of each closure: −100 · mean_c expm1(ŷ_c(S) − ŷ_c)."""
        return -100.0 * np.expm1(self.predictions(closed) - self.y0).mean(axis=1)


def closure_game(evaluator: ClosureEvaluator, players: np.ndarray):
    """The closure game over `players` (positions in the evaluator's candidates), a `shapiq.Game`: v(S) = −Rel Δ (%)
    of closing S; `n_coalitions` counts the coalitions it evaluated."""
    return _closure_game_class()(evaluator, players)


@functools.cache
def _closure_game_class():
    import shapiq  # here, not at the top: importing shapiq costs ~0.45 s, which every process that loads the
    # registry (the CLI, each worker, each test run) would pay for methods it may never run

    class ClosureGame(shapiq.Game):
        def __init__(self, evaluator: ClosureEvaluator, players: np.ndarray):
            self.evaluator = evaluator
            self.players = np.asarray(players, dtype=np.int64)
            self.n_coalitions = 0
            super().__init__(n_players=len(self.players), normalize=False)  # v(∅) = 0 by construction

        def value_function(self, coalitions: np.ndarray) -> np.ndarray:
            coalitions = np.asarray(coalitions, dtype=bool)
            closed = np.zeros((coalitions.shape[0], len(self.evaluator.peaks)), dtype=bool)
            closed[:, self.players] = coalitions
            self.n_coalitions += coalitions.shape[0]
            return self.evaluator.suppression(closed)

    return ClosureGame


# ---------------------------------------------------------------------------------------------- the players
def window_peaks(data, gene: str, window: int = WINDOW_BP) -> np.ndarray:
    """The peaks whose midpoint lies within `window` bp of the gene's TSS on its chromosome (sorted; datasets/windows.py
    `window_pairs`); none when the data's gene table has no chromosome and TSS for it."""
    genes = data.genes
    if gene not in genes.index or not {"chrom", "tss"} <= set(genes.columns):
        return np.zeros(0, dtype=np.int64)
    return window_pairs(data.peaks, genes.loc[[gene]], window)[1]


def first_order_screen(model, cells, gene: str, clock: BudgetClock) -> np.ndarray:
    """s_j = Σ_c x_cj ∂ŷ_c/∂x_cj for every peak (Input × Gradient summed over the cells; 0 for never-open peaks)."""
    _, idx, g = entry_gradients(model, cells.atac, gene, cell_types_of(cells))
    clock.spend(cells.n_cells)
    score = np.zeros(model.n_peaks)
    np.add.at(score, idx.cpu().numpy(), g.detach().double().cpu().numpy())
    return score


@dataclass
class Players:
    """A job's players: their peaks, where they came from, and the evaluator over the candidates they were drawn
    from (`positions`: each player's column in it)."""

    peaks: np.ndarray
    positions: np.ndarray
    evaluator: ClosureEvaluator
    source: str  # "read peaks" or "window + screen"
    screen: np.ndarray | None = None  # first-order screen of every peak, when it was computed
    info: dict = field(default_factory=dict)


def candidate_players(model, cells, gene: str, max_players: int, clock: BudgetClock) -> Players:
    """The players of one job (see the module docstring): read peaks or window + screen, open in some cell, minus
    dummies, capped at `max_players` by the first-order screen."""
    freq = open_frequency(cells.atac)
    read = read_peaks(model, gene)
    screen = None
    window = np.zeros(0, dtype=np.int64)
    if read is not None:
        source = "read peaks"
        cand = np.asarray(read, dtype=np.int64)
        cand = cand[freq[cand] > 0]
    else:
        source = "window + screen"
        window = window_peaks(cells, gene)
        window = window[freq[window] > 0]
        screen = first_order_screen(model, cells, gene, clock)
        others = np.flatnonzero((freq > 0) & (screen != 0))
        others = np.setdiff1d(others, window)
        others = others[rank_peaks(screen[others], freq[others])[:max_players]]
        cand = np.union1d(window, others)
    evaluator = ClosureEvaluator(model, cells, gene, cand, clock)
    n = len(cand)
    info = {"candidates": int(n)}
    if n:  # the dummy screen: close each alone, and open each alone with every other candidate closed
        eye = np.eye(n, dtype=bool)
        y = evaluator.predictions(np.concatenate([eye, ~eye, np.ones((1, n), dtype=bool)]))
        alone = np.abs(y[:n] - evaluator.y0).max(axis=1)
        opened = np.abs(y[n:2 * n] - y[2 * n]).max(axis=1)
        keep = (alone > DUMMY_TOL) | (opened > DUMMY_TOL)
        info["dummies"] = int(n - keep.sum())
    else:
        keep = np.zeros(0, dtype=bool)
    pos = np.flatnonzero(keep)
    if len(pos) > max_players:
        if screen is None:
            screen = first_order_screen(model, cells, gene, clock)
        peaks = cand[pos]
        order = rank_peaks(screen[peaks], freq[peaks])
        in_window = np.isin(peaks[order], window)
        reserved = order[in_window][:max_players // 2]  # the window keeps at least half of the slots
        rest = order[~np.isin(order, reserved)]
        chosen = np.concatenate([reserved, rest[:max_players - len(reserved)]]).astype(np.int64)
        pos = np.sort(pos[chosen])
        info["capped_from"] = int(keep.sum())
    return Players(peaks=cand[pos], positions=pos, evaluator=evaluator, source=source, screen=screen, info=info)


# ---------------------------------------------------------------------------------------------- the selection
def best_subset(values: dict, L: int, tie: float = TIE) -> tuple[list, np.ndarray]:
    """(T as a list of players, best first; the gain of each prefix) with |T| ≤ L and a large v̂(T) = Σ_{S⊆T} φ_S,
    from interaction values {tuple(players): φ_S} (the empty tuple, if present, is a constant and ignored).

    Greedy forward selection — a move adds one player or all still-missing members of one term's support, the move
    with the largest gain per added player that keeps |T| ≤ L — while some move gains; then 1-swap local search
    (and additions while |T| < L) until nothing improves v̂. Ties (within `tie` relative) go to the move whose
    players come first in sorted order. The members are then ordered by greedy prefix on v̂ (each next member the
    one that raises v̂ of the prefix most). A heuristic: not guaranteed to be the exact maximum of v̂."""
    players = sorted({p for key in values for p in key})
    if not players or L <= 0:
        return [], np.zeros(0)
    where = {p: i for i, p in enumerate(players)}
    terms = [(key, float(v)) for key, v in values.items() if len(key) and v != 0]
    n = len(players)
    A = np.zeros((len(terms), n), dtype=np.float32)
    for t, (key, _) in enumerate(terms):
        A[t, [where[p] for p in key]] = 1.0
    size = A.sum(axis=1)
    w = np.array([v for _, v in terms], dtype=np.float64)
    scale = max(1.0, float(np.abs(w).sum()))

    def vhat(masks: np.ndarray) -> np.ndarray:
        if not len(terms):
            return np.zeros(len(masks))
        return ((masks.astype(np.float32) @ A.T) == size).astype(np.float64) @ w

    def pick(masks: np.ndarray, score: np.ndarray) -> int:
        """The best candidate; ties by the sorted players of the mask (lexicographic on member positions)."""
        near = np.flatnonzero(score >= score.max() - tie * scale)
        keys = [tuple(np.flatnonzero(masks[i])) for i in near]
        return int(near[min(range(len(near)), key=keys.__getitem__)])

    T = np.zeros(n, dtype=bool)
    current = 0.0
    while T.sum() < L:  # greedy forward selection
        room = L - int(T.sum())
        singles = np.tile(T, (n, 1))
        singles[np.arange(n), np.arange(n)] = True
        singles = singles[~T]
        missing = A.astype(bool) & ~T
        n_missing = missing.sum(axis=1)
        ok = (n_missing >= 2) & (n_missing <= room)
        groups = np.unique(missing[ok] | T, axis=0) if ok.any() else np.zeros((0, n), dtype=bool)
        masks = np.concatenate([singles, groups])
        if not len(masks):
            break
        added = masks.sum(axis=1) - T.sum()
        per = (vhat(masks) - current) / added
        if per.max() <= tie * scale:
            break
        T = masks[pick(masks, per)]
        current = float(vhat(T[None])[0])
    for _ in range(10 * L + 10):  # 1-swap local search (and additions below L)
        inside, outside = np.flatnonzero(T), np.flatnonzero(~T)
        moves = []
        for i in inside:
            swap = np.tile(T, (len(outside), 1))
            swap[:, i] = False
            swap[np.arange(len(outside)), outside] = True
            moves.append(swap)
        if T.sum() < L and len(outside):
            add = np.tile(T, (len(outside), 1))
            add[np.arange(len(outside)), outside] = True
            moves.append(add)
        masks = np.concatenate(moves) if moves else np.zeros((0, n), dtype=bool)
        if not len(masks):
            break
        gain = vhat(masks) - current
        if gain.max() <= tie * scale:
            break
        T = masks[pick(masks, gain)]
        current = float(vhat(T[None])[0])
    order, gains, prefix, last = [], [], np.zeros(n, dtype=bool), 0.0
    members = list(np.flatnonzero(T))
    while members:  # greedy prefix order inside T
        masks = np.tile(prefix, (len(members), 1))
        masks[np.arange(len(members)), members] = True
        score = vhat(masks)
        best = pick(masks, score)
        prefix = masks[best]
        gains.append(float(score[best]) - last)
        last = float(score[best])
        order.append(players[members.pop(best)])
    return order, np.asarray(gains)


def fill_order(chosen_players: list[int], first_order: np.ndarray, freq: np.ndarray) -> np.ndarray:
    """The positions of the players not chosen, by their order-1 values (highest first), then open frequency."""
    rest = np.setdiff1d(np.arange(len(first_order)), np.asarray(chosen_players, dtype=np.int64))
    return rest[rank_peaks(first_order[rest], freq[rest])]


def approximate(approximator, game, budget: int):
    """`approximator.approximate(budget, game)` with shapiq's notices about a budget at or near 2^n silenced (the
    caller caps the budget at 2^n; the sampler then enumerates sizes exactly, which is what those notices say)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Not all budget is required")
        warnings.filterwarnings("ignore", message="Sampling might be inefficient")
        return approximator.approximate(budget=budget, game=game)


def top_terms(values: dict, peaks: np.ndarray, k: int = 5) -> list[dict]:
    """The k interaction terms with the largest values, as {"peaks": [...], "value": φ} (JSON-able)."""
    items = sorted(((key, v) for key, v in values.items() if len(key)), key=lambda kv: (-kv[1], kv[0]))[:k]
    return [{"peaks": [int(peaks[p]) for p in key], "value": round(float(v), 6)} for key, v in items]
