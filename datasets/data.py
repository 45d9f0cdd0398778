"""The multiome data model: sparse binary ATAC + log-normalised RNA for the same cells.

`MultiomeData` is the one object every later stage (surrogate, explainers, evaluator) reads. It is validated on
construction so a bad file fails here, with one message that names the problem, rather than deep in training.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
DEFAULT_SPLIT_FRACTIONS = (0.7, 0.1, 0.2)


class DataValidationError(ValueError):
    """Input data that violates the `MultiomeData` contract; the message says what and how to fix it."""


def assign_split(cell_types: pd.Series, seed: int, fractions=DEFAULT_SPLIT_FRACTIONS) -> pd.Categorical:
    """Seeded train/val/test split, stratified by cell type so every type has cells in every split.

    Within each cell type the cells are permuted by one `np.random.Generator(seed)` and cut at the cumulative
    fractions (rounded), so the same seed and labels always give the same split.
    """
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise DataValidationError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    labels = np.empty(len(cell_types), dtype=object)
    codes = pd.Categorical(cell_types)
    for ct in codes.categories:
        idx = np.flatnonzero(codes == ct)
        idx = idx[rng.permutation(len(idx))]
        cuts = np.round(np.cumsum(fractions)[:-1] * len(idx)).astype(int)
        for name, part in zip(SPLITS, np.split(idx, cuts)):
            labels[part] = name
    return pd.Categorical(labels, categories=list(SPLITS))


def gene_position(names, gene: str, owner: str) -> int:
    """Position of `gene` in `names` (an Index or list). The one gene lookup of the data, the surrogate and the
    simulator's truth: a missing gene raises KeyError naming `owner`, its gene count and up to 5 similar names."""
    index = names if isinstance(names, pd.Index) else pd.Index(names)
    try:
        return int(index.get_loc(gene))
    except KeyError:
        prefix = str(gene).upper()[:3]
        close = [str(g) for g in index if str(g).upper().startswith(prefix)][:5]
        hint = f" Similar: {close}." if close else ""
        raise KeyError(f"gene {gene!r} is not in {owner} ({len(index)} genes).{hint}") from None


def as_binary_csr(atac) -> sp.csr_matrix:
    """ATAC as the data model keeps it: CSR, uint8 ones, int32 sorted indices; DataValidationError for values other
    than 0/1."""
    if not sp.issparse(atac):
        atac = sp.csr_matrix(np.asarray(atac))
    atac = sp.csr_matrix(atac)
    atac.sum_duplicates()
    atac.eliminate_zeros()
    if atac.nnz and not np.all(atac.data == 1):
        bad = np.unique(atac.data[atac.data != 1])[:5]
        raise DataValidationError(
            f"ATAC must be binary (0/1 peak accessibility) but has values {bad.tolist()}; "
            "binarise it first (e.g. `atac.data[:] = 1`), or load raw counts through datasets.loaders, which does."
        )
    out = sp.csr_matrix(
        (np.ones(atac.nnz, dtype=np.uint8), atac.indices.astype(np.int32), atac.indptr.astype(np.int64)),
        shape=atac.shape,
    )
    out.sort_indices()
    return out


@dataclass
class MultiomeData:
    """Paired single-cell ATAC and RNA profiles.

    Attributes
    ----------
    atac : csr_matrix, cells × peaks, uint8 0/1 (int32 column indices, sorted).
    rna : float32 ndarray, cells × genes, log-normalised (log1p of counts per 10⁵ unless `uns` says otherwise).
    obs : DataFrame indexed by barcode with categorical `cell_type` and `split` (train/val/test).
    peaks : DataFrame with `chrom`, `start`, `end` (rows in genome order: chromosome blocks are contiguous).
    genes : DataFrame indexed by gene name with `chrom`, `tss` where known (NaN/None otherwise).
    uns : free-form provenance (source, preprocessing steps, seed).
    screen : a perturbation screen (datasets/screens.py) — screened cells and their guides, kept apart: training
        data of the `screen` surrogate style only, never in `cells(...)`, so never explained or evaluated. None
        for observational data.
    """

    atac: sp.csr_matrix
    rna: np.ndarray
    obs: pd.DataFrame
    peaks: pd.DataFrame
    genes: pd.DataFrame
    uns: dict[str, Any] = field(default_factory=dict)
    screen: Any = None  # datasets.screens.Screen

    def __post_init__(self) -> None:
        self.atac = as_binary_csr(self.atac)
        self.rna = np.asarray(self.rna, dtype=np.float32)
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        n_cells, n_peaks = self.atac.shape
        if self.rna.ndim != 2:
            raise DataValidationError(f"RNA must be a 2-D cells × genes matrix, got shape {self.rna.shape}")
        if self.rna.shape[0] != n_cells:
            raise DataValidationError(
                f"ATAC has {n_cells} cells but RNA has {self.rna.shape[0]}; the two modalities must list the "
                "same cells in the same order (match them by barcode first)"
            )
        if len(self.obs) != n_cells:
            raise DataValidationError(f"obs has {len(self.obs)} rows but the matrices have {n_cells} cells")
        if len(self.peaks) != n_peaks:
            raise DataValidationError(f"peak table has {len(self.peaks)} rows but ATAC has {n_peaks} peaks")
        if len(self.genes) != self.rna.shape[1]:
            raise DataValidationError(f"gene table has {len(self.genes)} rows but RNA has {self.rna.shape[1]} genes")
        n_nan = int(np.isnan(self.rna).sum())
        if n_nan or not np.isfinite(self.rna).all():
            raise DataValidationError(
                f"RNA contains {n_nan} NaN and {int((~np.isfinite(self.rna)).sum()) - n_nan} infinite values; "
                "impute or drop those cells/genes before building MultiomeData"
            )
        if not self.obs.index.is_unique:
            dup = self.obs.index[self.obs.index.duplicated()][:3].tolist()
            raise DataValidationError(f"cell barcodes must be unique; duplicated: {dup}")
        if not self.genes.index.is_unique:
            dup = self.genes.index[self.genes.index.duplicated()][:3].tolist()
            raise DataValidationError(f"gene names must be unique; duplicated: {dup} (use var_names_make_unique)")
        for col in ("cell_type", "split"):
            if col not in self.obs:
                raise DataValidationError(f"obs needs a `{col}` column; it has {list(self.obs.columns)}")
        for col in ("chrom", "start", "end"):
            if col not in self.peaks:
                raise DataValidationError(f"peak table needs `chrom`, `start`, `end`; missing `{col}`")
        self.obs["cell_type"] = self.obs["cell_type"].astype("category")
        if self.obs["cell_type"].isna().any():
            raise DataValidationError("some cells have no cell_type label; drop or label them")
        counts = self.obs["cell_type"].value_counts()
        empty = counts.index[counts == 0].tolist()
        if empty:
            raise DataValidationError(
                f"cell type(s) {empty} have no cells; remove unused categories "
                "(obs['cell_type'].cat.remove_unused_categories())"
            )
        split = self.obs["split"].astype(str)
        unknown = sorted(set(split.unique()) - set(SPLITS))
        if unknown:
            raise DataValidationError(f"unknown split label(s) {unknown}; allowed: {list(SPLITS)}")
        self.obs["split"] = pd.Categorical(split, categories=list(SPLITS))
        if "chrom" not in self.genes:
            self.genes["chrom"] = None
        if "tss" not in self.genes:
            self.genes["tss"] = np.nan
        chrom_codes = pd.factorize(self.peaks["chrom"])[0]
        if np.any(np.diff(chrom_codes) < 0):
            raise DataValidationError(
                "peaks must be grouped by chromosome (each chromosome's peaks contiguous); sort the peak table "
                "and the ATAC columns by (chrom, start)"
            )
        screen = self.screen
        if screen is not None and (screen.atac.shape[1] != n_peaks or screen.rna.shape[1] != self.n_genes):
            raise DataValidationError(
                f"the screen's cells have {self.screen.atac.shape[1]} peaks and {self.screen.rna.shape[1]} genes; "
                f"the data {n_peaks} and {self.n_genes}: screened and observational cells share one feature space"
            )

    # ------------------------------------------------------------------ shape and lookups
    @property
    def n_cells(self) -> int:
        return self.atac.shape[0]

    @property
    def n_peaks(self) -> int:
        return self.atac.shape[1]

    @property
    def n_genes(self) -> int:
        return self.rna.shape[1]

    @property
    def cell_types(self) -> list[str]:
        return [str(c) for c in self.obs["cell_type"].cat.categories]

    @property
    def gene_names(self) -> list[str]:
        return [str(g) for g in self.genes.index]

    def gene_index(self, gene: str) -> int:
        """Column of `gene` in `rna` (`gene_position`'s error if it is absent)."""
        return gene_position(self.genes.index, gene, "the data")

    def chrom_codes(self) -> tuple[np.ndarray, list[str]]:
        """Per-peak chromosome index (0..n_chrom-1, in genome order) and the chromosome names."""
        codes, names = pd.factorize(self.peaks["chrom"].astype(str))
        return codes.astype(np.int64), [str(n) for n in names]

    def __repr__(self) -> str:
        types = ", ".join(f"{k}:{v}" for k, v in self.obs["cell_type"].value_counts(sort=False).items())
        screen = "" if self.screen is None else \
            f"; screen: {self.screen.n_cells} cells × {self.screen.n_guides} guides"
        return (
            f"MultiomeData({self.n_cells} cells × {self.n_peaks} peaks ({self.atac.nnz / max(1, self.atac.shape[0] * self.atac.shape[1]):.1%} open) "
            f"× {self.n_genes} genes; cell types {types}{screen})"
        )

    # ------------------------------------------------------------------ views
    def subset(self, mask_or_index) -> "MultiomeData":
        """Cells selected by a boolean mask or integer index (CSR row slicing; no dense copy)."""
        idx = np.asarray(mask_or_index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        obs = self.obs.iloc[idx].copy()
        obs["cell_type"] = obs["cell_type"].cat.remove_unused_categories()
        # A subset of valid data is valid: skip re-validation (it would rescan every ATAC entry).
        view = object.__new__(MultiomeData)
        view.atac, view.rna, view.obs = self.atac[idx], self.rna[idx], obs
        view.peaks, view.genes, view.uns, view.screen = self.peaks, self.genes, self.uns, self.screen
        return view

    def without_screen(self) -> "MultiomeData":
        """The observational cells alone (the same matrices, no screen): what every style but `screen` trains on,
        so their checkpoints are those of the data without the screen."""
        view = self.subset(np.arange(self.n_cells))
        view.screen = None
        return view

    def cells(self, cell_type: str | None = None, split: str | None = None) -> "MultiomeData":
        """The cells of one cell type and/or split, e.g. `data.cells("Astro", "train")`."""
        mask = np.ones(self.n_cells, dtype=bool)
        if cell_type is not None:
            if cell_type not in self.cell_types:
                raise KeyError(f"cell type {cell_type!r} is not in the data; available: {self.cell_types}")
            mask &= (self.obs["cell_type"] == cell_type).to_numpy()
        if split is not None:
            if split not in SPLITS:
                raise KeyError(f"split {split!r} is not one of {list(SPLITS)}")
            mask &= (self.obs["split"] == split).to_numpy()
        return self.subset(mask)

    # ------------------------------------------------------------------ identity
    def fingerprint(self, screen: bool = True) -> str:
        """A content hash (matrices, labels, split, feature tables) used to key caches of models and results.
        `screen=False`: of the observational cells only (what explainers and the evaluation read); data without a
        screen hash the same either way, and as before screens existed."""
        h = hashlib.sha256()
        for arr in (self.atac.indptr, self.atac.indices, self.rna):
            h.update(np.ascontiguousarray(arr).tobytes())
        for frame in (self.obs[["cell_type", "split"]], self.peaks[["chrom", "start", "end"]]):
            h.update(pd.util.hash_pandas_object(frame.astype(str), index=True).to_numpy().tobytes())
        h.update("\0".join(self.gene_names).encode())
        if screen and self.screen is not None:
            h.update(b"screen" + self.screen.fingerprint().encode())
        return h.hexdigest()[:16]
