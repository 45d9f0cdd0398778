"""Fidelity of the surrogate: predicted vs observed mean expression per cell type on held-out cells.

For each gene, the points are the cell types: x = mean observed log-expression of the type's test cells,
y = mean predicted log-expression. R² = 1 − SS_res / SS_tot of y against x (identity line, not a refit), so a
biased surrogate is penalised. The paper reports a mean marker-gene R² of 0.914.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from datasets.data import MultiomeData
from surrogates.checkpoint import checkpoint_name
from surrogates.model import Surrogate


def r2_identity(observed: np.ndarray, predicted: np.ndarray) -> float:
    """Coefficient of determination of `predicted` as an estimate of `observed` (range (−∞, 1], ↑)."""
    observed, predicted = np.asarray(observed, float), np.asarray(predicted, float)
    ss_tot = np.sum((observed - observed.mean()) ** 2)
    if ss_tot == 0:
        return float("nan")
    return float(1.0 - np.sum((observed - predicted) ** 2) / ss_tot)


@dataclass
class FidelityReport:
    table: pd.DataFrame  # long: gene, cell_type, observed, predicted, n_cells
    per_gene_r2: pd.Series
    marker_r2: float  # mean over marker genes of the per-gene R²
    pooled_r2: float  # R² over all (marker gene, cell type) points
    all_genes_r2: float  # mean per-gene R² over every gene

    def summary(self) -> str:
        return (f"marker-gene R² (mean over genes) = {self.marker_r2:.3f}; pooled marker R² = {self.pooled_r2:.3f};"
                f" all-gene mean R² = {self.all_genes_r2:.3f} (paper: 0.914)")


def fidelity_report(model: Surrogate, data: MultiomeData, marker_genes: list[str], split: str = "test"
                    ) -> FidelityReport:
    held = data.cells(split=split)
    types = held.obs["cell_type"].astype(str).to_numpy()
    pred = model.predict(held.atac, cell_types=types).cpu().numpy()
    cts = [ct for ct in data.cell_types if (types == ct).any()]
    obs_mean = np.stack([held.rna[types == ct].mean(0) for ct in cts])  # types × genes
    pred_mean = np.stack([pred[types == ct].mean(0) for ct in cts])
    n = np.array([(types == ct).sum() for ct in cts])
    per_gene = pd.Series([r2_identity(obs_mean[:, g], pred_mean[:, g]) for g in range(held.n_genes)],
                         index=data.gene_names)
    markers = [g for g in marker_genes if g in per_gene.index]
    cols = [data.gene_index(g) for g in markers]
    table = pd.DataFrame([
        {"gene": g, "cell_type": ct, "observed": obs_mean[i, c], "predicted": pred_mean[i, c], "n_cells": n[i]}
        for g, c in zip(markers, cols) for i, ct in enumerate(cts)
    ])
    return FidelityReport(
        table=table, per_gene_r2=per_gene, marker_r2=float(per_gene[markers].mean()),
        pooled_r2=r2_identity(table["observed"], table["predicted"]),
        all_genes_r2=float(np.nanmean(per_gene.to_numpy())),
    )


def plot_fidelity(report: FidelityReport, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for ct, part in report.table.groupby("cell_type", sort=False):
        ax.scatter(part["observed"], part["predicted"], label=ct, s=28, alpha=0.85)
    lo = float(min(report.table["observed"].min(), report.table["predicted"].min()))
    hi = float(max(report.table["observed"].max(), report.table["predicted"].max()))
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--")
    ax.set_xlabel("observed mean log-expression (test cells)")
    ax.set_ylabel("surrogate prediction")
    ax.set_title(f"Marker genes per cell type — mean R² {report.marker_r2:.3f}")
    ax.legend(fontsize=7, ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fidelity_markdown(model: Surrogate, data: MultiomeData, report: FidelityReport, style: str) -> str:
    """fidelity.md's body: training provenance, the R² summary and the per-gene observed → predicted table."""
    from tabulate import tabulate

    meta = model.meta
    table = report.table.pivot(index="gene", columns="cell_type", values=["observed", "predicted"])
    rows = [[gene, f"{report.per_gene_r2[gene]:.3f}"]
            + [f"{table.loc[gene, ('observed', ct)]:.2f} → {table.loc[gene, ('predicted', ct)]:.2f}"
               for ct in table["observed"].columns] for gene in table.index]
    lines = [f"# Surrogate fidelity ({data.n_cells} cells × {data.n_peaks} peaks × {data.n_genes} genes)", "",
             f"Style: {style}. Checkpoint: {checkpoint_name(meta.get('checkpoint'))} (cache key; reused: "
             f"{meta.get('reused')}); "
             f"training: {meta.get('epochs', meta.get('steps'))}"
             + (f" epochs + cis layer {meta['cis_epochs']} epochs" if "cis_epochs" in meta else "")
             + f" ({meta.get('stopped')}, "
             f"{meta.get('seconds', float('nan')):.0f} s); val MSE: {meta.get('best_val_mse', float('nan')):.4f}", "",
             report.summary(), "", "Mean log-expression per cell type on test cells, observed → predicted:", "",
             tabulate(rows, headers=["gene", "R²"] + list(table["observed"].columns), tablefmt="github",
                      disable_numparse=True)]
    return "\n".join(lines)


def fidelity_summary(model: Surrogate, report: FidelityReport, style: str) -> dict:
    """fidelity.json's fields (the checkpoint by its cache key)."""
    return {"surrogate": style, "checkpoint": checkpoint_name(model.meta.get("checkpoint")),
            "marker_r2": report.marker_r2, "pooled_marker_r2": report.pooled_r2,
            "all_genes_r2": report.all_genes_r2, "training_seconds": model.meta.get("seconds"),
            "reused": model.meta.get("reused")}
