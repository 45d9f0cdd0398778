"""Interventional fidelity: does the surrogate respond to closing peaks the way the simulator's truth does?

Marker R² (surrogates/fidelity.py) only checks predicted vs observed *means per cell type*; a surrogate can match
them and still get every closure wrong. On synthetic data the truth is known, so for each marker gene and the test
cells of its cell type we close a fixed panel of peak sets and compare surrogate Rel Δ with oracle Rel Δ:

* each planted member of each redundant group alone (`member`), each whole redundant group (`group`), the
  promoter (`promoter`), all planted peaks of the gene (`all planted`);
* 10 and 128 background peaks drawn at random (`random 10`, `random 128`; a seeded draw per gene);
* the top 10 and 128 peaks by the surrogate's first-order closure effect mean_c x_cj · ∂ŷ/∂x_cj on the test cells
  (`surrogate top 10`, `surrogate top 128`) — what a gradient explainer would pick.

Summaries (each a pure function below):
* `interventional_spearman`: Spearman ρ between surrogate and oracle Rel Δ pooled over every marker × panel entry
  (range [−1, 1], ↑; 1 = the surrogate orders closures as the truth does);
* `group_member_ratio_*`: for each redundant group, Rel Δ(whole group) / Σ Rel Δ(each member alone), averaged over
  groups — 1 for an additive response, ≫ 1 for redundancy (closing one member does little, the group a lot). The
  truth's value is the target; a surrogate near 1 has learned the redundancy as if it were additive, which is
  the regime where ranking single peaks is as good as a subset search.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from tabulate import tabulate

from bench.scoring.metrics import oracle_rel_delta_pct, rel_delta_pct
from surrogates.protocol import cell_types_of, entry_gradients

PANEL_SIZES = (10, 128)


@dataclass
class InterventionalReport:
    table: pd.DataFrame  # gene, cell_type, entry, kind, n_peaks, surrogate_rel_pct, oracle_rel_pct
    spearman: float
    group_ratio_surrogate: float
    group_ratio_oracle: float

    def summary(self) -> dict:
        planted = self.table[self.table["kind"] == "all planted"] if len(self.table) else self.table
        return {"interventional_spearman": self.spearman, "group_member_ratio_surrogate": self.group_ratio_surrogate,
                "group_member_ratio_oracle": self.group_ratio_oracle,
                # closing every planted peak of a marker: whether the model reads cis-regulation at all (the ratio
                # only says whether it reads redundancy)
                "all_planted_surrogate_pct": float(planted["surrogate_rel_pct"].mean()) if len(planted) else None,
                "all_planted_oracle_pct": float(planted["oracle_rel_pct"].mean()) if len(planted) else None,
                "panel_entries": int(len(self.table))}


def first_order_closure_effect(surrogate, cells, gene: str) -> np.ndarray:
    """mean_c x_cj · ∂ŷ_gene/∂x_cj for every peak j: the first-order drop when j is closed."""
    _, idx, g = entry_gradients(surrogate, cells.atac, gene, cell_types_of(cells))
    total = torch.zeros(surrogate.n_peaks, dtype=torch.float64, device=surrogate.device)
    total.index_add_(0, idx, g.double())
    return (total / max(1, cells.n_cells)).cpu().numpy()


def panel(truth, surrogate, cells, gene: str, rng: np.random.Generator) -> list[tuple[str, str, np.ndarray]]:
    """(entry name, kind, peak indices) of the fixed closure panel for one gene."""
    reg = truth.regulatory_peaks(gene)
    entries = [(f"member {m}", "member", np.array([m])) for grp in truth.redundant_groups(gene) for m in grp]
    entries += [(f"group {k}", "group", np.array(grp)) for k, grp in enumerate(truth.redundant_groups(gene))]
    entries += [("promoter", "promoter", np.array(reg["promoter"]))] if reg["promoter"] else []
    entries.append(("all planted", "all planted", truth.planted_peaks(gene)))
    background = np.flatnonzero(~truth.planted_mask(cells.n_peaks))
    effect = first_order_closure_effect(surrogate, cells, gene)
    order = np.lexsort((np.arange(effect.size), -effect))  # largest first-order drop first, ties by index
    for L in PANEL_SIZES:
        entries.append((f"random {L}", "random", rng.choice(background, size=min(L, background.size), replace=False)))
        entries.append((f"surrogate top {L}", "surrogate top", order[:L]))
    return entries


def closure_effects(truth, surrogate, cells, gene: str, panel_entries) -> list[tuple[float, float]]:
    """(surrogate Rel Δ %, oracle Rel Δ %) of closing each entry's peaks in `cells`; the unperturbed predictions
    are computed once for the whole panel."""
    y0 = surrogate.predict(cells.atac, genes=[gene])[:, 0].cpu().numpy()
    e0 = truth.expression(cells, genes=[gene])[:, 0]
    effects = []
    for peaks in panel_entries:
        y1 = surrogate.predict(cells.atac, closed=peaks, genes=[gene])[:, 0].cpu().numpy()
        e1 = truth.expression(cells, closed=peaks, genes=[gene])[:, 0]
        effects.append((rel_delta_pct(y0, y1), oracle_rel_delta_pct(e0, e1)))
    return effects


def group_member_ratio(table: pd.DataFrame, column: str) -> float:
    """Mean over redundant groups of Rel Δ(group) / Σ Rel Δ(its members alone); NaN without groups.

    `table` rows of kind 'group' carry `members` (the member entry names)."""
    by_name = table.set_index(["gene", "cell_type", "entry"])[column]
    ratios = []
    for row in table[table["kind"] == "group"].itertuples():
        members = sum(by_name[(row.gene, row.cell_type, m)] for m in row.members)
        ratios.append(getattr(row, column) / members if members != 0 else np.nan)
    ratios = np.asarray(ratios, dtype=float)
    return float(np.nanmean(ratios)) if np.isfinite(ratios).any() else float("nan")


def pooled_group_member_ratio(table: pd.DataFrame, column: str) -> float:
    """Σ over redundant groups of Rel Δ(group) / Σ over groups of Σ Rel Δ(its members alone): the group / member
    ratio pooled before dividing, which stays finite where single members' effects are near 0 or of either sign
    (a fitted model's; `group_member_ratio` averages per-group ratios). NaN without groups (e.g. the additive
    world, datasets/worlds.py)."""
    if table.empty or "kind" not in table:
        return float("nan")
    groups = table.loc[table["kind"] == "group", column].sum()
    members = table.loc[table["kind"] == "member", column].sum()
    return float(groups / members) if members != 0 else float("nan")


def interventional_fidelity(surrogate, data, truth, pairs, seed: int = 0) -> InterventionalReport:
    """The closure panel for every (cell type, gene) in `pairs`, on the test cells of that type."""
    rng = np.random.default_rng(seed)
    rows = []
    for cell_type, gene in pairs:
        cells = data.cells(cell_type, "test")
        if cells.n_cells == 0:  # a cell type without test cells has nothing to measure
            continue
        groups = truth.redundant_groups(gene)
        entries = panel(truth, surrogate, cells, gene, rng)
        effects = closure_effects(truth, surrogate, cells, gene, [peaks for _, _, peaks in entries])
        for (name, kind, peaks), (sur, ora) in zip(entries, effects):
            members = [f"member {m}" for m in groups[int(name.split()[1])]] if kind == "group" else None
            rows.append({"cell_type": cell_type, "gene": gene, "entry": name, "kind": kind, "n_peaks": len(peaks),
                         "surrogate_rel_pct": sur, "oracle_rel_pct": ora, "members": members})
    table = pd.DataFrame(rows)
    rho = float(spearmanr(table["surrogate_rel_pct"], table["oracle_rel_pct"]).statistic) if len(table) > 2 \
        else float("nan")
    return InterventionalReport(table=table, spearman=rho,
                                group_ratio_surrogate=group_member_ratio(table, "surrogate_rel_pct"),
                                group_ratio_oracle=group_member_ratio(table, "oracle_rel_pct"))


def kind_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean surrogate and oracle Rel Δ per panel entry kind (and size), for the fidelity report."""
    key = table["kind"] + np.where(table["kind"].isin(["random", "surrogate top"]),
                                   " " + table["n_peaks"].astype(str), "")
    return (table.assign(entry_kind=key).groupby("entry_kind", sort=False)[["surrogate_rel_pct", "oracle_rel_pct"]]
            .mean().reset_index())


def interventional_markdown(report: InterventionalReport) -> str:
    """The summary numbers and the mean Rel Δ per panel kind, surrogate beside oracle."""
    kinds = kind_summary(report.table)
    rows = [[k, f"{s:+.2f}", f"{o:+.2f}"] for k, s, o in kinds.itertuples(index=False)]
    return "\n".join([
        "## Interventional fidelity (synthetic truth, test cells of each marker's cell type)", "",
        f"Spearman ρ of surrogate vs oracle Rel Δ over {len(report.table)} closures (all markers × panel): "
        f"**{report.spearman:.3f}**. Group / Σ members ratio (1 = additive, ≫ 1 = redundant): surrogate "
        f"**{report.group_ratio_surrogate:.2f}**, truth **{report.group_ratio_oracle:.2f}**. Closing all of a "
        f"marker's planted peaks: surrogate **{report.summary()['all_planted_surrogate_pct']:+.1f} %**, truth "
        f"**{report.summary()['all_planted_oracle_pct']:+.1f} %** (mean over markers).", "",
        tabulate(rows, headers=["closure", "surrogate Rel Δ (%)", "oracle Rel Δ (%)"], tablefmt="github",
                 disable_numparse=True), ""])
