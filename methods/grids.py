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
protocol, surrogates/protocol.py). On any other model (the truth tier, a user's model) the same quantities come
from the protocol alone: the gains from autograd of the dense path, g_j = Σ_c x_cj ∂ℒ/∂x_cj at the batch with r
closed, and each swapped subset's objective from `predict` on the cells the swap changes (tests/test_protocol.py:
the same peaks either way).

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
from surrogates.protocol import (AdditiveHidden, BagBatch, EmbeddingBags, cell_types_of, close_rows, fast_path,
                                 restrict_to_support)

# Pseudo-count (log1p units) in both ratios of eq. 2. With a tiny one (0.01), genes predicted at ~0 in the target's
# cell type dominate the off-target term: a silent gene moving to 0.1 adds (10)² = 100, while halving the target
# saves only 0.75, so the search refused every peak that nudged any silent gene and gave up 5 points of target Rel Δ
# on the quick benchmark. With 1, that nudge adds 0.01 and expressed genes (log1p ≈ 2–7) keep near-plain ratios.
RATIO_PSEUDOCOUNT = 1.0


def default_steps(L: int) -> int:
    return int(min(5000, max(500, 50 * L)))


def cell_objective(y_r: torch.Tensor, y0: torch.Tensor, gene: int, beta: float, kind: str) -> torch.Tensor:
    """ℒ of each cell, the term eq. 2 averages: y_r (..., cells, genes), y0 (cells, genes) → (..., cells)."""
    if kind == "mean":
        return y_r[..., gene]
    ratio = (y_r + RATIO_PSEUDOCOUNT) / (y0 + RATIO_PSEUDOCOUNT)
    target = ratio[..., gene] ** 2
    n_other = y_r.shape[-1] - 1
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
        search = (_BagSearch if bags else _GenericSearch)(self, model, X, cell_types_of(data), gi)
        r = rng.choice(n_peaks, size=L, replace=False)
        in_r = torch.zeros(n_peaks, dtype=torch.bool, device=dev)
        in_r[torch.as_tensor(r, device=dev)] = True
        steps = self.n_steps(L)
        history, swaps, status = [], 0, "ok"
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
            best = int(torch.argmin(cand_loss))
            last_gain = gain
            if float(cand_loss[best]) < loss - 1e-12:
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
                  "path": "embedding bags" if bags else "generic", "slots_visited": visited,
                  "filled_from_gradient": L - visited},
        )
        return expl.flag("partial_pass", "filled") if visited < L else expl

    def _gene_sample(self, n_genes: int, gi: int, rng) -> torch.Tensor | None:
        """This step's genes to score on: the target (first) and `off_target_genes` others drawn uniformly without
        replacement, sorted; None: score on every gene."""
        n_other = n_genes - 1
        if self.objective != "ratio" or self.off_target_genes is None or self.off_target_genes >= n_other:
            return None
        other = rng.choice(n_other, size=self.off_target_genes, replace=False)
        other = other + (other >= gi)  # skip the target's index
        return torch.as_tensor(np.concatenate([[gi], np.sort(other)]))


class _BagSearch:
    """GRIDS's steps on a model with embedding bags and an additive first layer (the surrogate): gains from one
    backward pass through the bag sums, swaps scored incrementally on the first pre-activation."""

    def __init__(self, grids: Grids, model, X, cell_types, gi: int):
        self.grids, self.model, self.gi = grids, model, gi
        self.X = X
        self.cells_atac = model.bag_batches(X)  # the model's own bags: GRIDS never sees how entries map to them
        with torch.no_grad():
            self.y0_all = model.head(model.first_hidden(model.sparse_batch(X)))
            self.tables = model.embedding_tables()  # frozen weights: Δ and the chromosome constant once per job

    def batch(self, cells):
        return self.cells_atac.batch(cells)

    def gains(self, batch: BagBatch, in_r, y0, genes=None):
        """(first pre-activation a_r with the subset closed, each cell's objective, eq. 4 gain of every peak), on
        every gene or the `genes` sample (target first).

        Closure is a zero per-entry weight w_e of the embedding bag, so ∂ℒ/∂w_e = ⟨∂ℒ/∂s_b(e), Δ_idx(e)⟩ with s_b
        the summed embeddings of entry e's (cell, chromosome) bag. The gain of peak j sums that over its entries,
        g_j = ⟨Σ_{e: idx(e)=j} ∂ℒ/∂s_b(e), Δ_j⟩: one embedding bag over the tiny (cells·chromosomes × 32) gradient,
        bagged by peak, then one dot product per peak. The same numbers as autograd's per-sample-weight gradient
        followed by a scatter into peaks, at half the time at paper scale (gathering Δ per entry is the cost)."""
        g, model, tables = self.grids, self.model, self.tables
        s = summed_embeddings(model, batch, tables, (~in_r[batch.atac.idx]).to(tables[0].dtype))
        with torch.enable_grad():
            a_r = model.first(s)
            if genes is None:
                per_cell = cell_objective(model.head(a_r), y0, self.gi, g.beta, g.objective)
            else:
                genes = genes.to(model.device)
                per_cell = cell_objective(model.head(a_r, genes), y0[:, genes], 0, g.beta, "ratio")
            (d_s,) = torch.autograd.grad(per_cell.mean(), s)
        return a_r.detach(), per_cell.detach(), peak_gains(batch, tables[0], d_s)

    @torch.no_grad()
    def swap_losses(self, batch: BagBatch, a_r, r, old: int, cand, per_cell, y0, genes=None):
        """(the incumbent's objective, the true objective of each subset with slot peak `old` swapped for one
        candidate), incrementally: the swap changes cell c's first pre-activation by +x_c,old U_old − x_c,j U_j, so
        only the layers after the first are re-run, and only for the cells it changes (x_c,old = 1 or x_c,j = 1);
        every other cell keeps the incumbent's value. Sums run in float64 so a swap that changes no cell scores
        exactly the incumbent's objective. `genes`: score on these (target first) only."""
        model, g = self.model, self.grids
        scorer = None
        if genes is not None:  # the incumbent on the same gene sample as its candidates
            genes = genes.to(model.device)
            scorer = _GeneSample(genes, lambda a: model.head(a, genes), g.beta)
            if not g.sampled_gains:  # with sampled gains, `gains` already scored the incumbent on this sample
                per_cell = scorer.cell_loss(a_r, y0)
        dev = a_r.device
        cols = torch.as_tensor(np.concatenate([[old], cand.cpu().numpy()]), device=dev)
        x_cols = batch.columns(cols)  # cells × (1 + k), 0/1
        U = model.peak_hidden(cols)  # (1 + k) × hidden
        cell, j = torch.nonzero((x_cols[:, 1:] + x_cols[:, :1]) > 0, as_tuple=True)
        a_swap = a_r[cell] + x_cols[cell, :1] * U[0] - x_cols[cell, 1 + j].unsqueeze(1) * U[1 + j]
        if scorer is not None:  # gather the sampled genes' y0 before the rows: 64 × 257 instead of rows × 3,000
            changed = scorer.cell_loss(a_swap, y0[:, scorer.genes][cell], sampled=True)
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

    def batch(self, cells):
        return cells

    def gains(self, cells, in_r, y0, genes=None):
        g, model = self.grids, self.model
        x = torch.as_tensor(self.X[cells].toarray(), dtype=torch.float32, device=model.device)
        x_r = (x * (~in_r).to(x.dtype)).requires_grad_(True)
        with torch.enable_grad():
            y_r = model.dense(x_r, cell_types=self.types[cells])
            if genes is None:
                per_cell = cell_objective(y_r, y0, self.gi, g.beta, g.objective)
            else:  # the sampled objective on the dense path's full output (the protocol offers no column subset)
                genes = genes.to(y_r.device)
                per_cell = cell_objective(y_r[:, genes], y0[:, genes], 0, g.beta, "ratio")
            (d_x,) = torch.autograd.grad(per_cell.mean(), x_r)
        return None, per_cell.detach(), (d_x * x).sum(0)

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


@torch.no_grad()
def summed_embeddings(model, batch: BagBatch, tables, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The model's `embed` of a step batch with per-entry `weights` (0 = closed) on precomputed `tables`: the bag
    sums s (cells × bags·emb), as a leaf that requires grad (∂ℒ/∂s is all `peak_gains` needs)."""
    return model.embed(batch.atac, weights, tables).requires_grad_(True)


@torch.no_grad()
def peak_gains(batch: BagBatch, delta: torch.Tensor, d_s: torch.Tensor) -> torch.Tensor:
    """Eq. 4 for every peak, g_j = ⟨Σ_{e: idx(e)=j} ∂ℒ/∂s_b(e), Δ_j⟩, from ∂ℒ/∂s (cells × bags·emb): the
    batch's sums of the gradient over each peak's entries (`peak_sums`), then a dot product per peak."""
    return (batch.peak_sums(d_s) * delta).sum(1)


class _GeneSample:
    """Eq. 2 on the target (column 0) and a uniform sample of m off-target genes: cell_objective over those
    columns is target² + β/m Σ_{sample} (ratio − 1)², an unbiased estimate of target² + β/(G−1) Σ_{j≠i}."""

    def __init__(self, genes: torch.Tensor, head, beta: float):
        self.genes, self.head, self.beta = genes, head, beta

    @torch.no_grad()
    def cell_loss(self, a: torch.Tensor, y0: torch.Tensor, sampled: bool = False) -> torch.Tensor:
        """Each row's sampled objective: a (rows × hidden), y0 (rows × all genes, or × the sample's genes when
        `sampled`) → (rows,)."""
        return cell_objective(self.head(a), y0 if sampled else y0[:, self.genes], 0, self.beta, "ratio")
