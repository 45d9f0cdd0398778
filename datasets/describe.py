"""What a data set looks like, so a user can check its regime before trusting a leaderboard (`python -m bench data`).

The benchmark only separates explainers in the paper's regime: thousands of open peaks per cell (a few per cent of
all peaks), mostly background chromatin, and marker genes that no small set of peaks silences. `describe` measures
exactly those quantities — on the embedded synthetic data with its planted truth, and on a user's own files without
it — and `render_markdown` turns them into the tables that `python -m bench data` prints.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from datasets.data import SPLITS, MultiomeData
from datasets.markers import PAPER_MARKERS

# The truth's best closure is reported for the paper's smaller subset size (L = 10 in Table 1): the size at which a
# benchmark saturates first if a handful of peaks can silence a marker.
CLOSURE_L = 10
_ALL = 10**9  # an L beyond any gene's planted peaks: `best_closure` then closes every one of them


def describe(data: MultiomeData, truth=None, markers: dict[str, tuple[str, ...]] | None = None) -> dict:
    """Regime statistics of a data set, as one JSON-ready dict (plain ints, floats, strings, lists, dicts).

    data: the data set. truth: the simulator's `SyntheticTruth` (synthetic data only); without it the keys marked
    "truth" below are absent. markers: {cell_type: genes}; Default: the paper's Table 2
    (`datasets.markers.PAPER_MARKERS`), restricted to the cell types present in `data`.

    Keys (stable; consumers may rely on them):

    - `n_cells`, `n_peaks`, `n_genes`: matrix sizes. `n_chromosomes`: distinct chromosomes of the peaks.
    - `cells_per_type`: {cell_type: cells}. `cells_per_split`: {cell_type: {train, val, test: cells}}.
    - `open_per_cell`: {mean, median, p5, p95} of the number of open (nonzero) peaks per cell; p5/p95 are the
      5th and 95th percentiles. The paper's data has ~4,700 per cell on average.
    - `open_per_type`: {cell_type: mean open peaks per cell of that type}.
    - `open_fraction`: open entries / (cells × peaks), in [0, 1]; the paper's data: 0.038.
    - `rna_zero_fraction`: share of RNA entries equal to 0, in [0, 1]. `rna_mean`: mean log-expression over all
      entries (the data's normalisation, log1p of counts per 10⁵ for the simulator and the loaders).
    - `marker_genes`: {cell_type: genes} of the marker table, for the cell types present.
    - truth `planted_peaks_total`: peaks that regulate at least one gene (promoters, members of OR groups and AND
      units, single enhancers, silencers; datasets/worlds.py).
    - truth `background_share`: share of the open entries that lie in background (non-planted) peaks, in [0, 1].
      Near 1 means a cell's open chromatin is mostly background, as in real data; near 0 means every open peak
      is some gene's regulator and closing L peaks removes a large part of a cell's chromatin.
    - truth `markers`: one dict per (cell type, marker gene) with `cell_type`, `gene`, `test_cells` (the test cells
      of that type, on which the next two numbers are computed), `planted_peaks` (the gene's planted peaks),
      `redundant_groups` (its redundant OR groups), `cooperative_units` (its AND units), `silencers`,
      `shared_peaks` (its planted peaks that also regulate another gene; the last three are 0 in the default
      world, datasets/worlds.py), `best10_left` (mean oracle expression left, as a fraction of
      the unperturbed mean, after the truth's best closure of `CLOSURE_L` = 10 planted peaks; see
      `SyntheticTruth.best_closure`) and `all_planted_left` (the same for the best closure of any size: every
      activating planted peak closed, silencers left open — in the worlds without silencers every planted peak). The
      paper's regime: best10_left > 0.2 (no small set silences a marker) and all_planted_left < 0.1 (the planted
      peaks do regulate it).
    - truth `best10_left_mean`, `best10_left_min`, `best10_left_max`, `all_planted_left_mean`,
      `all_planted_left_min`, `all_planted_left_max`: those fractions summarised over `markers` (absent when
      `markers` is empty).
    - `screen` (data with a perturbation screen only): `Screen.summary()` — screened cells (not counted in
      `n_cells`), guides, non-targeting guides, targeted peaks, guides per cell, target hit rate, pair co-hit rate.

    Raises ValueError if a marker gene of a present cell type is not in the data.
    """
    markers = PAPER_MARKERS if markers is None else markers
    markers = {ct: tuple(genes) for ct, genes in markers.items() if ct in data.cell_types}
    absent = sorted({g for genes in markers.values() for g in genes if g not in data.genes.index})
    if absent:
        raise ValueError(f"marker gene(s) {absent} are not in the data's {data.n_genes} genes; pass a marker "
                         "file (--markers FILE) with genes the data has")

    types = data.obs["cell_type"]
    open_counts = np.diff(data.atac.indptr)  # CSR row lengths: ATAC is binary, so nonzeros = open peaks
    per_split = pd.crosstab(types, data.obs["split"], dropna=False).reindex(columns=list(SPLITS), fill_value=0)
    out = {
        "n_cells": data.n_cells,
        "n_peaks": data.n_peaks,
        "n_genes": data.n_genes,
        "n_chromosomes": len(data.chrom_codes()[1]),
        "cells_per_type": {str(ct): int(n) for ct, n in types.value_counts(sort=False).items()},
        "cells_per_split": {str(ct): {s: int(row[s]) for s in SPLITS} for ct, row in per_split.iterrows()},
        "open_per_cell": _summary(open_counts),
        "open_per_type": {ct: float(open_counts[(types == ct).to_numpy()].mean()) for ct in data.cell_types},
        "open_fraction": data.atac.nnz / max(1, data.n_cells * data.n_peaks),
        "rna_zero_fraction": float(np.mean(data.rna == 0)),
        "rna_mean": float(data.rna.mean(dtype=np.float64)),
        "marker_genes": {ct: list(genes) for ct, genes in markers.items()},
    }
    if data.screen is not None:  # only then, so data without a screen describe exactly as before
        out["screen"] = data.screen.summary()
    if truth is not None:
        out.update(_truth_stats(data, truth, markers))
    return out


def _summary(values: np.ndarray) -> dict[str, float]:
    p5, median, p95 = np.percentile(values, [5, 50, 95])
    return {"mean": float(np.mean(values)), "median": float(median), "p5": float(p5), "p95": float(p95)}


def _truth_stats(data: MultiomeData, truth, markers: dict[str, tuple[str, ...]]) -> dict:
    """The `describe` keys that need the planted truth (see its docstring)."""
    planted = truth.planted_mask(data.n_peaks)
    rows = []
    for ct, genes in markers.items():
        test = data.cells(ct, "test")  # held-out cells: where the benchmark scores every closure
        for gene in genes:
            rows.append({
                "cell_type": ct, "gene": gene, "test_cells": test.n_cells,
                "planted_peaks": len(truth.planted_peaks(gene)),
                "redundant_groups": len(truth.redundant_groups(gene)),
                "cooperative_units": len(truth.cooperative_units(gene)),
                "silencers": len(truth.regulatory_peaks(gene)["silencer"]),
                "shared_peaks": len(truth.shared_peaks(gene)),
                "best10_left": float(truth.best_closure(test, gene, CLOSURE_L)[1]),
                "all_planted_left": float(truth.best_closure(test, gene, _ALL)[1]),
            })
    out = {
        "planted_peaks_total": int(planted.sum()),
        # data.atac.indices holds the column (peak) of every open entry
        "background_share": float(np.mean(~planted[data.atac.indices])),
        "markers": rows,
    }
    for key in ("best10_left", "all_planted_left"):
        values = [r[key] for r in rows]
        for name, fn in (("mean", np.mean), ("min", np.min), ("max", np.max)):
            if values:  # no marker of a present cell type: no summary (rather than a NaN, which JSON lacks)
                out[f"{key}_{name}"] = float(fn(values))
    return out


def render_markdown(summary: dict, title: str = "Data set") -> str:
    """The `describe` dict as markdown: an overview, a per-cell-type table and, with the truth, a per-marker table."""
    from tabulate import tabulate

    opc = summary["open_per_cell"]
    overview = [
        ["cells × peaks × genes", f"{summary['n_cells']:,} × {summary['n_peaks']:,} × {summary['n_genes']:,}"],
        ["chromosomes", summary["n_chromosomes"]],
        ["open peaks per cell: mean (median; 5–95 %)",
         f"{opc['mean']:,.0f} ({opc['median']:,.0f}; {opc['p5']:,.0f}–{opc['p95']:,.0f})"],
        ["open fraction of all entries", f"{summary['open_fraction']:.2%}"],
        ["RNA: zero entries", f"{summary['rna_zero_fraction']:.1%}"],
        ["RNA: mean log-expression", f"{summary['rna_mean']:.3f}"],
    ]
    if "background_share" in summary:
        overview += [["planted (regulatory) peaks", f"{summary['planted_peaks_total']:,}"],
                     ["background share of open entries", f"{summary['background_share']:.1%}"]]
    lines = [f"# {title}", "", tabulate(overview, headers=["", "value"], tablefmt="github", disable_numparse=True),
             "", "## Cell types", ""]
    markers = summary["marker_genes"]
    rows = [[ct, n, *summary["cells_per_split"][ct].values(), f"{summary['open_per_type'][ct]:,.0f}",
             ", ".join(markers.get(ct, ())) or "—"] for ct, n in summary["cells_per_type"].items()]
    lines.append(tabulate(rows, headers=["cell type", "cells", *SPLITS, "open peaks / cell", "markers"],
                          tablefmt="github", disable_numparse=True))
    if "screen" in summary:
        lines += ["", "## Perturbation screen", "",
                  ("Screened cells (a targeting guide) are kept apart: the screen surrogate trains on them; no "
                   "explainer or evaluation sees them."), "", _screen_table(summary["screen"])]
    if "markers" in summary:
        lines += ["", "## Marker genes under the planted truth (test cells of each cell type)", "",
                  f"Oracle expression left after the truth's best closure of {CLOSURE_L} planted peaks and after "
                  "its best closure of any size (every activating planted peak; silencers, where the world has "
                  "them, stay open). The paper's regime: best-10 > 20 % (no small set silences a marker), "
                  "all activating planted < 10 %.", ""]
        # the unit kinds only some worlds plant get a column where a marker has them
        extra = [(k, label) for k, label in (("cooperative_units", "AND units"), ("silencers", "silencers"),
                                             ("shared_peaks", "shared peaks"))
                 if any(m.get(k) for m in summary["markers"])]
        rows = [[m["cell_type"], m["gene"], m["test_cells"], m["planted_peaks"], m["redundant_groups"],
                 *(m[k] for k, _ in extra), f"{m['best10_left']:.1%}", f"{m['all_planted_left']:.1%}"]
                for m in summary["markers"]]
        if "best10_left_mean" in summary:
            rows.append(["**mean (min–max)**", "", "", "", "", *([""] * len(extra)),
                         *[f"{summary[k + '_mean']:.1%} ({summary[k + '_min']:.1%}–{summary[k + '_max']:.1%})"
                           for k in ("best10_left", "all_planted_left")]])
        lines.append(tabulate(rows, headers=["cell type", "gene", "test cells", "planted peaks", "redundant groups",
                                             *(label for _, label in extra),
                                             f"left after best {CLOSURE_L}", "left after all activating planted"],
                              tablefmt="github", disable_numparse=True))
    return "\n".join(lines) + "\n"


def _screen_table(screen: dict) -> str:
    """`Screen.summary()` as a two-column table."""
    from tabulate import tabulate

    rows = [["screened cells", f"{screen['screened_cells']:,}"], ["guides", f"{screen['guides']:,}"],
            ["non-targeting guides", f"{screen['non_targeting_guides']:,}"],
            ["targeted peaks", f"{screen['targeted_peaks']:,}"],
            ["guides per cell", f"{screen['guides_per_cell']:.2f}"],
            ["target hit rate (share of screened cells, mean over targets)", f"{screen['target_hit_rate']:.2%}"],
            ["pair co-hit rate (share of screened cells, mean over target pairs)",
             f"{screen['pair_cohit_rate']:.3%}"]]
    return tabulate(rows, headers=["", "value"], tablefmt="github", disable_numparse=True)
