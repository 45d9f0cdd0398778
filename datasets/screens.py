"""Perturbation screens in the data model: cells whose guides closed chosen peaks, kept beside the observational cells.

Observational multiome data barely identify redundancy (docs/trust.md): within a cell type, the configurations that
show one shadow enhancer's effect are rare. Biology measures it by perturbing elements, many per cell (CRISPRi with
dCas9-KRAB, which closes the chromatin it is guided to; Gasperini et al. 2019, Cell: 5,920 candidate enhancers in
254,974 cells). A `Screen` holds such cells:

* `atac`, `rna`, `obs` (barcode index, `cell_type`, `split` ∈ {train, val}) like `MultiomeData`'s, for the screened
  cells only. A guide closes its target, and the ATAC of a screened cell shows that closure where it worked.
* `guides`: cells × guides, sparse 0/1 — which guides each cell received (a cell may have many: high MOI).
* `guide_table`: one row per guide (index = guide name) with `peak`, the column of the targeted peak in the ATAC
  matrix, or -1 for a non-targeting control.

Screened cells are training data only. They never enter `MultiomeData.cells(...)`, so no explainer, evaluation or
leaderboard sees them; only the `screen` surrogate style reads them (surrogates/screen.py), as interventions
do(x_j = 0) on the targeted peaks (`intervened_atac`). Their `split` holds out whole cells, so every validation cell's
guide *combination* is one the training cells do not have (`combination_overlap` measures it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from datasets.data import as_binary_csr

SCREEN_SPLITS = ("train", "val")
SCREEN_VAL_FRACTION = 0.1  # screened cells held out (with their guide combinations) to validate the screen style


def nonzero_pattern(m) -> sp.csr_matrix:
    """Which entries of a sparse matrix are nonzero, as CSR uint8 ones (counts, e.g. guide UMIs, become 1 before the
    cast, so none wraps around to 0), indices sorted."""
    m = sp.csr_matrix(m, copy=True)
    m.sum_duplicates()
    m.data = (m.data != 0).astype(np.uint8)
    m.eliminate_zeros()
    return m


class ScreenValidationError(ValueError):
    """A screen that breaks the `Screen` contract; the message says what and how to fix it."""


def split_screen(n_cells: int, seed: int, val_fraction: float = SCREEN_VAL_FRACTION) -> pd.Categorical:
    """Seeded train/val labels for `n_cells` screened cells (whole cells, so whole guide combinations, held out)."""
    rng = np.random.default_rng([seed, 2])
    labels = np.full(n_cells, "train", dtype=object)
    labels[rng.permutation(n_cells)[:round(val_fraction * n_cells)]] = "val"
    return pd.Categorical(labels, categories=list(SCREEN_SPLITS))


@dataclass
class Screen:
    """Screened cells and their guides (see the module docstring)."""

    atac: sp.csr_matrix
    rna: np.ndarray
    obs: pd.DataFrame
    guides: sp.csr_matrix
    guide_table: pd.DataFrame

    def __post_init__(self) -> None:
        self.atac = as_binary_csr(self.atac)  # the observational cells' contract
        self.rna = np.asarray(self.rna, dtype=np.float32)
        self.guides = nonzero_pattern(self.guides)  # a stored 0 is no guide
        self.guide_table = self.guide_table.copy()
        self.guide_table["peak"] = self.guide_table["peak"].astype(np.int64)
        n = self.atac.shape[0]
        if self.rna.shape[0] != n or len(self.obs) != n or self.guides.shape[0] != n:
            raise ScreenValidationError(
                f"a screen needs the same cells in ATAC ({n}), RNA ({self.rna.shape[0]}), obs ({len(self.obs)}) and "
                f"the guide matrix ({self.guides.shape[0]})")
        if self.guides.shape[1] != len(self.guide_table):
            raise ScreenValidationError(f"the guide matrix has {self.guides.shape[1]} guides but the guide table "
                                        f"{len(self.guide_table)}")
        peak = self.guide_table["peak"].to_numpy()
        if len(peak) and (peak.min() < -1 or peak.max() >= self.atac.shape[1]):
            raise ScreenValidationError(f"guide targets must be peak columns 0..{self.atac.shape[1] - 1} or -1 "
                                        "(non-targeting)")
        for col in ("cell_type", "split"):
            if col not in self.obs:
                raise ScreenValidationError(f"the screen's obs needs a `{col}` column")
        self.obs["split"] = pd.Categorical(self.obs["split"].astype(str), categories=list(SCREEN_SPLITS))
        if self.obs["split"].isna().any():
            raise ScreenValidationError(f"screened cells are split into {list(SCREEN_SPLITS)} only")

    # ------------------------------------------------------------------ shape and lookups
    @property
    def n_cells(self) -> int:
        return self.atac.shape[0]

    @property
    def n_guides(self) -> int:
        return self.guides.shape[1]

    def targeted_peaks(self) -> np.ndarray:
        """Sorted peak columns some guide targets."""
        peak = self.guide_table["peak"].to_numpy()
        return np.unique(peak[peak >= 0])

    def perturbed(self) -> sp.csr_matrix:
        """Cells × peaks, 1 where a cell received a guide against that peak (non-targeting guides drop out)."""
        peak = self.guide_table["peak"].to_numpy()
        targeting = np.flatnonzero(peak >= 0)
        to_peak = sp.csr_matrix((np.ones(len(targeting), dtype=np.uint8), (targeting, peak[targeting])),
                                shape=(self.n_guides, self.atac.shape[1]))
        # sorted: a cell's targets in order, whichever guides reached them (`combination_overlap`)
        return nonzero_pattern(self.guides @ to_peak)

    def intervened_atac(self) -> sp.csr_matrix:
        """The screened cells' accessibility with every targeted peak set to 0: do(x_j = 0) for each guide a cell
        received, whether or not its ATAC shows the closure (a guide that failed, or a screen without ATAC)."""
        out = self.atac - self.atac.multiply(self.perturbed())
        out = sp.csr_matrix(out, dtype=np.uint8)
        out.eliminate_zeros()
        return out

    def cells(self, split: str | None = None) -> Screen:
        """The screened cells of one split ('train' or 'val')."""
        if split is not None and split not in SCREEN_SPLITS:
            raise KeyError(f"screen split {split!r} is not one of {list(SCREEN_SPLITS)}")
        idx = np.flatnonzero((self.obs["split"] == split).to_numpy()) if split else np.arange(self.n_cells)
        view = object.__new__(Screen)
        view.atac, view.rna, view.obs = self.atac[idx], self.rna[idx], self.obs.iloc[idx].copy()
        view.guides, view.guide_table = self.guides[idx], self.guide_table
        return view

    # ------------------------------------------------------------------ summaries
    def summary(self) -> dict:
        """What the screen holds, in the numbers that decide what it can identify: cells, guides, guides per cell,
        how often each target is hit and how often two targets are hit together."""
        peak = self.guide_table["peak"].to_numpy()
        per_cell = np.asarray(self.guides.sum(1)).ravel()
        hits = self.perturbed()
        targets = self.targeted_peaks()
        rate = np.asarray(hits[:, targets].mean(0)).ravel() if len(targets) and self.n_cells else np.zeros(0)
        k = np.diff(hits.indptr).astype(np.float64)  # targets hit per cell
        n_pairs = len(targets) * (len(targets) - 1)
        return {"screened_cells": int(self.n_cells), "guides": int(self.n_guides),
                "non_targeting_guides": int((peak < 0).sum()), "targeted_peaks": len(targets),
                "guides_per_cell": float(per_cell.mean()) if self.n_cells else 0.0,
                "target_hit_rate": float(rate.mean()) if rate.size else 0.0,
                # the share of cells in which two given targets are both hit, mean over target pairs: each cell
                # co-hits k (k − 1) ordered pairs of the T (T − 1)
                "pair_cohit_rate": float(np.mean(k * (k - 1)) / n_pairs) if n_pairs and self.n_cells else 0.0}

    def combination_overlap(self) -> float:
        """Share of validation cells whose exact set of targeted peaks also occurs in a training cell (0 = every
        held-out combination is new)."""
        hits = self.perturbed()
        keys = [hashlib.sha1(hits.indices[hits.indptr[i]:hits.indptr[i + 1]].tobytes()).hexdigest()
                for i in range(self.n_cells)]
        split = self.obs["split"].to_numpy()
        train = {k for k, s in zip(keys, split) if s == "train"}
        val = [k in train for k, s in zip(keys, split) if s == "val"]
        return float(np.mean(val)) if val else float("nan")

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for arr in (self.atac.indptr, self.atac.indices, self.rna, self.guides.indptr, self.guides.indices,
                    self.guide_table["peak"].to_numpy()):
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update(pd.util.hash_pandas_object(self.obs[["cell_type", "split"]].astype(str), index=True)
                 .to_numpy().tobytes())
        h.update("\0".join(map(str, self.guide_table.index)).encode())
        return h.hexdigest()[:16]
