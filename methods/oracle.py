"""Oracle: the control that sees the simulator's truth, bounding every table from the other side of Random.

On synthetic data the planted regulation of each gene is known (`datasets.synthetic.SyntheticTruth`). The oracle
closes the subset of at most L of the gene's planted peaks that lowers its *true* mean expression the most on the
training cells of the type, found exactly by `SyntheticTruth.best_closure` (a multiple-choice knapsack over the
gene's redundant groups and single enhancers, for the promoter open and closed). When L exceeds the number of
planted peaks it closes all of them and tops up with background peaks drawn at random (seeded per job, like
`random`).

With `objective="rel_delta"` (the truth tier's setting, bench/config.py) it minimises the training cells' Rel Δ
instead of their mean expression: each cell weighs 1 / (1 + E_c), which is what Rel Δ = mean_c (E'_c − E_c) /
(1 + E_c) does on the truth model's log1p(E) outputs, so it is the optimum of the tier's metric on the training
cells.

It is flagged a control (`is_baseline`) that needs the truth (`needs_truth`): the harness hands it `truth=` and it
runs on synthetic data only. Its surrogate Rel Δ shows what the surrogate makes of the truly best closure, its
oracle Rel Δ what the best closure of planted peaks achieves on the training cells (on the test cells another
subset can do slightly better; background peaks change nothing under the truth).
"""

from __future__ import annotations

import numpy as np

from methods.base import Explainer, Explanation
from methods.random_subset import job_seed
from methods.registry import register


@register("oracle", paper="control: best closure under the simulator's truth", kind="control", is_baseline=True,
          needs_truth=True, version=1)
class Oracle(Explainer):
    """Oracle: the best closure of L planted peaks under the simulator's truth (synthetic data only)."""

    def __init__(self, truth=None, objective: str = "mean", **common):
        """truth: the simulator's `SyntheticTruth` (passed by the harness). Default: None (then `explain` raises).
        objective: "mean" (the training cells' mean true expression) or "rel_delta" (their Rel Δ on log1p(E)).
        Default: "mean"."""
        super().__init__(**common)
        if objective not in ("mean", "rel_delta"):
            raise ValueError("objective must be 'mean' or 'rel_delta'")
        self.truth, self.objective = truth, objective

    def explain(self, model, data, gene, L) -> Explanation:
        if self.truth is None:
            raise ValueError("the oracle control needs the simulator's truth: it runs on the synthetic data only")
        weights = None
        if self.objective == "rel_delta":
            weights = 1.0 / (1.0 + self.truth.expression(data, genes=[gene])[:, 0])
        best, left = self.truth.best_closure(data, gene, L, weights=weights)
        peaks = list(best)
        if len(peaks) < L:  # every planted peak is closed: top up with random background peaks
            cell_types = [str(ct) for ct in data.obs["cell_type"].unique()]
            rng = np.random.default_rng(job_seed(self.seed, cell_types, gene, L))
            rest = np.flatnonzero(~self.truth.planted_mask(data.n_peaks))
            if rest.size < L - len(peaks):  # a toy with almost no background: any other peak will do
                rest = np.setdiff1d(np.arange(data.n_peaks), best)
            peaks += rng.choice(rest, size=L - len(peaks), replace=False).tolist()
        return Explanation(peaks=np.asarray(peaks), info={"samples": 0, "planted_closed": int(len(best)),
                                                          "oracle_fraction_left_train": float(left)})
