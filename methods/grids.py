"""GRIDS: gradient-guided coordinate descent over subsets of L peaks (Liu et al., Algorithm 1).

Keeps a subset r of L distinct peaks closed (p = 0) and, one slot per step (slot = step mod L):

1. samples a batch of training cells of the target type (default 64) and evaluates the objective (eq. 2)
       ℒ = mean_c (ŷ_r,i / ŷ_i)² + β/(G−1) Σ_{j≠i} (ŷ_r,j / ŷ_j − 1)²      (β = 0.1)
   where ŷ is the surrogate's log-scale prediction without closure and ŷ_r with r closed, each ratio taken with
   a pseudo-count of 1 (see RATIO_PSEUDOCOUNT); `objective="mean"` minimises the plain mean predicted target
   expression instead (the released reference code);
2. gets the eq. 4 gains of every peak from one backward pass: with closure expressed as zero
   `per_sample_weights` of the surrogate's embedding bag, g_j = Σ_c ∂ℒ/∂w_cj is the first-order loss
   decrease from closing j (and the loss increase from re-opening a closed one), so the transition advantage of
   swapping slot i for j is g_j − g_{r_i} (computed as ⟨Σ_{c: x_cj = 1} ∂ℒ/∂s_c,chr(j), Δ_j⟩ from the gradient
   of the per-chromosome embedding sums s, see `peak_gains`);
3. takes the top-k (32) candidates j ∉ r and scores each swapped subset with the *true* objective,
   incrementally: a swap changes the first hidden pre-activation by two rank-1 terms (+x_{r_i} U_{r_i} − x_j U_j),
   so only the layers after the first are re-run, and only for the cells where x_{r_i} or x_j is open (the others
   keep the incumbent's value); keeps the best of the candidates and the incumbent.
   With `off_target_genes=m` the incumbent and the candidates of a step are scored on the target and one uniform
   draw of m off-target genes (an unbiased estimate of eq. 2's off-target term at m/G of the output cost); the
   default scores every gene. With `sampled_gains` the step draws that sample first and step 2's gains are the
   gradient of the same sampled objective (an unbiased estimate of eq. 4's, at m/G of the decoder's output and its
   backward); without it the gains use every gene.

Steps 2 and 3 as written use the surrogate's embedding bags and additive first layer (fast paths of the model
protocol, surrogates/protocol.py). There step 1's first pre-activation is each explained cell's with every peak
open (embedded once per job) minus Σ_{j ∈ r} x_cj U_j, the same up to float32 rounding as embedding the batch
with r's entries weighted 0, without a pass over the batch's ~300k open entries (`_BagSearch`). On any other model (the truth tier, a user's model) the same quantities come
from the protocol alone: the gains from autograd of the dense path, g_j = Σ_c x_cj ∂ℒ/∂x_cj at the batch with r
closed, and each swapped subset's objective from `predict` on the cells the swap changes (tests/test_protocol.py:
the same peaks either way). On a model whose outputs each read a few peaks (the `ClosedForm` fast path: the truth
model), both are computed on the genes that can move — the target and the readers of the closed peaks for the
gains, the readers of the swapped pair for a swap — over the peaks those genes read, with the model's closed-form
gradients (`_LocalSearch`; tests/test_closed_form.py: the same peaks and scores as the generic path to 1e-9).
Candidates whose objectives tie within 1e-12 (equivalent peaks, such as two members of one AND unit) go to the
lower peak index, so no path's rounding in the gains decides between them.

Default steps follow the paper (500 for L = 10, 5,000 for L = 128; min(5000, max(500, 50 L)) in general).
The final subset is ordered by each peak's leave-one-out contribution on all training cells.
A run cut (by its budget, or `steps` < L) before it has visited every slot once would keep the random start in
the slots it never reached — peaks no method chose. Those slots are filled instead with the top of the last step's
gradient ranking (eq. 4 gains, excluding the visited slots' peaks), and the job is flagged `partial_pass` and
`filled` (info: slots_visited, filled_from_gradient). A deviation from the paper's random start that applies only
to cut runs: a run that visits every slot (every profile's default: steps ≥ L) is unchanged.
Paper: Liu, Xu, Riffle, Duan, Min & Zhang, "Understanding Transcriptional Regulatory Redundancy by Learnable
Global Subset Perturbations", ACML 2024 (PMLR 260, 2025); preprint title "Learnable Subset Perturbations for
Understanding Transcriptional Regulatory Redundancy".
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from methods.base import BudgetClock, Explainer, Explanation
from methods.registry import register
from surrogates.protocol import (AdditiveHidden, BagBatch, ClosedForm, EmbeddingBags, InputSupport, cell_types_of,
                                 close_rows, fast_path, restrict_to_support)

# Pseudo-count (log1p units) in both ratios of eq. 2. With a tiny one (0.01), genes predicted at ~0 in the target's
# cell type dominate the off-target term: a silent gene moving to 0.1 adds (10)² = 100, while halving the target
# saves only 0.75, so the search refused every peak that nudged any silent gene and gave up 5 points of target Rel Δ
# on the quick benchmark. With 1, that nudge adds 0.01 and expressed genes (log1p ≈ 2–7) keep near-plain ratios.
RATIO_PSEUDOCOUNT = 1.0
# Candidate objectives within this of the best count as tied (`best_candidate`): far below any real difference of
# eq. 2 (its terms are O(1)), above the rounding that separates two equivalent peaks on different code paths.
TIE = 1e-12


def default_steps(L: int) -> int:
    return int(min(5000, max(500, 50 * L)))


def cell_objective(y_r: torch.Tensor, y0: torch.Tensor, gene: int, beta: float, kind: str,
                   n_other: int | None = None) -> torch.Tensor:
    """ℒ of each cell, the term eq. 2 averages: y_r (..., cells, genes), y0 (cells, genes) → (..., cells).
    `n_other`: the off-target genes eq. 2 averages over when y_r holds only some of them (the others unmoved, so
    their terms are 0); default: every column but the target's."""
    if kind == "mean":
        return y_r[..., gene]
    ratio = (y_r + RATIO_PSEUDOCOUNT) / (y0 + RATIO_PSEUDOCOUNT)
    target = ratio[..., gene] ** 2
    n_other = y_r.shape[-1] - 1 if n_other is None else n_other
    other = ((ratio - 1) ** 2).sum(-1) - (ratio[..., gene] - 1) ** 2
    return target + (beta / max(1, n_other)) * other


def subset_objective(y_r: torch.Tensor, y0: torch.Tensor, gene: int, beta: float, kind: str) -> torch.Tensor:
    """ℒ over the last-but-one (cell) axis: y_r (..., cells, genes), y0 (cells, genes) → (...)."""
    return cell_objective(y_r, y0, gene, beta, kind).mean(-1)


@register("grids", paper="Liu et al., Learnable Subset Perturbations for Understanding Transcriptional "
          "Regulatory Redundancy", year=2024, kind="subset search", needs_gradients=True, version=2)
class Grids(Explainer):
    """GRIDS: gradient-guided coordinate descent on the joint closure of L peaks."""

    def __init__(self, steps: int | None = None, sweeps: int | None = None, batch_size: int = 64, top_k: int = 32,
                 beta: float = 0.1, objective: str = "ratio", off_target_genes: int | None = None,
                 sampled_gains: bool = False, **common):
        """off_target_genes: score the candidates of a step on the target plus this many off-target genes drawn
        uniformly without replacement (the same draw for the incumbent and every candidate of the step), instead
        of all G − 1: eq. 2's off-target term β/(G−1) Σ_j is then estimated by β/m Σ_{sample}, whose expectation
        is the full term, at m/G of the decoder's output cost. None (default): all genes, as in the paper.
        sampled_gains: the eq. 4 gains of a step also come from that step's gene sample (drawn before them)."""
        super().__init__(**common)
        if objective not in ("ratio", "mean"):
            raise ValueError("objective must be 'ratio' (eq. 2) or 'mean'")
        if off_target_genes is not None and off_target_genes < 1:
            raise ValueError("off_target_genes must be ≥ 1 or None (all genes)")
        self.steps, self.sweeps = steps, sweeps
        self.batch_size, self.top_k, self.beta, self.objective = batch_size, top_k, beta, objective
        self.off_target_genes, self.sampled_gains = off_target_genes, bool(sampled_gains)

    def n_steps(self, L: int) -> int:
        """Default: Default steps of the paper; `sweeps` (passes over the L slots) overrides it for quick runs."""
        if self.steps is not None:
            return self.steps
        if self.sweeps is not None:
            return max(100, self.sweeps * L)
        return default_steps(L)

    def explain(self, model, data, gene, L) -> Explanation:
        clock = BudgetClock(self.budget)
        rng = np.random.default_rng(self.seed)
        dev = model.device
        gi = model.gene_index(gene)
        X = data.atac
        n_cells, n_peaks = X.shape
        bags = fast_path(model, AdditiveHidden) is not None and fast_path(model, EmbeddingBags) is not None
        local = not bags and fast_path(model, ClosedForm) is not None
        search = (_BagSearch if bags else _LocalSearch if local else _GenericSearch)(
            self, model, X, cell_types_of(data), gi)
        r = rng.choice(n_peaks, size=L, replace=False)
        in_r = torch.zeros(n_peaks, dtype=torch.bool, device=dev)
        in_r[torch.as_tensor(r, device=dev)] = True
        steps = self.n_steps(L)
        history, swaps, group_moves, status = [], 0, 0, "ok"
        bar = tqdm(range(steps), desc=f"GRIDS {gene} L={L}", disable=not self.progress, leave=False)
        for step in bar:
            if clock.exhausted():
                status = clock.stop_status()
                break
            cells = np.sort(rng.choice(n_cells, size=min(self.batch_size, n_cells), replace=False))
            batch = search.batch(cells)
            y0 = search.y0_all[cells]
            # with sampled_gains the gene sample comes first (the draw order without it is the original one)
            genes = self._gene_sample(model.n_genes, gi, rng) if self.sampled_gains else None
            state, per_cell, gain = search.gains(batch, in_r, y0, genes)
            slot = step % L
            k = min(self.top_k, int((~in_r).sum()))
            cand = torch.topk(gain.masked_fill(in_r, -torch.inf), k).indices
            old = int(r[slot])
            if not self.sampled_gains:
                genes = self._gene_sample(model.n_genes, gi, rng)  # None: every gene
            loss, cand_loss = search.swap_losses(batch, state, r, old, cand, per_cell, y0, genes)
            clock.spend(len(cells) * (k + 1))
            best = best_candidate(cand, cand_loss)
            last_gain = gain
            # a subclass's moves that close several peaks at once (`grids-groups`); GRIDS itself has none
            group = self.group_move(search, batch, in_r, r, y0, genes, gain, cand, clock)
            if group is not None and group[1] < min(loss, float(cand_loss[best])) - 1e-12:
                closure, group_loss = group
                in_r[torch.as_tensor(r, device=dev)] = False
                in_r[torch.as_tensor(closure, device=dev)] = True
                r[:] = closure
                swaps += 1
                group_moves += 1
                history.append(group_loss)
            elif float(cand_loss[best]) < loss - 1e-12:
                new = int(cand[best])
                in_r[old], in_r[new] = False, True
                r[slot] = new
                swaps += 1
                history.append(float(cand_loss[best]))
            else:
                history.append(loss)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{history[-1]:.4f}", swaps=swaps)
        bar.close()
        if not history:  # the random starting subset is not a GRIDS answer
            return Explanation.no_estimate({"steps": 0, "steps_planned": steps, "seconds": clock.seconds,
                                            "samples": clock.samples,
                                            "no_estimate_reason": "budget ended before the first step"})
        visited = min(len(history), L)
        if visited < L:  # slots never visited still hold random-start peaks: take the last step's gradient ranking
            keep = torch.zeros(n_peaks, dtype=torch.bool, device=dev)
            keep[torch.as_tensor(r[:visited], device=dev)] = True
            r[visited:] = torch.topk(last_gain.masked_fill(keep, -torch.inf), L - visited).indices.cpu().numpy()
        scores = search.leave_one_out(r)
        order = np.argsort(-scores, kind="stable")
        expl = Explanation(
            peaks=r[order], scores=scores[order], status=status,
            info={"steps": len(history), "steps_planned": steps, "swaps": swaps, "final_loss": history[-1],
                  "loss_trace": history[:: max(1, len(history) // 50)], "seconds": clock.seconds,
                  "samples": clock.samples, "objective": self.objective,
                  "path": "embedding bags" if bags else "closed form" if local else "generic",
                  "slots_visited": visited,
                  "filled_from_gradient": L - visited, **({"group_moves": group_moves} if group_moves else {})},
        )
        return expl.flag("partial_pass", "filled") if visited < L else expl

    def group_move(self, search, batch, in_r, r, y0, genes, gain, cand, clock) -> tuple[np.ndarray, float] | None:
        """A move that closes several peaks at once, scored on the step's batch: (the new subset, slot by slot, its
        objective) or None. GRIDS, as the paper defines it, swaps one peak a step and has none."""
        return None

    def _gene_sample(self, n_genes: int, gi: int, rng) -> torch.Tensor | None:
        """This step's genes to score on: the target (first) and `off_target_genes` others drawn uniformly without
        replacement, sorted; None: score on every gene."""
        n_other = n_genes - 1
        if self.objective != "ratio" or self.off_target_genes is None or self.off_target_genes >= n_other:
            return None
        other = rng.choice(n_other, size=self.off_target_genes, replace=False)
        other = other + (other >= gi)  # skip the target's index
        return torch.as_tensor(np.concatenate([[gi], np.sort(other)]))


def best_candidate(cand: torch.Tensor, cand_loss: torch.Tensor) -> int:
    """The position of the candidate with the lowest objective; candidates within TIE of it (equivalent peaks, e.g.
    two members of one AND unit) go to the lowest peak index, so the choice does not hang on the order top-k
    returned them in, which rounding in the gains can flip."""
    near = cand_loss <= cand_loss.min() + TIE
    return int(torch.nonzero(near).ravel()[torch.argmin(cand[near.to(cand.device)])])



class _BagSearch:
    """GRIDS's steps on a model with embedding bags and an additive first layer (the surrogate): gains from one
    backward pass through the bag sums, swaps scored incrementally on the first pre-activation.

    The explained cells are embedded once per job with every peak open (s_open); a step's first pre-activation with
    r closed is then first(s_open) − Σ_{j ∈ r} x_cj U_j, a (cells × L) by (L × hidden) product, instead of an
    embedding bag over the batch's ~300k open entries with a gathered weight per entry (the U_j of r are kept
    from step to step: a swap changes one row). The same pre-activation up to float32 rounding (the closed
    peaks are subtracted after the sum instead of skipped in it)."""

    def __init__(self, grids: Grids, model, X, cell_types, gi: int):
        self.grids, self.model, self.gi = grids, model, gi
        self.X = X
        self.cells_atac = model.bag_batches(X)  # the model's own bags: GRIDS never sees how entries map to them
        with torch.no_grad():
            self.tables = model.embedding_tables()  # frozen weights: Δ and the chromosome constant once per job
            self.s_open = model.embed(model.sparse_batch(X), None, self.tables)  # cells × bags·emb, all open
            self.y0_all = model.head(model.first(self.s_open))
        self.by_peak = sp.csc_matrix(X)  # the explained cells' columns (x of the closed peaks)
        # the closed peaks, their U_j rows and their columns x (every explained cell), see `_closed_rows`; the last
        # step's candidates
        self._closed = self._U = self._x = self._cand = None

    def batch(self, cells):
        return torch.as_tensor(cells, device=self.s_open.device), self.cells_atac.batch(cells)

    def _open_in(self, peaks: torch.Tensor) -> torch.Tensor:
        """x[:, peaks] of every explained cell as float 0/1 (cells × len(peaks)), from the CSC's slices (SciPy's
        column indexing costs ~0.5 ms a call, more than the rest of a swap's bookkeeping)."""
        X = self.by_peak
        cols = np.zeros((X.shape[0], len(peaks)), dtype=np.float32)
        for i, p in enumerate(peaks.tolist()):
            a, b = X.indptr[p], X.indptr[p + 1]
            cols[X.indices[a:b][X.data[a:b] != 0], i] = 1.0
        return torch.as_tensor(cols, dtype=self.s_open.dtype, device=self.s_open.device)

    @torch.no_grad()
    def _closed_rows(self, in_r):
        """(the closed peaks, their U_j rows, their columns x for every explained cell) for the subset `in_r`: a
        swap changes one peak, so only its row and column are recomputed (kept in this cache's own order, not
        GRIDS's slots)."""
        closed = self._closed
        if closed is not None:
            kept = in_r.index_select(0, closed)
            n_closed = int(torch.count_nonzero(in_r))
            if n_closed == len(closed) and bool(kept.all()):
                return closed, self._U, self._x
            slots = torch.nonzero(~kept).flatten()
            # a swap closes one of the last step's candidates: look there before scanning every peak
            new = self._cand[in_r.index_select(0, self._cand)] if self._cand is not None else closed[:0]
            new = new[~torch.isin(new, closed)]
            if len(new) != len(slots):
                new = torch.nonzero(in_r).flatten()
                new = new[~torch.isin(new, closed)]
            if n_closed == len(closed) and len(new) == len(slots):  # swaps: recompute the swapped rows only
                closed[slots] = new
                self._U[slots] = self.model.peak_hidden(new)
                self._x[:, slots] = self._open_in(new)
                return closed, self._U, self._x
        self._closed = torch.nonzero(in_r).flatten()
        self._U, self._x = self.model.peak_hidden(self._closed), self._open_in(self._closed)
        return self._closed, self._U, self._x

    def gains(self, batch, in_r, y0, genes=None):
        """(first pre-activation a_r with the subset closed, each cell's objective, eq. 4 gain of every peak), on
        every gene or the `genes` sample (target first).

        Closure is a zero per-entry weight w_e of the embedding bag, so ∂ℒ/∂w_e = ⟨∂ℒ/∂s_b(e), Δ_idx(e)⟩ with s_b
        the summed embeddings of entry e's (cell, chromosome) bag. The gain of peak j sums that over its entries,
        g_j = ⟨Σ_{e: idx(e)=j} ∂ℒ/∂s_b(e), Δ_j⟩: one embedding bag over the tiny (cells·chromosomes × 32) gradient,
        bagged by peak, then one dot product per peak. The same numbers as autograd's per-sample-weight gradient
        followed by a scatter into peaks, at half the time at paper scale (gathering Δ per entry is the cost).
        `first` is linear, so ∂ℒ/∂s does not depend on where s is: autograd through first(s_open) − Σ_r x U."""
        g, model = self.grids, self.model
        cells, bags = batch
        _, U, x = self._closed_rows(in_r)
        s = self.s_open.index_select(0, cells).requires_grad_(True)
        with torch.enable_grad():
            a_r = model.first(s) - x.index_select(0, cells) @ U
            if g.objective == "mean":
                per_cell = cell_objective(model.head(a_r), y0, self.gi, g.beta, g.objective)
                (d_s,) = torch.autograd.grad(per_cell.mean(), s)
            else:  # eq. 2's gradient in closed form: autograd of its ~15 elementwise ops cost more than the head's
                if genes is None:
                    y, y0, col = model.head(a_r), y0, self.gi
                else:
                    genes = genes.to(model.device)
                    y, y0, col = model.head(a_r, genes), y0.index_select(1, genes), 0
                per_cell, d_y = _ratio_objective_and_grad(y.detach(), y0, col, g.beta)
                (d_s,) = torch.autograd.grad(y, s, d_y)
        return a_r.detach(), per_cell.detach(), peak_gains(bags, self.tables[0], d_s)

    @torch.no_grad()
    def swap_losses(self, batch, a_r, r, old: int, cand, per_cell, y0, genes=None):
        """(the incumbent's objective, the true objective of each subset with slot peak `old` swapped for one
        candidate), incrementally: the swap changes cell c's first pre-activation by +x_c,old U_old − x_c,j U_j, so
        only the layers after the first are re-run, and only for the cells it changes (x_c,old = 1 or x_c,j = 1);
        every other cell keeps the incumbent's value. Sums run in float64 so a swap that changes no cell scores
        exactly the incumbent's objective. `genes`: score on these (target first) only."""
        model, g = self.model, self.grids
        _, bags = batch
        scorer = None
        if genes is not None:  # the incumbent on the same gene sample as its candidates
            genes = genes.to(model.device)
            scorer = _GeneSample(genes, lambda a: model.head(a, genes), g.beta)
            if not g.sampled_gains:  # with sampled gains, `gains` already scored the incumbent on this sample
                per_cell = scorer.cell_loss(a_r, y0)
        dev = a_r.device
        self._cand = cand.to(dev)
        cols = torch.cat([torch.as_tensor([old], device=dev), self._cand])
        x_cols = bags.columns(cols)  # cells × (1 + k), 0/1
        U = model.peak_hidden(cols)  # (1 + k) × hidden
        cell, j = torch.nonzero((x_cols[:, 1:] + x_cols[:, :1]) > 0, as_tuple=True)
        # a_r + x_old U_old once per cell, then − x_j U_j per changed (cell, candidate) row in one fused op (the
        # same values as a_r[cell] + x_old U_old − x_j U_j); index_select: advanced indexing is ~5× slower on CPU
        reopened = a_r + x_cols[:, :1] * U[0]
        a_swap = torch.addcmul(reopened.index_select(0, cell), x_cols[cell, 1 + j].unsqueeze(1),
                               U.index_select(0, 1 + j), value=-1.0)
        if scorer is not None:  # the sampled genes' y0 + 1 before the rows: 64 × 257 instead of rows × 3,000
            y0_plus = (y0.index_select(1, scorer.genes) + RATIO_PSEUDOCOUNT).index_select(0, cell)
            changed = _sampled_objective_(scorer.head(a_swap), y0_plus, g.beta, shifted=True)
        else:
            changed = cell_objective(model.head(a_swap), y0[cell], self.gi, g.beta, g.objective)
        base = per_cell.double()
        moved = torch.zeros(len(cand), dtype=torch.float64, device=dev).index_add_(0, j, changed.double() - base[cell])
        n = len(base)
        return float(base.sum() / n), (base.sum() + moved) / n

    @torch.no_grad()
    def leave_one_out(self, r) -> np.ndarray:
        """Loss increase when each member of r is re-opened while the rest stay closed (all training cells)."""
        model, g, X, y0_all, gi = self.model, self.grids, self.X, self.y0_all, self.gi
        batch = model.sparse_batch(X)
        a_r = model.first_hidden(batch, model.closed_weights(batch, r))
        base = subset_objective(model.head(a_r), y0_all, gi, g.beta, g.objective)
        x_cols = torch.as_tensor(X[:, r].toarray(), dtype=torch.float32, device=a_r.device)
        U = model.peak_hidden(torch.as_tensor(r, device=a_r.device))
        # chunks of members: all L at once through the full decoder is L × cells × genes floats (4 GB at paper
        # scale, L = 128, ~700 cells)
        chunk = max(1, int(2e7 // max(1, X.shape[0] * y0_all.shape[1])))
        losses = []
        for s in range(0, len(r), chunk):
            a_open = a_r.unsqueeze(0) + x_cols[:, s:s + chunk].T.unsqueeze(-1) * U[s:s + chunk].unsqueeze(1)
            losses.append(subset_objective(model.head(a_open), y0_all, gi, g.beta, g.objective))
        return (torch.cat(losses) - base).cpu().numpy().astype(np.float64)


class _GenericSearch:
    """GRIDS's steps on any model of the protocol: gains g_j = Σ_c x_cj ∂ℒ/∂x_cj from autograd of the dense path at
    the batch with the subset closed (the same eq. 4 gains as `_BagSearch`); a swapped subset is scored through
    `predict` on the cells it changes only (x_c,old = 1 or x_c,j = 1: every other cell keeps the incumbent's
    objective, as in `_BagSearch`), re-opening one member likewise on the cells where it is open."""

    max_entries = 4_000_000  # open entries per `predict` call (~30 MB of CSR)

    def __init__(self, grids: Grids, model, X, cell_types, gi: int):
        self.grids, self.model, self.gi = grids, model, gi
        self.X, self.types = sp.csr_matrix(X), np.asarray(cell_types)
        self.X.sort_indices()
        self.y0_all = model.predict(self.X, cell_types=self.types)
        self.read = restrict_to_support(model, self.X)  # what swap scoring passes to `predict`: same predictions
        support = fast_path(model, InputSupport)
        # the gradient is taken on the columns the model can read only (every other peak's gain is 0)
        self.support = None if support is None else torch.as_tensor(np.sort(support.input_support()),
                                                                     device=model.device)

    def batch(self, cells):
        return cells

    def gains(self, cells, in_r, y0, genes=None):
        g, model = self.grids, self.model
        rows = self.X[cells] if self.support is None else self.X[cells][:, self.support.cpu().numpy()]
        x = torch.as_tensor(rows.toarray(), dtype=torch.float32, device=model.device)
        keep = ~in_r if self.support is None else ~in_r[self.support]
        x_r = (x * keep.to(x.dtype)).requires_grad_(True)
        with torch.enable_grad():
            full = x_r if self.support is None else \
                x_r.new_zeros(len(cells), self.X.shape[1]).index_copy(1, self.support, x_r)
            y_r = model.dense(full, cell_types=self.types[cells])
            if genes is None:
                per_cell = cell_objective(y_r, y0, self.gi, g.beta, g.objective)
            else:  # the sampled objective on the dense path's full output (the protocol offers no column subset)
                genes = genes.to(y_r.device)
                per_cell = cell_objective(y_r[:, genes], y0[:, genes], 0, g.beta, "ratio")
            (d_x,) = torch.autograd.grad(per_cell.mean(), x_r)
        gain = (d_x * x).sum(0)
        if self.support is not None:
            gain = gain.new_zeros(self.X.shape[1]).index_copy(0, self.support, gain)
        return None, per_cell.detach(), gain

    @torch.no_grad()
    def _objective(self, X, types, closures, which, y0, genes=None) -> torch.Tensor:
        """Per-row objective (float64) of row i of X under closures[which[i]], on every gene or the `genes` sample
        (target first); in `predict` calls of ≤ `max_entries` open entries."""
        g, model = self.grids, self.model
        names = None if genes is None else [model.gene_names[int(i)] for i in genes]
        y0 = y0 if genes is None else y0[:, genes.to(y0.device)]
        col, kind = (self.gi, g.objective) if genes is None else (0, "ratio")
        per_row = max(1, int(self.max_entries // max(1.0, X.nnz / max(1, X.shape[0]))))
        out = []
        for s in range(0, X.shape[0], per_row):
            rows = close_rows(X[s:s + per_row], closures, which[s:s + per_row])
            y = model.predict(rows, genes=names, cell_types=types[s:s + per_row])
            out.append(cell_objective(y, y0[s:s + per_row], col, g.beta, kind).double())
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64, device=y0.device)

    def _moved(self, X, types, y0, base, closures, opened, genes=None) -> torch.Tensor:
        """Σ over the changed (cell, closure) pairs — `opened` (cells × closures, bool) — of the closure's objective
        minus the incumbent's `base`, per closure."""
        cell, k = np.nonzero(opened)
        changed = self._objective(X[cell], types[cell], closures, k, y0[cell], genes)
        dev = base.device
        return torch.zeros(len(closures), dtype=torch.float64, device=dev).index_add_(
            0, torch.as_tensor(k, device=dev), changed.to(dev) - base[torch.as_tensor(cell, device=dev)])

    def swap_losses(self, cells, state, r, old: int, cand, per_cell, y0, genes=None):
        X, types = self.read[cells], self.types[cells]
        cand = cand.cpu().numpy()
        x_cols = X[:, np.concatenate([[old], cand])].toarray() > 0
        base = self._objective(X, types, [r], np.zeros(len(cells), dtype=np.int64), y0, genes)
        closures = [np.where(r == old, int(c), r) for c in cand]
        moved = self._moved(X, types, y0, base, closures, x_cols[:, 1:] | x_cols[:, :1], genes)
        n = len(cells)
        return float(base.sum() / n), (base.sum() + moved) / n

    def leave_one_out(self, r) -> np.ndarray:
        X, n = self.read, self.X.shape[0]
        base = self._objective(X, self.types, [r], np.zeros(n, dtype=np.int64), self.y0_all)
        closures = [np.delete(r, i) for i in range(len(r))]
        moved = self._moved(X, self.types, self.y0_all, base, closures, X[:, r].toarray() > 0)
        return (moved / n).cpu().numpy()


class _LocalSearch:
    """GRIDS's steps on a model whose outputs each read a few peaks (`ClosedForm`: the truth model), with the same
    gains and swap objectives as `_GenericSearch` computed on the genes that can move:

    * a gene reading no closed peak keeps ŷ_r = ŷ, so its eq. 2 term (ratio − 1)² and that term's gradient are 0;
      the gains therefore need the target and the readers of r only, differentiated on the peaks they read
      (`local_dense`, closed-form gradients), and every other peak's gain is exactly 0;
    * swapping slot peak `old` for candidate j changes only the terms of genes that read `old` or j, so each
      candidate's objective is the incumbent's plus Σ over the cells where old or j is open of those genes' terms
      after the swap minus before.
    Answers match `_GenericSearch` to float64 rounding (tests/test_truth_model.py)."""

    def __init__(self, grids: Grids, model, X, cell_types, gi: int):
        self.grids, self.model, self.gi = grids, model, gi
        self.X, self.types = sp.csr_matrix(X), np.asarray(cell_types)
        self.X.sort_indices()
        self.y0_all = model.predict(self.X, cell_types=self.types)
        # the explained cells' values of every peak some output reads, dense (cells × read peaks, 1 byte each: ~3 MB
        # at paper scale), so a step gathers its rows and columns with one index instead of slicing the CSR twice
        read = model.reads(np.arange(model.n_genes))
        self.col_of = np.full(X.shape[1], -1, dtype=np.int64)
        self.col_of[read] = np.arange(len(read))
        self.open = torch.as_tensor(self.X[:, read].toarray() > 0)

    def batch(self, cells):
        return cells

    def _columns(self, cells, peaks) -> torch.Tensor:
        """x[cells][:, peaks] as a bool tensor (peaks read by some output)."""
        return self.open[torch.as_tensor(cells)[:, None], torch.as_tensor(self.col_of[peaks])[None, :]]

    def _genes(self, peaks, sample) -> tuple[np.ndarray, int | None]:
        """(the target then the genes reading `peaks` that the objective counts — all, or those in the step's
        `sample` —, the number of off-target genes eq. 2 averages over)."""
        if self.grids.objective == "mean":
            return np.array([self.gi]), None
        readers = self.model.readers(peaks)
        if sample is not None:
            readers = np.intersect1d(readers, sample[1:].cpu().numpy())
        n_other = self.model.n_genes - 1 if sample is None else len(sample) - 1
        return np.concatenate([[self.gi], readers[readers != self.gi]]).astype(np.int64), n_other

    def _objective(self, cells, genes, n_other, closures, which, y0, requires_grad=False):
        """Each row's eq. 2 over `genes` (target first): row i is cell cells[i] with closures[which[i]] closed, y0
        its unclosed prediction of those genes (rows × len(genes)). With `requires_grad`, also the leaf x (rows ×
        the genes' peaks) and those peaks."""
        g, model = self.grids, self.model
        peaks = model.reads(genes)
        x = self._columns(cells, peaks).double()
        shut = torch.as_tensor(np.stack([np.isin(peaks, c) for c in closures]))[torch.as_tensor(which)]
        x_r = x.masked_fill(shut, 0.0)
        with torch.enable_grad() if requires_grad else torch.no_grad():
            if requires_grad:
                x_r.requires_grad_(True)
            y = model.local_dense(x_r, peaks, genes, cell_types=self.types[cells])
            per_cell = cell_objective(y, y0, 0, g.beta, g.objective, n_other)
        return per_cell, x, x_r, peaks

    def gains(self, cells, in_r, y0, genes=None):
        r = torch.nonzero(in_r).ravel().cpu().numpy()
        keep, n_other = self._genes(r, genes)
        per_cell, x, x_r, peaks = self._objective(cells, keep, n_other, [r], np.zeros(len(cells), dtype=np.int64),
                                                  y0[:, keep], requires_grad=True)
        (d_x,) = torch.autograd.grad(per_cell.mean(), x_r)
        gain = torch.zeros(self.model.n_peaks, dtype=torch.float64, device=in_r.device)
        gain[torch.as_tensor(peaks, device=in_r.device)] = (d_x * x).sum(0).to(in_r.device)
        return None, per_cell.detach(), gain

    def _moved(self, cells, y0, closures, base_closure, opened, genes, n_other) -> torch.Tensor:
        """Σ over the changed (cell, closure) pairs — `opened` (cells × closures, bool) — of the closure's objective
        on `genes` minus `base_closure`'s, per closure."""
        cell, k = np.nonzero(opened)
        y0 = y0[:, torch.as_tensor(genes)][torch.as_tensor(cell)]  # the genes first: y0 has every gene
        after, *_ = self._objective(cells[cell], genes, n_other, closures, k, y0)
        before, *_ = self._objective(cells[cell], genes, n_other, [base_closure], np.zeros(len(cell), np.int64), y0)
        return torch.zeros(len(closures), dtype=torch.float64).index_add_(0, torch.as_tensor(k), after - before)

    def swap_losses(self, cells, state, r, old: int, cand, per_cell, y0, genes=None):
        g, n = self.grids, len(cells)
        if genes is not None and not g.sampled_gains:  # the incumbent on the same gene sample as its candidates
            keep, n_other = self._genes(r, genes)
            per_cell, *_ = self._objective(cells, keep, n_other, [r], np.zeros(n, dtype=np.int64), y0[:, keep])
        cand = cand.cpu().numpy()
        moving, n_other = self._genes(np.concatenate([[old], cand]), genes)
        x_cols = self._open_or_unread(cells, np.concatenate([[old], cand]))
        closures = [np.where(r == old, int(c), r) for c in cand]
        moved = self._moved(cells, y0, closures, r, x_cols[:, 1:] | x_cols[:, :1], moving, n_other)
        base = per_cell.double()
        return float(base.sum() / n), (base.sum() + moved) / n

    def leave_one_out(self, r) -> np.ndarray:
        cells, n = np.arange(self.X.shape[0]), self.X.shape[0]
        keep, n_other = self._genes(r, None)
        closures = [np.delete(r, i) for i in range(len(r))]
        moved = self._moved(cells, self.y0_all, closures, r, self._open_or_unread(cells, r), keep, n_other)
        return (moved / n).cpu().numpy()

    def _open_or_unread(self, cells, peaks) -> np.ndarray:
        """x[cells][:, peaks] > 0 for the peaks some output reads; False for the others (closing one moves
        nothing, so no cell needs rescoring for it)."""
        out = np.zeros((len(cells), len(peaks)), dtype=bool)
        read = self.col_of[peaks] >= 0
        out[:, read] = self._columns(cells, np.asarray(peaks)[read]).numpy()
        return out


@torch.no_grad()
def summed_embeddings(model, batch: BagBatch, tables, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The model's `embed` of a step batch with per-entry `weights` (0 = closed) on precomputed `tables`: the bag
    sums s (cells × bags·emb), as a leaf that requires grad (∂ℒ/∂s is all `peak_gains` needs)."""
    return model.embed(batch.atac, weights, tables).requires_grad_(True)


@torch.no_grad()
def peak_gains(batch: BagBatch, delta: torch.Tensor, d_s: torch.Tensor) -> torch.Tensor:
    """Eq. 4 for every peak, g_j = ⟨Σ_{e: idx(e)=j} ∂ℒ/∂s_b(e), Δ_j⟩, from ∂ℒ/∂s (cells × bags·emb): the
    batch's sums of the gradient over each peak's entries (`peak_sums`), then a dot product per peak. On one CPU
    thread in ranges of `GAIN_CHUNK` peaks, each range's sums reduced while they are in cache (all peaks at once
    write and re-read a 16 MB peaks × emb array at paper scale: a step ran 1.2 ms slower); on more threads at once
    (there each range would be three more parallel regions, no faster alone and much slower when another process
    holds a core). The same bits either way: each peak's sum and dot product are computed alike."""
    n_peaks = len(delta)
    chunk = GAIN_CHUNK if d_s.device.type == "cpu" and torch.get_num_threads() == 1 else n_peaks
    if chunk >= n_peaks:
        return batch.peak_sums(d_s).mul_(delta).sum(1)
    gains = torch.empty(n_peaks, dtype=delta.dtype, device=delta.device)
    for start in range(0, n_peaks, chunk):
        part = slice(start, min(n_peaks, start + chunk))
        torch.sum(batch.peak_sums(d_s, part).mul_(delta[part]), 1, out=gains[part])
    return gains


GAIN_CHUNK = 8192  # peaks per range of `peak_gains` on the CPU: 1 MB of sums (32 floats a peak), within L2


class _GeneSample:
    """Eq. 2 on the target (column 0) and a uniform sample of m off-target genes: cell_objective over those
    columns is target² + β/m Σ_{sample} (ratio − 1)², an unbiased estimate of target² + β/(G−1) Σ_{j≠i}."""

    def __init__(self, genes: torch.Tensor, head, beta: float):
        self.genes, self.head, self.beta = genes, head, beta

    @torch.no_grad()
    def cell_loss(self, a: torch.Tensor, y0: torch.Tensor, sampled: bool = False) -> torch.Tensor:
        """Each row's sampled objective: a (rows × hidden), y0 (rows × all genes, or × the sample's genes when
        `sampled`) → (rows,)."""
        return _sampled_objective_(self.head(a), y0 if sampled else y0[:, self.genes], self.beta)


def _ratio_objective_and_grad(y: torch.Tensor, y0: torch.Tensor, gene: int, beta: float):
    """(`cell_objective(y, y0, gene, beta, "ratio")`, with the same operations: the same bits; its mean's gradient
    with respect to y): with ρ = (y + 1) / (y0 + 1) and c = β / (columns − 1), ∂ mean_c ℒ / ∂y_g = 2c (ρ_g − 1) /
    (n (y0_g + 1)) off the target and 2 ρ_gene / (n (y0_gene + 1)) on it (its off-target terms cancel)."""
    ratio = (y + RATIO_PSEUDOCOUNT) / (y0 + RATIO_PSEUDOCOUNT)
    target = ratio[:, gene] ** 2
    first = (ratio[:, gene] - 1) ** 2
    c = beta / max(1, y.shape[-1] - 1)
    moved = ratio - 1
    per_cell = target + c * ((moved ** 2).sum(-1) - first)
    n = max(1, y.shape[0])
    grad = moved.mul_(2 * c / n)
    grad[:, gene] = ratio[:, gene] * (2 / n)
    return per_cell, grad.div_(y0 + RATIO_PSEUDOCOUNT)


def _sampled_objective_(y: torch.Tensor, y0: torch.Tensor, beta: float, shifted: bool = False) -> torch.Tensor:
    """`cell_objective(y, y0, 0, beta, "ratio")` with the same operations in the same order (the same bits), computed
    in y's memory: y (rows × genes, overwritten; a fresh output of the head), y0 (rows × genes; already + the
    pseudo-count when `shifted`). At paper scale a step scores ~1,400 rows × 257 genes, where each temporary of the
    out-of-place form is another pass over 1.5 MB."""
    ratio = y.add_(RATIO_PSEUDOCOUNT).div_(y0 if shifted else y0 + RATIO_PSEUDOCOUNT)
    target = ratio[:, 0] ** 2
    first = (ratio[:, 0] - 1) ** 2
    other = ratio.sub_(1).pow_(2).sum(-1) - first
    return target + (beta / max(1, y.shape[-1] - 1)) * other
