"""Faith-SHAP (Tsai, Yeh & Ravikumar, 2023) through shapiq: the Faithful Shapley Interaction Index of the closure
game, estimated by shapiq's `RegressionFSII`, then the subset its interactions say closes best.

The players are a few dozen candidate peaks of the gene (methods/_shapiq_game.py: the peaks the model reads when it
declares them, else the gene's cis window plus a first-order screen, never-open and dummy peaks dropped), explained
on up to 128 training cells (a seeded subsample). The game is the suppression of closing a coalition S in every
explained cell, v(S) = −Rel Δ (%) = −100 · mean_c expm1(ŷ_c(S) − ŷ_c), so v(∅) = 0.

FSII of order k = 2 is the best k-additive approximation of the game in the Shapley-kernel-weighted least squares
sense (Faith-Shap, Definition 2 and Theorem 3):

    φ = argmin_φ Σ_{S ⊆ N} μ(|S|) · (v(S) − Σ_{T ⊆ S, |T| ≤ k} φ_T)²,
    μ(s) = (n − 1) / (C(n, s) · s · (n − s)),   μ(0) = μ(n) = ∞,

whose order-1 terms are the Shapley values when the game is additive. shapiq's `RegressionFSII` (KernelSHAP-style)
samples `n_coalitions` coalitions (sizes from the Shapley kernel, small and large sizes enumerated first: the
border trick; each coalition with its complement: the pairing trick), evaluates them all in one batch and solves
the weighted least squares exactly. The pairing trick was chosen on development data (simulator seed 1, all 16
quick-scale truth-tier markers, method seed 0, test cells): 93.2 / 92.7 % of the optimum at L = 10 / 20 against
92.7 / 90.5 % without it, at the same cost (shapiq's default is without). A paired coalition informs the order-2
terms less than an independent one: below about two coalitions per unknown the design matrix loses rank (48
players, 2,048 coalitions: rank 1,072 of 1,177 paired, full unpaired), so pairing is used only with at least twice
as many coalitions as unknowns (947 at 43 players, the most a quick-scale marker has).

Because FSII is faithful, v̂(T) = Σ_{S ⊆ T} φ_S approximates the game on every T, and the answer is the T with
|T| ≤ L that maximises v̂ (greedy forward selection over players and whole interaction supports, then 1-swap local
search: a heuristic, `best_subset`), best member first; when nothing more helps before L peaks, the remaining
players by their order-1 values, then other peaks by open frequency (flagged `filled` only then).

Cost: cells × coalitions model evaluations (128 × 2,048 ≈ 2.6·10⁵), plus the first-order screen and the dummy
screen (cells × (2 · candidates + 1)). The evaluation budget caps the coalitions at samples // cells: below the
regression's unknowns (1 + n + C(n, 2)) there is no estimate (`no_estimate`); between that and `n_coalitions` the
estimate on fewer coalitions is returned as `budget_exceeded`.
Paper: Tsai, Yeh & Ravikumar, "Faith-Shap: The Faithful Shapley Interaction Index", JMLR 24(94), 2023.
Code: shapiq (Muschalik, Fumagalli et al., NeurIPS 2024 datasets & benchmarks), https://github.com/mmschlk/shapiq.
"""

from __future__ import annotations

import numpy as np

from methods._shapiq_game import (
    NoEstimate,
    TimeUp,
    approximate,
    best_subset,
    candidate_players,
    closure_game,
    fill_order,
    n_terms,
    top_terms,
)
from methods._shared import open_frequency, top_l
from methods.base import BudgetClock, Explainer, Explanation
from methods.registry import register


class ShapiqExplainer(Explainer):
    """Shared job of the shapiq explainers: cells, players, game, `estimate` (the approximator), selection."""

    max_order = 2

    def __init__(self, n_coalitions: int = 2048, max_players: int = 48, n_cells: int = 128, **common):
        super().__init__(**common)
        if n_coalitions < n_terms(max_players, self.max_order):
            raise ValueError(f"n_coalitions={n_coalitions} is below the {n_terms(max_players, self.max_order)} "
                             f"unknowns of an order-{self.max_order} estimate on max_players={max_players}")
        self.n_coalitions, self.max_players, self.n_cells = int(n_coalitions), int(max_players), int(n_cells)

    def needed(self, n: int) -> int:
        """The fewest coalitions an estimate on n players needs."""
        return min(n_terms(n, self.max_order), 2 ** n)

    def pairing(self, n: int, coalitions: int) -> bool:
        """Whether an estimate on n players from `coalitions` coalitions samples them in complementary pairs."""
        return False

    def approximator(self, n: int, coalitions: int):
        """The shapiq approximator of an estimate on n players from `coalitions` coalitions."""
        raise NotImplementedError

    def cells(self, data):
        """The explained cells: a seeded subsample of `n_cells` training cells when there are more."""
        if data.n_cells <= self.n_cells:
            return data
        return data.subset(np.sort(np.random.default_rng(self.seed).choice(data.n_cells, self.n_cells,
                                                                           replace=False)))

    def estimate(self, model, cells, gene: str, clock: BudgetClock, info: dict):
        """(players, interaction values {tuple(player positions): φ}, status) of one job; raises `NoEstimate` when
        the budget affords no estimate, `TimeUp` when the wall-time stop ends it first."""
        with model.evaluating():
            players = candidate_players(model, cells, gene, self.max_players, clock)
            n = len(players.peaks)
            info.update(players=int(n), player_source=players.source, path=players.evaluator.path, **players.info)
            if not n:
                return players, {}, "ok"
            requested = min(self.n_coalitions, 2 ** n)
            coalitions = min(requested, max(0, self.budget.samples - clock.samples) // cells.n_cells)
            if coalitions < self.needed(n):
                raise NoEstimate(f"the budget affords {coalitions} coalitions of {cells.n_cells} cells, below the "
                                 f"{self.needed(n)} an order-{self.max_order} estimate on {n} players needs")
            game = closure_game(players.evaluator, players.positions)
            info["pairing_trick"] = self.pairing(n, coalitions)
            iv = approximate(self.approximator(n, coalitions), game, max(2, coalitions))
            info["coalitions"] = int(game.n_coalitions)
        values = {tuple(int(p) for p in key): float(v) for key, v in iv.dict_values.items()}
        return players, values, "budget_exceeded" if coalitions < requested else "ok"

    def explain(self, model, data, gene, L) -> Explanation:
        clock = BudgetClock(self.budget)
        cells = self.cells(data)
        info: dict = {"samples": 0, "cells": int(cells.n_cells)}
        try:
            if clock.seconds > self.budget.seconds:
                raise TimeUp
            players, values, status = self.estimate(model, cells, gene, clock, info)
        except (NoEstimate, TimeUp) as stop:
            reason = str(stop) or "the wall-time safety stop ended the job before its estimate"
            return Explanation.no_estimate({**info, "samples": clock.samples, "seconds": clock.seconds,
                                            "no_estimate_reason": reason})
        if clock.seconds > self.budget.seconds:
            status = "time_limit"
        n = len(players.peaks)
        chosen, gains = best_subset(values, L)
        freq = open_frequency(cells.atac)
        first = np.array([values.get((i,), 0.0) for i in range(n)])
        order = list(chosen) + list(fill_order(chosen, first, freq[players.peaks]))[:L - len(chosen)]
        peaks = [int(p) for p in players.peaks[np.asarray(order, dtype=np.int64)]]
        scores = list(gains) + [float(first[i]) for i in order[len(chosen):]]
        filled = L - len(peaks)
        if filled:  # fewer players than L: the other peaks by open frequency
            rest = freq.copy()
            rest[np.asarray(peaks, dtype=np.int64)] = -1
            peaks += [int(p) for p in top_l(rest, filled)]
            scores += [0.0] * filled
        info.update(samples=clock.samples, seconds=clock.seconds, selected_by_search=len(chosen),
                    top_terms=top_terms(values, players.peaks))
        expl = Explanation(peaks=np.asarray(peaks, dtype=np.int64), scores=np.asarray(scores, dtype=np.float64),
                           status=status, info=info)
        if cells.n_cells < min(self.default("n_cells"), data.n_cells):
            expl.flag("fewer_cells")
        return expl.flag("filled") if filled else expl


@register("shapiq-fsii", paper="Tsai, Yeh & Ravikumar, Faith-Shap: The Faithful Shapley Interaction Index",
          year=2023, kind="interaction index", needs_gradients=True, code_url="https://github.com/mmschlk/shapiq",
          version=1)
class ShapiqFsii(ShapiqExplainer):
    """Faith-SHAP: order-2 Faithful Shapley interactions of the closure game (shapiq RegressionFSII) → best subset."""

    def __init__(self, n_coalitions: int = 2048, max_players: int = 48, n_cells: int = 128,
                 pairing_trick: bool = True, **common):
        """
        Args:
            n_coalitions: coalitions the regression evaluates (each on every explained cell). Default: 2048.
            max_players: most candidate peaks (players). Default: 48 (1,177 order-≤2 unknowns).
            n_cells: training cells explained (a seeded subsample when there are more). Default: 128.
            pairing_trick: sample each coalition with its complement (shapiq's option), when there are at least
                twice as many coalitions as unknowns. Default: True.
        """
        super().__init__(n_coalitions=n_coalitions, max_players=max_players, n_cells=n_cells, **common)
        self.pairing_trick = bool(pairing_trick)

    def approximator(self, n: int, coalitions: int):
        import shapiq  # lazily (methods/_shapiq_game.py `_closure_game_class`)

        return shapiq.RegressionFSII(n=n, max_order=min(self.max_order, n), pairing_trick=self.pairing(n, coalitions),
                                     random_state=self.seed)

    def pairing(self, n: int, coalitions: int) -> bool:
        # paired coalitions inform less each: below ~2 per unknown the order-2 design loses rank (module docstring)
        return self.pairing_trick and coalitions >= 2 * n_terms(n, self.max_order)
