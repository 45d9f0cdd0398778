"""GRIDS-groups: GRIDS's coordinate descent plus moves that close a whole group of peaks at once (ejection chains).

GRIDS (methods/grids.py) swaps one peak a step. Under redundancy that is a local optimum trap: closing the first
member of a group of m enhancers that back each other up gains nothing while the other members stay open, so a
one-peak swap that trades a closed single enhancer for it is rejected, and the group is never assembled (quick truth
tier, L = 10: GRIDS closes 0.4 three-member groups per job where the optimum closes 1.0). This method keeps every
GRIDS step as it is and adds, each step, `chains` ejection chains (Glover's compound moves for subset problems),
the first started at the step's best candidate j₁ by eq. 4 gain, each other one at a uniform draw j₁ among the
step's top_k candidates (a member of a 4-member group gains alone only in the cells where its three partners are
closed, ~6 % of them here, so it is rarely the best candidate). With r the incumbent subset and g its gains,

    r₁ = r − {e₁} + {j₁},   e₁ = argmin_{m ∈ r} g_m           (the closed peak whose re-opening costs least)
    r_t = r_{t−1} − {e_t} + {j_t},  t = 2 … depth,
    j_t = argmax_{k ∉ r_{t−1}} (g_k(r_{t−1}) − g_k(r))        (the peak whose gain rose most once the chain's peaks
                                                                 were closed: the partner of a group member)
    e_t = argmin_{m ∈ r_{t−1} − {j₁ … j_{t−1}}} g_m(r_{t−1}),

each g(r_t) from one more gradient pass on the step's batch (the same eq. 4 gains as GRIDS's, in the chain's closed
context). For a group of three OR-redundant members a, b, c: closing a raises b's and c's gains in the cells where
the third is closed; with a and b closed, c's gain is the whole group's effect, so the chain closes all three in
three links. A chain's subsets r₁ … r_depth are scored with eq. 2 on the batch (each link's gradient pass also gives
its subset's objective) and the best of GRIDS's candidates and every chain prefix replaces the incumbent
if it lowers the objective. A chain ends early when no peak's gain rose. Everything else — eq. 2, the batches, the
candidates, the steps (`default_steps`), the final leave-one-out order, the paths per model kind — is GRIDS's.

Budget: a GRIDS step costs batch × (top_k + 1) model evaluations; each link adds batch (its gradient pass), so the
default (2 chains of at most 4 links: the simulator's groups have up to 4 members) adds at most 2 · 4 · 64 = 512 to
GRIDS's 2,112 per step at the same steps: at most 1.24× GRIDS's evaluations.
Chosen on development data (simulator seed 1, quick truth tier, all 16 markers, % of the exact optimum at L = 3 /
5 / 10 / 20): one chain from the best candidate 97.6 / 98.6 / 98.1 / 97.1; two, the second from a draw, 99.3 /
97.5 / 98.4 / 98.4 (GRIDS 95.4 / 95.2 / 94.0 / 94.4); depth 3 lost 2 points at L = 10 (96.1), depth 5–6 gained
nothing clear (97.7, 98.5); continuing a chain without a partner by the best plain gain lost 0.9.
Not in the paper: GRIDS is Liu et al., ACML 2024; ejection chains: Glover, "Ejection chains, reference structures
and alternating path methods for traveling salesman problems", Discrete Applied Mathematics 65 (1996).
"""

from __future__ import annotations

import numpy as np
import torch

from methods.grids import Grids, best_candidate
from methods.registry import register


@register("grids-groups", paper="GRIDS (Liu et al., 2024) with ejection-chain group moves (Glover, 1996)",
          year=2024, kind="subset search", needs_gradients=True, version=1)
class GridsGroups(Grids):
    """GRIDS plus multi-peak moves (ejection chains guided by gains in the chain's closed context)."""

    def __init__(self, chains: int = 2, depth: int = 4, **kwargs):
        """chains: ejection chains started per step: the first at the step's best candidate by gain, the others at
        uniform draws among its `top_k` candidates. Default: 2.
        depth: links per chain (peaks one chain can swap; the simulator's groups have up to 4 members). Default: 4."""
        super().__init__(**kwargs)
        if chains < 0 or depth < 1:
            raise ValueError("chains must be ≥ 0 and depth ≥ 1")
        self.chains, self.depth = int(chains), int(depth)

    def explain(self, model, data, gene, L):
        self._draws = np.random.default_rng([self.seed, 7])  # the chains' own stream: GRIDS's draws stay as they are
        return super().explain(model, data, gene, L)

    def group_move(self, search, batch, in_r, r, y0, genes, gain, cand, clock):
        depth = min(self.depth, len(r))
        if self.chains == 0 or depth < 2:  # with one slot a chain is a single swap, which GRIDS already scores
            return None
        n_cells = len(y0)
        best = None
        # the first chain starts at the step's best candidate, every other one at a uniform draw among its top_k:
        # a member of a larger group gains little alone (a 4-member group's, in ~6 % of cells here), so it is
        # rarely first
        starts = [int(cand[0])] + [int(cand[int(i)]) for i in self._draws.integers(len(cand), size=self.chains - 1)]
        for j1 in dict.fromkeys(starts):
            for closure, loss in self._chain(search, batch, r, y0, genes, gain, int(j1), depth, n_cells, clock):
                if best is None or loss < best[1] - 1e-12:
                    best = (closure, loss)
        return best

    def _chain(self, search, batch, r, y0, genes, g0, j1: int, depth: int, n_cells: int, clock):
        """The subsets r₁ … r_depth of the chain started at j₁ with their objectives on the batch (a generator:
        each link is one gradient pass, counted on the clock)."""
        in_r = torch.zeros_like(g0, dtype=torch.bool)
        in_r[torch.as_tensor(r, device=in_r.device)] = True
        closure = r.copy()
        added = torch.zeros_like(in_r)
        g, j = g0, j1
        for t in range(depth):
            # eject the closed peak (not one this chain added) whose re-opening costs least in the current context
            cost = g.masked_fill(~in_r | added, torch.inf)
            e = int(torch.argmin(cost))
            closure[int(np.flatnonzero(closure == e)[0])] = j
            in_r[e], in_r[j], added[j] = False, True, True
            _, per_cell, g = search.gains(batch, in_r, y0, genes)
            clock.spend(n_cells)
            yield closure.copy(), float(per_cell.double().mean())
            if t + 1 == depth:
                break
            rise = (g - g0).masked_fill(in_r, -torch.inf)
            every = torch.arange(len(rise), device=rise.device)
            k = int(best_candidate(every, -rise))
            if not float(rise[k]) > 0:  # nothing became worth more with the chain's peaks closed: no partner
                break
            j = k
