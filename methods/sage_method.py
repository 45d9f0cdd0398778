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
* **Model wrapper.** numpy (rows × d) 0/1 → the explained model's dense path (`dense`, surrogates/protocol.py;
  the surrogate computes the target's decoder row only) → the target gene, in the explained cell type, in row chunks of
  ≤ `max_batch_elements` / d (8M entries, i.e. ≤ 64 cells at 127k peaks), without gradients. sage's own batch
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
* **Peak scores.** Each peak gets its group's SAGE value; within a group (and among equal values) peaks are
  ordered by how often they are open in the training cells, then by index; top L.

SAGE values are unsigned here (a group that raises the target when closed counts as much as one that lowers it).
Paper: Covert, Lundberg, Lee, "Understanding Global Feature Contributions With Additive Importance Measures",
NeurIPS 2020.
"""

from __future__ import annotations

import math

import numpy as np
import sage
import torch
from tqdm.auto import tqdm

from methods._shared import open_frequency, top_l
from methods.base import BudgetClock, Explainer, Explanation
from methods.registry import register
from surrogates.protocol import cell_types_of


class _OutOfTime(Exception):
    """Raised from the model wrapper to abort a sage chunk that would overrun the wall-time safety stop."""


class _FastInclusion:
    """Mixin for sage's grouped imputers: the per-peak inclusion mask is a gather through `group_of`."""

    group_of: np.ndarray  # (d,) group index of every peak; len(groups) for peaks in no group

    def inclusion_matrix(self, S):
        S = np.hstack((S, np.full((len(S), 1), bool(self.remaining))))
        return S[:, self.group_of]


class FastGroupedDefaultImputer(_FastInclusion, sage.GroupedDefaultImputer):
    def __init__(self, model, values, groups, group_of):
        super().__init__(model, values, groups)
        self.group_of = group_of


class FastGroupedMarginalImputer(_FastInclusion, sage.GroupedMarginalImputer):
    def __init__(self, model, data, groups, group_of):
        super().__init__(model, data, groups)
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
          "Measures", year=2020, kind="global", needs_gradients=False, ranking=True, version=1)
class Sage(Explainer):
    """SAGE: Shapley values of loss reduction by permutation sampling (sage-importance), over peak groups."""

    def __init__(self, groups: str | None = "window", max_groups: int = 512, window: int | None = None,
                 imputer: str = "default", n_background: int = 32, n_permutations: int = 256_000,
                 batch_size: int = 512, thresh: float = 0.025, max_batch_elements: int = 8_000_000, **common):
        """
        Args:
            groups: "window", "chromosome" or None (one feature per peak). Default: "window".
            max_groups: with groups="window", the window is ceil(d / max_groups) peaks. Default: 512.
            window: fixed window size (overrides max_groups). Default: None.
            imputer: "default" (closing, reference all zeros) or "marginal". Default: "default".
            n_background: background cells for the marginal imputer. Default: 32.
            n_permutations: cap on sampled permutations (the paper's 256,000 samples). Default: 256000.
            batch_size: permutations per estimator batch (paper 512), lowered to fit memory. Default: 512.
            thresh: sage's convergence threshold on max std / value range. Default: 0.025.
            max_batch_elements: cap on rows × peaks of any dense array. Default: 8000000.
        """
        super().__init__(**common)
        if imputer not in ("default", "marginal"):
            raise ValueError("imputer must be 'default' or 'marginal'")
        if groups not in ("window", "chromosome", None):
            raise ValueError("groups must be 'window', 'chromosome' or None")
        self.groups, self.max_groups, self.window = groups, max_groups, window
        self.imputer, self.n_background = imputer, n_background
        self.n_permutations, self.batch_size, self.thresh = n_permutations, batch_size, thresh
        self.max_batch_elements = max_batch_elements

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
        with model.evaluating():
            X = X_sp.toarray()  # uint8, cells × peaks: sage's imputers work on dense rows
            Y = model.predict(X_sp, genes=[gene], cell_types=types)[:, 0].double().cpu().numpy()
            clock.spend(X_sp.shape[0])
            imputer, background = self._imputer(self._model(model, gene, cell_type, d, clock), X, groups, group_of,
                                                rng)
            chunk = int(max(1, min(self.batch_size, self.max_batch_elements // max(1, d * background))))
            acc, run = self._estimate(sage.PermutationEstimator(imputer, "mse"), X, Y, chunk, rng, clock, gene,
                                      (len(groups) + 1) * background)
        info = {"seconds": clock.seconds, "samples": clock.samples, **run, "permutations_per_chunk": chunk,
                "thresh": self.thresh, "n_groups": len(groups), "groups": self.groups, "imputer": self.imputer}
        if acc is None:
            return Explanation.no_estimate(
                {**info, "no_estimate_reason": f"not one chunk of {chunk} permutations finished ({run['stopped_by']})"})
        values, std = acc[1], np.sqrt(acc[2]) / acc[0]
        peak_value = values[group_of]
        peaks = top_l(peak_value, L, tiebreak=open_frequency(X_sp))
        top_groups = np.unique(group_of[peaks])
        return Explanation(
            peaks=peaks, scores=peak_value[peaks],
            status="ok" if run["converged"] else "time_limit" if run["stopped_by"] == "time" else "not_converged",
            info={**info, "max_std": float(np.max(std)), "top_group_values": values[top_groups].tolist(),
                  "top_group_std": std[top_groups].tolist()},
        )

    def _model(self, model, gene: str, cell_type: str | None, d: int, clock: BudgetClock):
        """numpy rows (0/1 over all peaks) → the target's prediction in `cell_type`, in row chunks of ≤
        max_batch_elements; raises `_OutOfTime` between row chunks once the wall-time safety stop has passed."""
        rows = max(1, self.max_batch_elements // max(1, d))

        @torch.no_grad()
        def target(x: np.ndarray) -> np.ndarray:
            out = np.empty(len(x), dtype=np.float64)
            for start in range(0, len(x), rows):
                if clock.seconds > self.budget.seconds:
                    raise _OutOfTime
                xt = torch.as_tensor(np.ascontiguousarray(x[start:start + rows]), device=model.device).float()
                y = model.dense(xt, genes=[gene], cell_types=cell_type)[:, 0]
                out[start:start + rows] = y.double().cpu().numpy()
            return out

        return target

    def _imputer(self, model, X: np.ndarray, groups, group_of, rng):
        """(sage imputer for the configured removal and grouping, model calls per imputed row)."""
        if self.imputer == "marginal":
            bg = X[np.sort(rng.choice(len(X), size=min(self.n_background, len(X)), replace=False))]
            return (sage.MarginalImputer(model, bg) if self.groups is None
                    else FastGroupedMarginalImputer(model, bg, groups, group_of)), len(bg)
        zeros = np.zeros(X.shape[1], dtype=X.dtype)
        return (sage.DefaultImputer(model, zeros) if self.groups is None
                else FastGroupedDefaultImputer(model, zeros, groups, group_of)), 1

    def _estimate(self, estimator, X, Y, chunk: int, rng, clock: BudgetClock, gene: str, cost_per_permutation: int):
        """Chunks of `chunk` permutations until sage's convergence criterion, the permutation cap or the budget;
        returns (merged (n, mean, SS) or None, run info)."""
        acc, converged, stopped, chunks, done, ratio = None, False, "n_permutations", 0, 0, None
        bar = tqdm(total=self.n_permutations, desc=f"SAGE {gene}", disable=not self.progress, leave=False)
        while done < self.n_permutations:
            if clock.exhausted():
                stopped = "budget" if clock.stop_status() == "budget_exceeded" else "time"
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
            clock.spend(k * cost_per_permutation)
            n, mean, ss = acc
            ratio = float((np.sqrt(ss) / n).max() / max(mean.max() - mean.min(), 1e-12))
            bar.update(k)
            bar.set_postfix(ratio=f"{ratio:.3f}")
            if chunks >= 2 and ratio < self.thresh:
                converged, stopped = True, "converged"
                break
        bar.close()
        return acc, {"permutations": done, "chunks": chunks, "converged": converged, "stopped_by": stopped,
                     "std_ratio": ratio}
