"""What the data identify at one locus: a per-locus diagnostic model that is told where the planted peaks are.

The surrogate's closure effects are additive over redundant groups (bench/fidelity/interventional.py: group / Σ
members ≈ 1 against the truth's ≈ 12). Is that the surrogate's fault, or do the observed cells simply not show
redundancy? To tell, fit the smallest model that *can* represent it, on the same training cells, for each marker gene
g and its cell type t (training cells of t only):

    ŷ_c = b_0 + b_p x_c,promoter + Σ_k w_k OR_k(x_c) + Σ_{j ∈ members} v_j x_cj + Σ_e a_e x_ce        (saturating)

with OR_k(x) = 1 − Π_{j∈k} (1 − x_j) over the planted members of redundant group k, least squares on observed
log-expression with a small ridge penalty (intercept free). The data decide between OR terms (redundancy: closing one
member does nothing, the group a lot) and member terms (additive). The same model without the OR terms is the
additive control. Reported per marker and pooled:

* `locus_group_member_ratio`: Σ group / Σ members of the saturating model's own closure effects on the test cells
  of t, pooled over every group of every marker (`pooled_group_member_ratio`: a fitted member's effect can be near
  0 or of either sign, which makes per-group ratios explode; 1 = the data look additive, the truth's pooled value =
  redundancy identified);
* `locus_heldout_gain_pct`: how much lower the saturating model's test-cell MSE is than the additive model's, in %
  (> 0: the OR terms predict unseen cells better, i.e. the data carry the redundancy).

This model reads the simulator's planted-peak lists, which no surrogate may: it bounds what the data identify, it is
not an explainer or a surrogate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.fidelity.interventional import pooled_group_member_ratio
from bench.scoring.metrics import rel_delta_pct

RIDGE = 1.0  # on 0/1 features with 10²–10³ cells: keeps collinear members finite without shrinking real effects


def locus_features(x: np.ndarray, promoter: list[int], groups: list[list[int]], singles: list[int],
                   saturating: bool = True) -> np.ndarray:
    """Design matrix [1, promoter, OR_k…, members…, singles…] from `x` (cells × the locus's planted peaks, 0/1,
    columns indexed by position in `promoter + members + singles`)."""
    members = [j for g in groups for j in g]
    cols = [np.ones(len(x))]
    cols += [x[:, i] for i in range(len(promoter))]
    if saturating:
        start = len(promoter)
        for g in groups:
            block = x[:, start:start + len(g)]
            cols.append(1.0 - np.prod(1.0 - block, axis=1))
            start += len(g)
    cols += [x[:, len(promoter) + i] for i in range(len(members) + len(singles))]
    return np.column_stack(cols).astype(np.float64)


def ridge_fit(X: np.ndarray, y: np.ndarray, penalty: float = RIDGE) -> np.ndarray:
    """argmin ‖y − Xβ‖² + penalty · ‖β[1:]‖² (the intercept, column 0, is not penalised)."""
    reg = penalty * np.eye(X.shape[1])
    reg[0, 0] = 0.0
    return np.linalg.solve(X.T @ X + reg, X.T @ y)


def locus_fit(data, truth, cell_type: str, gene: str) -> dict:
    """Both locus models of one marker on the training cells of its type; closure effects and MSEs on test cells."""
    reg = truth.regulatory_peaks(gene)
    groups = truth.redundant_groups(gene)
    promoter, singles = reg["promoter"], reg["additive"]
    peaks = promoter + [j for g in groups for j in g] + singles
    split = {}
    for name in ("train", "test"):
        cells = data.cells(cell_type, name)
        split[name] = (cells.atac[:, peaks].toarray().astype(np.float64),
                       cells.rna[:, data.gene_index(gene)].astype(np.float64))
    (x_tr, y_tr), (x_te, y_te) = split["train"], split["test"]
    fits = {s: ridge_fit(locus_features(x_tr, promoter, groups, singles, s), y_tr) for s in (True, False)}
    mse = {s: float(np.mean((locus_features(x_te, promoter, groups, singles, s) @ b - y_te) ** 2))
           for s, b in fits.items()}

    def closed(cols):
        x = x_te.copy()
        x[:, cols] = 0.0
        return locus_features(x, promoter, groups, singles) @ fits[True]

    y0 = locus_features(x_te, promoter, groups, singles) @ fits[True]
    position = {p: i for i, p in enumerate(peaks)}
    rows = []
    for k, grp in enumerate(groups):
        names = [f"member {m}" for m in grp]
        for m, name in zip(grp, names):
            rows.append({"cell_type": cell_type, "gene": gene, "entry": name, "kind": "member", "members": None,
                         "locus_rel_pct": rel_delta_pct(y0, closed([position[m]]))})
        rows.append({"cell_type": cell_type, "gene": gene, "entry": f"group {k}", "kind": "group", "members": names,
                     "locus_rel_pct": rel_delta_pct(y0, closed([position[m] for m in grp]))})
    return {"table": pd.DataFrame(rows), "mse_saturating": mse[True], "mse_additive": mse[False],
            "n_train": len(y_tr)}


def locus_redundancy(data, truth, pairs) -> dict:
    """Pooled over the marker (cell type, gene) pairs with test cells: the saturating locus model's group / Σ members
    ratio and its held-out MSE gain over the additive model (%)."""
    fits = [locus_fit(data, truth, ct, g) for ct, g in pairs
            if data.cells(ct, "test").n_cells > 0 and data.cells(ct, "train").n_cells > 0]
    if not fits:
        return {"locus_group_member_ratio": float("nan"), "locus_heldout_gain_pct": float("nan")}
    table = pd.concat([f["table"] for f in fits], ignore_index=True)
    add = sum(f["mse_additive"] for f in fits)
    sat = sum(f["mse_saturating"] for f in fits)
    return {"locus_group_member_ratio": pooled_group_member_ratio(table, "locus_rel_pct"),
            "locus_heldout_gain_pct": 100.0 * (add - sat) / add if add else float("nan")}
