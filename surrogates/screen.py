"""A surrogate that learns cis-regulation from a perturbation screen: the `screen` style.

Observational cells barely identify what closing a peak does (docs/trust.md: every observational style stays additive,
group / Σ members ≈ 1 against the truth's ~12, and misses most of what closing a marker's planted peaks does). A
screen closes peaks at random, many per cell (datasets/screens.py), so in screened cells closure is an intervention,
not a correlate of cell state. This style reads each guide as do(x_j = 0) on its target — the model's input, not an
extra feature — and fits, for every gene g, a small multiplicative cis component over the targeted peaks in its
window W_g (±250 kb of its TSS, from coordinates only):

    ŷ_g(x) = log1p( expm1(base_g(x)) · exp(c_g(x)) ),
    c_g(x) = b_g + log A_g(x) − log A_g(1),   A_g(x) = G_g(x) · (ε_g + Σ_h u_gh OR_gh(x) + Σ_k v_gk AND_gk(x)),
    OR_gh(x)  = 1 − Π_{j∈W_g} (1 − s_gjh x_j),        AND_gk(x) = Π_{j∈W_g} (1 − s_gjk (1 − x_j)),
    G_g(x) = 1 − r_g + r_g · OR_g^gate(x)   (a gate: an element that multiplies everything, like a promoter),

with memberships s = 1 − exp(−softplus(a)) ∈ (0, 1), ε, u, v ≥ 0 (softplus) and r ∈ (0, 1) (sigmoid). A unit whose memberships are 1 on
a few peaks and 0 elsewhere is an exact OR (redundant enhancers: any open member keeps it) or AND (cooperative
elements: every member needed); one member is a single enhancer. The form follows how expression responds to
regulation in count space — a gene's activity is a sum of its elements' contributions over a floor ε, scaled by
its cell state — so closing everything can remove most of the expression, which an additive log-space term cannot
do without also predicting large effects where the gene is off. A sparsity prior, λ · mean over units of
Σ_j [s_gjh + 4 s_gjh (1 − s_gjh)] (each unit's expected size, and a price on memberships that are neither in nor
out), pulls units to a few definite members (the 2–4 of a redundant group): a member half in a unit makes the
unit partly additive in it.

The base is the paired surrogate of the *observational* cells (its checkpoint is the one `--surrogate paired` trains
on the same data without the screen, so a screen curve trains it once). The cis component is then fitted on the
base's residuals over the observational training cells and the screened training cells, early stopped on the
held-out screened cells (whole cells, so guide combinations the fit never saw; `Screen.combination_overlap`).
Like the locus style the model speaks the plain protocol and takes no fast path.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from datasets.windows import window_pairs
from surrogates.locus import LocusSurrogate, early_stopped, pairs_digest, window_sums

# co-accessibility (within cell types) above which two window peaks start in one OR unit; chosen on seed 1, quick
COACCESS_THRESHOLD = 0.08


class NoScreenError(ValueError):
    """The screen style was asked for on data without a perturbation screen."""


def screen_pairs(data, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(gene, peak) pairs of every targeted peak within `window` bp of a gene's TSS; NoScreenError without a screen
    or without a targeted peak near any gene."""
    if data.screen is None:
        raise NoScreenError("--surrogate screen learns from a perturbation screen and this data set has none: "
                            "simulate one with --simulate screen_cells=N, read yours with --guides FILE and "
                            "--guide-key KEY (or --guide-calls FILE), or use --surrogate paired")
    gene, peak = window_pairs(data.peaks, data.genes, window)
    keep = np.isin(peak, data.screen.targeted_peaks())
    if not keep.any():
        raise NoScreenError(f"no targeted peak of the screen lies within ±{window:,} bp of a gene's TSS, so the screen "
                            "says nothing about any gene's cis-regulation; check the guide table's coordinates")
    return gene[keep], peak[keep]


class ScreenLayer(nn.Module):
    """c_g(x) for every gene (see the module docstring); genes without a targeted peak in their window get b_g."""

    def __init__(self, pair_gene: np.ndarray, pair_peak: np.ndarray, n_genes: int, or_units: int, and_units: int,
                 seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.n_genes, self.or_units, self.and_units = n_genes, or_units, and_units
        cols, local = np.unique(pair_peak, return_inverse=True)
        self.register_buffer("cols", torch.as_tensor(cols, dtype=torch.long))
        self.register_buffer("pair_col", torch.as_tensor(local, dtype=torch.long))
        self.register_buffer("pair_gene", torch.as_tensor(pair_gene, dtype=torch.long))
        units = or_units + and_units
        # softplus(−3) ≈ 0.05: every membership starts small, so no unit starts as an OR over its whole window
        self.a = nn.Parameter(torch.randn(len(pair_peak), units, generator=gen) * 0.5 - 3.0)
        self.u = nn.Parameter(torch.full((n_genes, units), -1.0))  # unit weights softplus(−1) ≈ 0.31
        self.eps = nn.Parameter(torch.zeros(n_genes))  # floor softplus(0) ≈ 0.69
        self.b = nn.Parameter(torch.zeros(n_genes))
        # the gate: a soft OR over the window that multiplies the whole activity (a promoter), its strength
        # r = sigmoid(gate_r) (closing it leaves 1 − r); starts weak and spread thin
        self.gate_a = nn.Parameter(torch.full((len(pair_peak),), -5.0))
        self.gate_r = nn.Parameter(torch.full((n_genes,), -2.0))

    @torch.no_grad()
    def start_units(self, units: dict[int, list[list[int]]], effects: np.ndarray | None = None) -> None:
        """Start OR unit h of gene g as the h-th group of `units[g]` (pair indices): its members at membership
        ≈ 0.82, every other pair of the gene ≈ 0.007 in that unit. With `effects` (per pair: how much closing the
        peak lowered the gene in the screen), the gate starts on the strongest of them and the gene's OR units left
        over as single peaks, the next strongest first (peaks in a group or the gate excepted). Units given neither
        keep their random start."""
        pair_gene = self.pair_gene.cpu().numpy()
        units = {int(g): list(units.get(int(g), [])) for g in np.unique(pair_gene)}
        for g, groups in units.items():
            pairs = np.flatnonzero(pair_gene == g)
            if effects is not None:
                strongest = int(pairs[np.nanargmin(effects[pairs])]) if np.isfinite(effects[pairs]).any() else -1
                if strongest >= 0 and effects[strongest] < 0:  # the gate starts on the gene's strongest closure
                    self.gate_a[strongest] = 1.5
                taken = {m for grp in groups for m in grp} | {strongest}
                singles = sorted((int(i) for i in pairs if int(i) not in taken and effects[i] < 0),
                                 key=lambda i: effects[i])
                groups += [[i] for i in singles[:max(0, self.or_units - len(groups))]]
            rows = torch.as_tensor(pairs, device=self.a.device)
            for h, members in enumerate(groups[:self.or_units]):
                self.a[rows, h] = -5.0
                self.a[torch.as_tensor(members, device=self.a.device), h] = 1.5

    def membership(self) -> torch.Tensor:
        """s[pair, unit] ∈ (0, 1)."""
        return -torch.expm1(-F.softplus(self.a))

    def forward(self, x_cols: torch.Tensor, genes=None) -> torch.Tensor:
        w = F.softplus(self.a)  # −log(1 − s)
        z, wanted, back = window_sums(x_cols, w, self.pair_gene, self.pair_col, self.n_genes, genes)
        full, _, _ = window_sums(torch.ones(1, x_cols.shape[1], dtype=x_cols.dtype, device=x_cols.device), w,
                                 self.pair_gene, self.pair_col, self.n_genes, genes)  # every targeted peak open
        h = self.or_units
        weight, eps = F.softplus(self.u)[wanted], F.softplus(self.eps)[wanted]

        gate_w = F.softplus(self.gate_a)[:, None]
        gz, _, _ = window_sums(x_cols, gate_w, self.pair_gene, self.pair_col, self.n_genes, genes)
        gfull, _, _ = window_sums(torch.ones(1, x_cols.shape[1], dtype=x_cols.dtype, device=x_cols.device), gate_w,
                                  self.pair_gene, self.pair_col, self.n_genes, genes)
        r = torch.sigmoid(self.gate_r)[wanted]

        def activity(z_, gz_):
            # relaxed inputs (SmoothGrad's noise) can make z < 0, where an OR would turn negative and log(A) undefined:
            # an OR reads no less than "nothing open"; binary and [0, 1] inputs never reach the clamp
            or_z, gz_ = z_[..., :h].clamp_min(0.0), gz_.clamp_min(0.0)
            units = torch.cat([-torch.expm1(-or_z), torch.exp(z_[..., h:] - full[..., h:])], dim=-1)
            gate = 1.0 - r * torch.exp(-gz_[..., 0])  # 1 − r + r · OR_gate
            return gate * (eps + (units * weight).sum(-1))

        out = torch.log(activity(z, gz)) - torch.log(activity(full, gfull)) + self.b[wanted]
        return out if back is None else out[:, back]

    def sparsity(self) -> torch.Tensor:
        """The prior's term: mean over the units of all genes with pairs of Σ_j s_gjh + 4 s_gjh (1 − s_gjh)."""
        s = self.membership()
        return (s.sum() + 4.0 * (s * (1 - s)).sum()) / max(1, int(torch.unique(self.pair_gene).numel()) * s.shape[1])


def coaccessible_units(atac, cell_types, pair_gene: np.ndarray, pair_peak: np.ndarray, max_units: int,
                       threshold: float = COACCESS_THRESHOLD, max_size: int = 4) -> dict[int, list[list[int]]]:
    """Per gene, groups of its window pairs (indices into the pairs) whose peaks open together within cell types:
    Pearson correlation of accessibility after removing each cell type's mean (co-accessibility, as Cicero links
    peaks), linked greedily from the strongest pair down while above `threshold`, at most `max_size` peaks a group;
    the `max_units` tightest groups of ≥ 2 peaks. Peaks of one enhancer module open and close together, so these
    are the candidate redundant groups the screen's closures then weigh."""
    cols, local = np.unique(pair_peak, return_inverse=True)
    x = np.asarray(atac[:, cols].todense(), dtype=np.float64)
    types = np.asarray(cell_types)
    for t in np.unique(types):
        rows = types == t
        x[rows] -= x[rows].mean(0)
    sd = x.std(0)
    corr = (x.T @ x) / len(x) / np.maximum(np.outer(sd, sd), 1e-12)
    units: dict[int, list[list[int]]] = {}
    for g in np.unique(pair_gene):
        pairs = np.flatnonzero(pair_gene == g)
        c = corr[np.ix_(local[pairs], local[pairs])]
        owner = list(range(len(pairs)))  # union-find over the gene's pairs
        members = {i: [i] for i in range(len(pairs))}
        iu, ju = np.triu_indices(len(pairs), 1)
        for k in np.argsort(-c[iu, ju], kind="stable"):
            i, j = owner[iu[k]], owner[ju[k]]
            if c[iu[k], ju[k]] < threshold:
                break
            if i != j and len(members[i]) + len(members[j]) <= max_size:
                for m in members.pop(j):
                    owner[m] = i
                    members[i].append(m)
        groups = [sorted(m) for m in members.values() if len(m) > 1]
        tight = sorted(groups, key=lambda m: -np.mean(c[np.ix_(m, m)][np.triu_indices(len(m), 1)]))
        units[int(g)] = [[int(pairs[i]) for i in m] for m in tight[:max_units]]
    return units


def screen_effects(perturbed, residual: np.ndarray, pair_gene: np.ndarray, pair_peak: np.ndarray,
                   gene_rows: np.ndarray) -> np.ndarray:
    """Per window pair (g, j): mean residual log-expression of gene g in screened cells whose guides hit peak j minus
    in those whose guides did not — the marginal effect a screen's per-guide test reads (Gasperini et al. 2019).
    `residual`: cells × the genes `gene_rows` (their data columns); NaN where no cell or every cell was hit."""
    cols, local = np.unique(pair_peak, return_inverse=True)
    hit = np.asarray(perturbed[:, cols].todense(), dtype=np.float64)
    n_hit = hit.sum(0)
    sums = hit.T @ residual  # peaks × genes
    total = residual.sum(0)
    row_of = {int(g): i for i, g in enumerate(gene_rows)}
    gi = np.array([row_of[int(g)] for g in pair_gene])
    n = len(hit)
    with np.errstate(invalid="ignore", divide="ignore"):
        on = sums[local, gi] / n_hit[local]
        off = (total[gi] - sums[local, gi]) / (n - n_hit[local])
    return on - off


class ScreenSurrogate(LocusSurrogate):
    """The observational paired surrogate (`base`) times a `ScreenLayer` in count space."""

    @staticmethod
    def combine(base: torch.Tensor, cis: torch.Tensor) -> torch.Tensor:
        return torch.log1p(torch.expm1(base.clamp_min(0.0)) * torch.exp(cis))


def fit_screen_layer(base, data, or_units: int = 16, and_units: int = 4, window: int = 250_000,
                     sparsity: float = 0.01, lr: float = 1e-2, batch_size: int = 256, max_epochs: int = 200,
                     patience: int = 10, seed: int = 0, progress: bool = True) -> ScreenSurrogate:
    """Fit the screen layer on the base's residuals (see the module docstring)."""
    t0 = time.perf_counter()
    pair_gene, pair_peak = screen_pairs(data, window)
    layer = ScreenLayer(pair_gene, pair_peak, data.n_genes, or_units, and_units, seed).to(base.device)
    model = ScreenSurrogate(base, layer)
    cols = layer.cols.cpu().numpy()
    genes = np.unique(pair_gene)  # the loss reads the genes the screen can inform
    gcols = torch.as_tensor(genes, device=base.device)

    # dense cells × targeted columns (here and in the starts below): 20,000 × 688 float32 = 55 MB at quick scale;
    # a screen of Gasperini et al.'s size (~250k cells × ~6k targets) would need ~6 GB and should be fed in batches
    def block(atac, rna):
        x = torch.as_tensor(np.asarray(atac[:, cols].todense(), dtype=np.float32), device=base.device)
        y0 = base.predict(atac)[:, gcols]
        return x, y0, torch.as_tensor(rna[:, genes], device=base.device)

    screen = data.screen
    train_obs, train_scr, val_scr = data.cells(split="train"), screen.cells("train"), screen.cells("val")
    parts = [block(train_obs.atac, train_obs.rna), block(train_scr.intervened_atac(), train_scr.rna)]
    x_tr, b_tr, y_tr = (torch.cat(t) for t in zip(*parts))
    val_cells = val_scr if val_scr.n_cells else data.cells(split="val")  # a tiny screen may hold none out
    x_va, b_va, y_va = block(val_scr.intervened_atac() if val_scr.n_cells else val_cells.atac, val_cells.rna)

    # where the units start: co-accessible groups (observed ATAC of all training cells) and the screen's marginal
    # effects; the fit then weighs and reshapes them
    types = np.concatenate([train_obs.obs["cell_type"].astype(str), train_scr.obs["cell_type"].astype(str)])
    coaccess = coaccessible_units(sp.vstack([train_obs.atac, train_scr.atac]), types, pair_gene, pair_peak, or_units)
    residual = (parts[1][2] - parts[1][1]).cpu().numpy().astype(np.float64)
    layer.start_units(coaccess, screen_effects(train_scr.perturbed(), residual, pair_gene, pair_peak, genes))

    def predict(x, b):
        return ScreenSurrogate.combine(b, layer(x, gcols))

    best, history = early_stopped(
        layer, lambda idx: F.mse_loss(predict(x_tr[idx], b_tr[idx]), y_tr[idx]) + sparsity * layer.sparsity(),
        lambda: F.mse_loss(predict(x_va, b_va), y_va), len(x_tr), lr=lr, batch_size=batch_size, max_epochs=max_epochs,
        patience=patience, seed=seed, desc="fitting screen layer", progress=progress)
    model.eval()
    with torch.no_grad():
        base_val = float(F.mse_loss(b_va, y_va))
        members = torch.zeros(data.n_genes, layer.membership().shape[1], device=base.device)
        members = members.index_add(0, layer.pair_gene, (layer.membership() > 0.5).float())[gcols]
    seconds = time.perf_counter() - t0
    model.meta = {**{k: v for k, v in base.meta.items() if k not in ("checkpoint", "reused")},
                  "style": "screen", "base_seconds": base.meta.get("seconds"), "cis_seconds": seconds,
                  "seconds": (base.meta.get("seconds") or 0.0) + seconds, "cis_epochs": len(history),
                  "cis_val_mse": best, "base_val_mse_screen": base_val, "cis_pairs": len(pair_peak),
                  "cis_pairs_digest": pairs_digest(pair_gene, pair_peak),
                  "screen_cells_train": int(train_scr.n_cells), "screen_cells_val": int(val_scr.n_cells),
                  "screen_val_combinations_seen": screen.combination_overlap(),
                  "coaccessible_groups": int(sum(len(v) for v in coaccess.values())),
                  "mean_members_per_unit": float(members[members > 0].mean()) if (members > 0).any() else 0.0}
    return model


def load_screen_layer(base, data, config, state_dict) -> ScreenSurrogate:
    """A fitted screen layer (its state_dict) on `base`; the pairs are recomputed from the data and its screen."""
    pair_gene, pair_peak = screen_pairs(data, config.cis_window)
    layer = ScreenLayer(pair_gene, pair_peak, data.n_genes, config.screen_or_units, config.screen_and_units,
                        config.seed)
    layer.load_state_dict(state_dict)
    model = ScreenSurrogate(base, layer.to(base.device))
    model.meta = {"cis_pairs_digest": pairs_digest(pair_gene, pair_peak)}
    return model
