"""SAGE (Covert et al., 2020) through the `sage-importance` package, with feature groups and an evaluation budget.

SAGE assigns each feature (or feature group) the Shapley value of the *loss reduction* it brings when included in
the model's input, estimated by unrolling random permutations (`sage.PermutationEstimator`). We explain the
explained model itself ("model explanation"): targets Y = the model's own predicted log-expression of the gene on
the training cells, loss = MSE, so a group's value measures how much of the prediction it accounts for.

* **Removal.** `imputer="default"` (default): a removed peak is *closed* (reference all zeros), via
  `sage.DefaultImputer` / `sage.GroupedDefaultImputer` — the benchmark's perturbation p = 0.
  `imputer="marginal"`: removed peaks are drawn from `n_background` (default 32) training cells of the type
  (`sage.MarginalImputer` / `sage.GroupedMarginalImputer`); every evaluation then costs n_background forwards.
* **Groups.** Ungrouped SAGE needs d + 1 model calls per permutation (127k at paper scale), so grouping is the
  default: `groups="window"` — contiguous windows of w peaks in genome order, w = ceil(d / `max_groups`) so
  there are ≤ 512 groups (`window` fixes w instead); `groups="chromosome"`; `groups=None` — one feature per peak.
  The grouped imputers are sage's own classes with `inclusion_matrix` computed by a gather (S[:, group_of_peak])
  instead of sage's boolean (batch × groups) @ (groups × d) product — identical output, O(batch × d) instead of
  O(batch × groups × d), which matters at 127k peaks.
* **Model wrapper.** numpy (rows × d) 0/1 → sparse rows → the explained model's `predict` (surrogates/protocol.py)
  → the target gene, in the explained cell type, in row chunks of ≤ `max_batch_elements` / d (8M entries, i.e.
  ≤ 64 cells at 127k peaks). sage's own batch
  (permutations per chunk) is min(`batch_size`, max_batch_elements / (d · background)) so that its dense copies
  stay within the same memory.
* **Budget and convergence.** The paper runs 256,000 samples with batch 512; we run the estimator in chunks of
  one batch of permutations (`n_permutations` = chunk, `detect_convergence=False`, a fresh `random_state` per
  chunk drawn from the method's seed), merge the chunks' means and variances (Welford/Chan), and stop when sage's
  own criterion holds — max std / (max value − min value) < `thresh` (0.025) — or when `n_permutations`
  (default 256,000) or the evaluation budget is used up (each permutation costs (groups + 1) × background
  surrogate rows). A chunk that would overrun the wall-time safety stop is aborted from inside the model wrapper.
  Status: `ok` when converged; `not_converged` when the estimator ran but did not converge within the evaluation
  budget or the permutation cap (the values so far are a real, noisier estimate); `time_limit` when the wall-time
  safety stop ended it first (the values so far, but they depend on the machine's speed); `no_estimate` when not a
  single chunk finished — there are no SAGE values, so no peaks are returned (any ranking would be another
  method's under SAGE's name). info: converged, std ratio, permutations, groups, values' std.
* **Refinement to peaks** (`refine=True`, default, with grouped SAGE). Group values only say which windows matter;
  the peaks returned are ranked by their own SAGE values. The first stage (the groups) gets `coarse_share` (0.25)
  of the evaluation budget, or stops earlier once sage's criterion holds; then the peaks open in at least one
  training cell of the best groups, taken whole in order of their value until there are at least
  max(`refine_factor` · L, 16) of them (refine_factor 2), become the players of a second SAGE game, one peak each,
  with every other peak held at its observed value (sage's `remaining_features=1`) and the rest of the budget.
  A never-open peak is left out of that game: closing it changes no prediction, so its SAGE value is exactly 0.
  The ranking: the refined peaks by their peak-level value, then every other peak by its group's value; open
  frequency (then index) breaks exact ties only. info `refined_to` says how far refinement got ("peaks", or
  "groups" when the budget ended before one chunk of the peak game — then the job is flagged `partial_pass`).
* **Model calls.** sage's imputers hand over dense 0/1 rows; they go to the model's `predict` as sparse rows
  (~4 % of a row is open), which on the surrogate is ~10× cheaper than the dense path.

SAGE values are unsigned here (a group that raises the target when closed counts as much as one that lowers it).
Paper: Covert, Lundberg, Lee, "Understanding Global Feature Contributions With Additive Importance Measures",
NeurIPS 2020.
"""

from __future__ import annotations

import math

import numpy as np
import sage
import scipy.sparse as sp
from tqdm.auto import tqdm

from methods._shared import open_frequency
from methods.base import BudgetClock, Explainer, Explanation
from methods.registry import register
from surrogates.protocol import cell_types_of, read_peaks


class _OutOfTime(Exception):
    """Raised from the model wrapper to abort a sage chunk that would overrun the wall-time safety stop."""


class _FastInclusion:
    """Mixin for sage's grouped imputers: the per-peak inclusion mask is a gather through `group_of`."""

    group_of: np.ndarray  # (d,) group index of every peak; len(groups) for peaks in no group

    def inclusion_matrix(self, S):
        S = np.hstack((S, np.full((len(S), 1), bool(self.remaining))))
        return S[:, self.group_of]


class FastGroupedDefaultImputer(_FastInclusion, sage.GroupedDefaultImputer):
    def __init__(self, model, values, groups, group_of, remaining_features: int = 0):
        super().__init__(model, values, groups, remaining_features)
        self.group_of = group_of


class FastGroupedMarginalImputer(_FastInclusion, sage.GroupedMarginalImputer):
    def __init__(self, model, data, groups, group_of, remaining_features: int = 0):
        super().__init__(model, data, groups, remaining_features)
        self.group_of = group_of


def peak_groups(n_peaks: int, how: str | None, max_groups: int = 512, window: int | None = None,
                chrom_codes: np.ndarray | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """(groups, group_of): the peak indices of each group and each peak's group index."""
    if how is None:
        group_of = np.arange(n_peaks)
    elif how == "window":
        w = window or max(1, math.ceil(n_peaks / max_groups))
        group_of = np.arange(n_peaks) // w
    elif how == "chromosome":
        if chrom_codes is None:
            raise ValueError("groups='chromosome' needs the peaks' chromosome codes")
        group_of = np.asarray(chrom_codes, dtype=np.int64)
    else:
        raise ValueError("groups must be 'window', 'chromosome' or None")
    _, group_of = np.unique(group_of, return_inverse=True)
    order = np.argsort(group_of, kind="stable")
    bounds = np.searchsorted(group_of[order], np.arange(group_of.max() + 2))
    groups = [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    return groups, group_of


def _merge(acc, values, std, n):
    """Chan's parallel update of (n, mean, sum of squares); sage's std is sqrt(SS) / n."""
    ss = (np.asarray(std) * n) ** 2
    if acc is None:
        return n, np.asarray(values, dtype=np.float64).copy(), ss
    n0, m0, ss0 = acc
    tot = n0 + n
    delta = values - m0
    return tot, m0 + delta * n / tot, ss0 + ss + delta ** 2 * n0 * n / tot


@register("sage", paper="Covert et al., Understanding Global Feature Contributions With Additive Importance "
          "Measures", year=2020, kind="global", needs_gradients=False, ranking=True, version=2)
class Sage(Explainer):
    """SAGE: Shapley values of loss reduction by permutation sampling (sage-importance), over peak groups refined to
    peaks."""

    def __init__(self, groups: str | None = "window", max_groups: int = 512, window: int | None = None,
                 imputer: str = "default", n_background: int = 32, n_permutations: int = 256_000,
                 batch_size: int = 512, thresh: float = 0.025, max_batch_elements: int = 8_000_000,
                 refine: bool = True, coarse_share: float = 0.25, refine_factor: float = 2.0, **common):
        """
        Args:
            groups: "window", "chromosome" or None (one feature per peak). Default: "window".
            max_groups: with groups="window", the window is ceil(d / max_groups) peaks. Default: 512.
            window: fixed window size (overrides max_groups). Default: None.
            imputer: "default" (closing, reference all zeros) or "marginal". Default: "default".
            n_background: background cells for the marginal imputer. Default: 32.
            n_permutations: cap on sampled permutations per stage (the paper's 256,000 samples). Default: 256000.
            batch_size: permutations per estimator batch (paper 512), lowered to fit memory. Default: 512.
            thresh: sage's convergence threshold on max std / value range. Default: 0.025.
            max_batch_elements: cap on rows × peaks of any dense array. Default: 8000000.
            refine: refine the best groups to single peaks (a second SAGE game). Default: True.
            coarse_share: the share of the evaluation budget the group stage may use. Default: 0.25.
            refine_factor: the peak game has at least refine_factor · L players (and 16). Default: 2.0.
        """
        super().__init__(**common)
        if imputer not in ("default", "marginal"):
            raise ValueError("imputer must be 'default' or 'marginal'")
        if groups not in ("window", "chromosome", None):
            raise ValueError("groups must be 'window', 'chromosome' or None")
        if not 0 < coarse_share <= 1 or refine_factor < 1:
            raise ValueError("coarse_share must lie in (0, 1] and refine_factor be ≥ 1")
        self.groups, self.max_groups, self.window = groups, max_groups, window
        self.imputer, self.n_background = imputer, n_background
        self.n_permutations, self.batch_size, self.thresh = n_permutations, batch_size, thresh
        self.max_batch_elements = max_batch_elements
        self.refine, self.coarse_share, self.refine_factor = refine, coarse_share, refine_factor

    def explain(self, model, data, gene, L) -> Explanation:
        clock = BudgetClock(self.budget)
        rng = np.random.default_rng(self.seed)
        types = cell_types_of(data)
        if len(set(types)) > 1:  # sage's model is a function of the input row alone
            raise ValueError("SAGE explains one cell type's cells at a time (the harness passes one)")
        X_sp = data.atac
        d = X_sp.shape[1]
        chrom = data.chrom_codes()[0] if self.groups == "chromosome" else None
        groups, group_of = peak_groups(d, self.groups, self.max_groups, self.window, chrom)
        cell_type = str(types[0]) if len(types) else None
        freq = open_frequency(X_sp)
        refine = self.refine and self.groups is not None
        with model.evaluating():
            X = X_sp.toarray()  # uint8, cells × peaks: sage's imputers work on dense rows
            Y = model.predict(X_sp, genes=[gene], cell_types=types)[:, 0].double().cpu().numpy()
            clock.spend(X_sp.shape[0])
            target = self._model(model, gene, cell_type, d, clock)
            share = self.coarse_share if refine else 1.0
            coarse, run = self._game(target, X, Y, groups, group_of, False, rng, clock, gene,
                                     until=clock.samples + share * max(0, self.budget.samples - clock.samples))
            info = {"seconds": clock.seconds, "samples": clock.samples, **run, "thresh": self.thresh,
                    "n_groups": len(groups), "groups": self.groups, "imputer": self.imputer}
            if coarse is None:
                return Explanation.no_estimate(
                    {**info, "no_estimate_reason": f"not one chunk of {run['permutations_per_chunk']} permutations "
                                                   f"finished ({run['stopped_by']})"})
            values, std = coarse[1], np.sqrt(coarse[2]) / coarse[0]
            level, value = np.zeros(d), values[group_of]
            fine, fine_run, players = None, None, np.empty(0, dtype=np.int64)
            if refine:
                players = refinement_players(values, groups, freq, max(int(np.ceil(self.refine_factor * L)), 16))
                of_player = np.full(d, len(players))
                of_player[players] = np.arange(len(players))
                fine, fine_run = self._game(target, X, Y, [players[i:i + 1] for i in range(len(players))], of_player,
                                            True, rng, clock, gene, until=self.budget.samples)
                if fine is not None:  # the peak game's values rank its players ahead of every other peak
                    level[players], value[players] = 1, fine[1]
        peaks = rank_by(level, value, freq)[:L]
        info.update(seconds=clock.seconds, samples=clock.samples, max_std=float(np.max(std)),
                    refined_to="peaks" if fine is not None else "groups" if refine else "ungrouped")
        top_groups = np.unique(group_of[peaks])
        info.update(top_group_values=values[top_groups].tolist(), top_group_std=std[top_groups].tolist())
        converged = run["converged"]
        if refine:
            info["refinement"] = {**fine_run, "players": int(len(players))}
            converged = fine is not None and fine_run["converged"]
        stopped = (fine_run if refine and fine is not None else run)["stopped_by"]
        expl = Explanation(peaks=peaks, scores=value[peaks], info=info,
                           status="ok" if converged else "time_limit" if stopped == "time" else "not_converged")
        return expl.flag("partial_pass") if refine and fine is None else expl

    def _model(self, model, gene: str, cell_type: str | None, d: int, clock: BudgetClock):
        """numpy rows (0/1 over all peaks) → the target's prediction in `cell_type`, in row chunks of ≤
        max_batch_elements, through the model's sparse `predict`; raises `_OutOfTime` between row chunks once the
        wall-time safety stop has passed. A model that declares the peaks the gene reads (`read_peaks`) gets rows
        holding those columns' entries only: the same predictions, without scanning every column of the dense rows."""
        rows = max(1, self.max_batch_elements // max(1, d))
        read = read_peaks(model, gene)

        def sparse_rows(x: np.ndarray) -> sp.csr_matrix:
            if read is None:
                return sp.csr_matrix(x, dtype=np.uint8)
            part = sp.csr_matrix(x[:, read], dtype=np.uint8)
            return sp.csr_matrix((part.data, read[part.indices], part.indptr), shape=x.shape)

        def target(x: np.ndarray) -> np.ndarray:
            out = np.empty(len(x), dtype=np.float64)
            for start in range(0, len(x), rows):
                if clock.seconds > self.budget.seconds:
                    raise _OutOfTime
                part = sparse_rows(x[start:start + rows])
                out[start:start + rows] = model.predict(part, genes=[gene], cell_types=cell_type)[:, 0] \
                    .double().cpu().numpy()
            return out

        return target

    def _imputer(self, model, X: np.ndarray, groups, group_of, keep_rest: bool, rng):
        """(sage imputer for the configured removal and grouping, model calls per imputed row). `keep_rest`: peaks
        in no group keep their observed value (the refinement game) instead of being removed."""
        rest = int(keep_rest)
        if self.imputer == "marginal":
            bg = X[np.sort(rng.choice(len(X), size=min(self.n_background, len(X)), replace=False))]
            return (sage.MarginalImputer(model, bg) if self.groups is None
                    else FastGroupedMarginalImputer(model, bg, groups, group_of, rest)), len(bg)
        zeros = np.zeros(X.shape[1], dtype=X.dtype)
        return (sage.DefaultImputer(model, zeros) if self.groups is None
                else FastGroupedDefaultImputer(model, zeros, groups, group_of, rest)), 1

    def _game(self, target, X, Y, groups, group_of, keep_rest: bool, rng, clock: BudgetClock, gene: str,
              until: float):
        """One SAGE game over `groups`: chunks of permutations until sage's convergence criterion, the permutation
        cap, `until` evaluations on the clock or the budget; returns (merged (n, mean, SS) or None, run info)."""
        imputer, background = self._imputer(target, X, groups, group_of, keep_rest, rng)
        chunk = int(max(1, min(self.batch_size, self.max_batch_elements // max(1, X.shape[1] * background))))
        estimator = sage.PermutationEstimator(imputer, "mse")
        cost = (len(groups) + 1) * background
        acc, converged, stopped, chunks, done, ratio = None, False, "n_permutations", 0, 0, None
        bar = tqdm(total=self.n_permutations, desc=f"SAGE {gene} ({len(groups)} players)", disable=not self.progress,
                   leave=False)
        while done < self.n_permutations:
            if clock.exhausted() or clock.samples >= until:
                stopped = ("time" if clock.exhausted() and clock.stop_status() == "time_limit" else "budget")
                break
            k = int(min(chunk, self.n_permutations - done))
            estimator.random_state = int(rng.integers(2 ** 31 - 1))
            try:
                res = estimator(X, Y, batch_size=k, detect_convergence=False, n_permutations=k, bar=False)
            except _OutOfTime:
                stopped = "time"
                break
            acc = _merge(acc, res.values, res.std, k)
            done += k
            chunks += 1
            clock.spend(k * cost)
            n, mean, ss = acc
            ratio = float((np.sqrt(ss) / n).max() / max(mean.max() - mean.min(), 1e-12))
            bar.update(k)
            bar.set_postfix(ratio=f"{ratio:.3f}")
            if chunks >= 2 and ratio < self.thresh:
                converged, stopped = True, "converged"
                break
        bar.close()
        return acc, {"permutations": done, "chunks": chunks, "converged": converged, "stopped_by": stopped,
                     "std_ratio": ratio, "permutations_per_chunk": chunk}


def refinement_players(values: np.ndarray, groups, freq: np.ndarray, at_least: int) -> np.ndarray:
    """The peaks of the refinement game: the open (freq > 0) peaks of the best groups, whole groups in order of
    their value (ties by group index), until there are at least `at_least` (or no group is left)."""
    players: list[np.ndarray] = []
    count = 0
    for g in np.argsort(-np.asarray(values, dtype=np.float64), kind="stable"):
        if count >= at_least:
            break
        open_peaks = groups[g][freq[groups[g]] > 0]
        players.append(open_peaks)
        count += open_peaks.size
    return np.sort(np.concatenate(players)) if players else np.empty(0, dtype=np.int64)


def rank_by(level: np.ndarray, value: np.ndarray, freq: np.ndarray) -> np.ndarray:
    """Every peak: the higher refinement level first, then the higher value at that level, then the more often
    open, then the lower index."""
    return np.lexsort((np.arange(level.size), -freq, -value, -level))
