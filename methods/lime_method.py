"""LIME (Ribeiro et al., 2016) through the `lime` package, made global by a submodular pick.

Per explained cell (default 32 training cells of the type, drawn with the method's seed):

* **Interpretable representation.** One binary feature per peak that is *open* in the cell (a closed peak cannot
  be perturbed by closing, so it carries no local information). z = 1 keeps the peak open, z = 0 closes it.
* **Neighbourhood.** 1,024 samples, the first one the cell itself (all ones, as LIME requires). Each other sample
  closes every open peak independently with a rate f ~ U(0, 1) drawn per sample, so the number of closed peaks is
  spread over 0…n_open like `lime_text`'s uniform count of removed words, at O(samples × n_open) cost.
* **Distance and kernel.** Cosine distance to the original, as `lime_text`/`lime_image` use for binary
  representations: d = 1 − sqrt(kept / n_open). Kernel = LIME's exponential kernel sqrt(exp(−d² / w²)) with
  `kernel_width` w = 0.25 — the width `lime_image` uses with cosine distance (`lime_text` uses 25 on 100 × the
  cosine distance, the same thing). `lime_tabular`'s 0.75·sqrt(n_features) is for Euclidean distances on
  standardised data; on a cosine distance ∈ [0, 1] it would make every neighbour weigh the same.
* **Labels.** The explained model's predicted log-expression of the target gene for every neighbour (in the
  cell's type). On a model with an additive first layer (the surrogate; `AdditiveHidden` in
  surrogates/protocol.py) with the identity a(z) = a(x) − Σ_{j closed} U_j: one (samples × n_open) @
  (n_open × hidden) product, then the layers after the first for the target gene only; on any other model, one
  `predict` of the neighbours as sparse rows — the same labels.
* **Fit.** `lime.lime_base.LimeBase.explain_instance_with_data` (LIME's kernel weighting, feature selection and
  weighted ridge), num_features = L. Feature selection defaults to "highest_weights" (LIME's "auto" picks
  "forward_selection" for L ≤ 6, which fits L × n_open ridge models: infeasible at thousands of open peaks).

**Sign.** A positive coefficient on "open" means closing the peak lowers the target; only positive coefficients
count towards the global explanation (`sign="positive"`, default; `sign="abs"` uses |coefficient| as SP-LIME does).

**Global explanation (SP-LIME).** The explanation matrix W (explained cells × peaks, the per-cell coefficients)
gives the global importance I_j = sqrt(Σ_c |W_cj|) (LIME's SubmodularPick). `aggregate="submodular"` (default)
runs SubmodularPick's greedy coverage pick over the cells: each pick adds the cell whose explanation most increases
the coverage Σ_j I_j·[j covered]; the peaks a pick newly covers join the ranking in order of I_j, until L peaks are
ranked (then the remaining peaks by I_j, then by how often they are open). `aggregate="importance"` ranks all
peaks by I_j directly. Status `budget_exceeded` (evaluation budget) or `time_limit` (wall-time safety stop)
when the clock stops before every planned cell is explained.
Paper: Ribeiro, Singh, Guestrin, "Why Should I Trust You?: Explaining the Predictions of Any Classifier", KDD 2016.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from lime.lime_base import LimeBase
from tqdm.auto import tqdm

from methods._shared import open_frequency, rank_peaks
from methods.base import BudgetClock, Explainer, Explanation
from methods.registry import register
from surrogates.protocol import AdditiveHidden, cell_types_of, fast_path


def exponential_kernel(width: float):
    """LIME's kernel: sqrt(exp(−d² / width²)) (as in lime_tabular / lime_text / lime_image)."""

    def kernel(d: np.ndarray) -> np.ndarray:
        return np.sqrt(np.exp(-(d ** 2) / width ** 2))

    return kernel


@register("lime", paper="Ribeiro et al., Why Should I Trust You?", year=2016, kind="local→global",
          needs_gradients=False, version=1)
class Lime(Explainer):
    """LIME: sparse local linear models around cells (lime's LimeBase), aggregated by submodular pick."""

    def __init__(self, n_cells: int = 32, n_samples: int = 1024, kernel_width: float = 0.25,
                 feature_selection: str = "highest_weights", sign: str = "positive",
                 aggregate: str = "submodular", **common):
        """
        Args:
            n_cells: training cells explained locally. Default: 32.
            n_samples: neighbourhood size per cell, the cell itself included. Default: 1024.
            kernel_width: width of LIME's exponential kernel on the cosine distance. Default: 0.25.
            feature_selection: LimeBase's selection ("highest_weights", "lasso_path", "forward_selection",
                "auto", "none"). Default: "highest_weights".
            sign: "positive" (only coefficients whose closure lowers the target) or "abs". Default: "positive".
            aggregate: "submodular" (SP-LIME coverage pick) or "importance" (sqrt Σ|W|). Default: "submodular".
        """
        super().__init__(**common)
        if sign not in ("positive", "abs"):
            raise ValueError("sign must be 'positive' or 'abs'")
        if aggregate not in ("submodular", "importance"):
            raise ValueError("aggregate must be 'submodular' or 'importance'")
        if n_cells < 1 or n_samples < 2 or kernel_width <= 0:
            raise ValueError("n_cells ≥ 1, n_samples ≥ 2 and kernel_width > 0 are required")
        self.n_cells, self.n_samples, self.kernel_width = n_cells, n_samples, kernel_width
        self.feature_selection, self.sign, self.aggregate = feature_selection, sign, aggregate

    # ------------------------------------------------------------------ local explanations
    def explain(self, model, data, gene, L) -> Explanation:
        clock = BudgetClock(self.budget)
        rng = np.random.default_rng(self.seed)
        gi = model.gene_index(gene)
        types = cell_types_of(data)
        X = data.atac
        n_cells, n_peaks = X.shape
        cells = np.sort(rng.choice(n_cells, size=min(self.n_cells, n_cells), replace=False))
        lime = LimeBase(exponential_kernel(self.kernel_width), random_state=int(rng.integers(2 ** 31 - 1)))
        rows: list[dict[int, float]] = []
        r2: list[float] = []
        status = "ok"
        bar = tqdm(cells, desc=f"LIME {gene}", disable=not self.progress, leave=False)
        with model.evaluating():
            for c in bar:
                if clock.exhausted():
                    status = clock.stop_status()
                    break
                open_peaks = X.indices[X.indptr[c]:X.indptr[c + 1]].astype(np.int64)
                if open_peaks.size == 0:
                    continue
                Z, dist, y = self._neighbourhood(model, gi, X[c], str(types[c]), open_peaks, rng)
                clock.spend(len(y))
                _, exp, score, _ = lime.explain_instance_with_data(
                    Z, y[:, None], dist, label=0, num_features=min(L, open_peaks.size),
                    feature_selection=self.feature_selection)
                rows.append({int(open_peaks[f]): float(w) for f, w in exp})
                r2.append(float(score))
        bar.close()

        info = {"seconds": clock.seconds, "samples": clock.samples, "cells_explained": len(rows),
                "cells_planned": len(cells), "mean_local_r2": float(np.mean(r2)) if r2 else None,
                "kernel_width": self.kernel_width, "feature_selection": self.feature_selection,
                "aggregate": self.aggregate, "sign": self.sign,
                "mean_open_peaks": float(np.mean(np.diff(X.indptr)[cells])) if len(cells) else 0.0}
        if not rows:  # not one local explanation: an open-frequency ranking would not be LIME's answer
            return Explanation.no_estimate({**info, "no_estimate_reason": "no cell explained within the budget"})
        peaks, scores, picks, filled = self._aggregate(rows, L, n_peaks, open_frequency(X))
        expl = Explanation(peaks=peaks, scores=scores, status=status,
                           info={**info, "submodular_picks": picks, "peaks_filled_by_open_frequency": filled})
        if len(rows) < min(self.default("n_cells"), n_cells):  # a profile's cap or the budget: fewer local models
            expl.flag("fewer_cells")
        return expl.flag("filled") if filled else expl

    @torch.no_grad()
    def _neighbourhood(self, model, gi: int, x_row, cell_type: str, open_peaks, rng, chunk: int = 256):
        """Binary samples over the open peaks (row 0 = the cell), their cosine distances and target predictions."""
        n_open = open_peaks.size
        rate = rng.random(self.n_samples)
        rate[0] = 0.0
        Z = (rng.random((self.n_samples, n_open)) >= rate[:, None]).astype(np.float32)
        kept = Z.sum(axis=1)
        dist = 1.0 - np.sqrt(kept / n_open)
        y = np.empty(self.n_samples, dtype=np.float64)
        fast = fast_path(model, AdditiveHidden)
        if fast is not None:
            dev = model.device
            a0 = fast.first_hidden(fast.sparse_batch(x_row))  # 1 × hidden
            U = fast.peak_hidden(torch.as_tensor(open_peaks, device=dev))  # n_open × hidden
            for start in range(0, self.n_samples, chunk):
                z = torch.as_tensor(Z[start:start + chunk], device=dev)
                y[start:start + chunk] = fast.head(a0 + (z - 1.0) @ U, [gi])[:, 0].double().cpu().numpy()
        else:  # each neighbour as a sparse row: the cell with its peaks where z = 0 closed
            gene = model.gene_names[gi]
            for start in range(0, self.n_samples, chunk):
                rows = sp.csr_matrix(Z[start:start + chunk] * 1, dtype=np.uint8)
                rows = sp.csr_matrix((rows.data, open_peaks[rows.indices], rows.indptr),
                                     shape=(rows.shape[0], x_row.shape[1]))
                rows.sort_indices()
                y[start:start + chunk] = model.predict(rows, genes=[gene], cell_types=cell_type)[:, 0].double() \
                    .cpu().numpy()
        return Z.astype(np.float64), dist, y

    # ------------------------------------------------------------------ global explanation
    def _aggregate(self, rows, L, n_peaks, freq):
        W_peaks = np.array(sorted({p for r in rows for p in r}), dtype=np.int64)
        col = {p: k for k, p in enumerate(W_peaks)}
        W = np.zeros((len(rows), len(W_peaks)))
        for i, r in enumerate(rows):
            for p, w in r.items():
                W[i, col[p]] = max(w, 0.0) if self.sign == "positive" else abs(w)
        importance = np.zeros(n_peaks)
        importance[W_peaks] = np.sqrt(W.sum(axis=0))
        ranked: list[int] = []
        picks = 0
        if self.aggregate == "submodular" and len(rows):
            covered = np.zeros(len(W_peaks), dtype=bool)
            remaining = set(range(len(rows)))
            I = importance[W_peaks]
            while remaining and len(ranked) < L:
                gains = {i: float(I[~covered & (W[i] > 0)].sum()) for i in remaining}
                best = max(sorted(gains), key=lambda i: gains[i])  # first best, deterministic
                if gains[best] <= 0:
                    break
                new = np.flatnonzero(~covered & (W[best] > 0))
                ranked.extend(W_peaks[new[np.argsort(-I[new], kind="stable")]].tolist())
                covered |= W[best] > 0
                remaining.discard(best)
                picks += 1
        # fill: remaining peaks by global importance, then by open frequency, then by index
        taken = np.zeros(n_peaks, dtype=bool)
        taken[ranked] = True
        rest = rank_peaks(importance, tiebreak=freq)
        fill = rest[~taken[rest]][: max(0, L - len(ranked))]
        ranked.extend(fill.tolist())
        peaks = np.asarray(ranked[:L], dtype=np.int64)
        return peaks, importance[peaks], picks, int((importance[fill] == 0).sum())
