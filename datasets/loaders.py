"""Real single-cell multiome input: 10x Cell Ranger ARC `.h5`, an AnnData `.h5ad` pair, or a MuData `.h5mu`.

`load_multiome` reads one of these, attaches cell-type labels, preprocesses as in the GRIDS paper (binary ATAC,
log1p of counts per 10⁵, top genes plus the markers, peaks in genome order) and caches the result as `.h5mu`.
Every user mistake raises `InputError` with one line that says what is wrong and what to do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from datasets.data import DataValidationError, MultiomeData, assign_split
from datasets.files import cache_root, read_table
from datasets.markers import CELL_TYPES, PAPER_MARKERS

log = logging.getLogger(__name__)

LOADER_VERSION = 1  # part of the cache key: bump when preprocessing changes so stale caches are not reused
LOGNORM_MAX = 20.0  # log1p(1e5) ≈ 11.5, so log-normalised data stays well below this
ACCEPTED = ("a 10x Cell Ranger ARC filtered_feature_bc_matrix.h5, an AnnData pair 'rna.h5ad,atac.h5ad', "
            "or a MuData .h5mu")
TSS_NOTE = ("gene TSS = start of the gene interval; strand is unknown, so for minus-strand genes this is the "
            "gene end rather than its TSS")
PEAK_INTERVAL = re.compile(r"^(.+?)[:\-_](\d+)[\-_](\d+)$")  # chr1:100-600, chr1-100-600, chr1_100_600


class InputError(Exception):
    """A problem with the user's input files or options; the message says what is wrong and what to do."""


@dataclass
class _Raw:
    """What a reader returns: matched cells, matrices as stored, feature tables in file order."""

    rna: sp.csr_matrix  # cells × genes
    atac: sp.csr_matrix  # cells × peaks
    genes: pd.DataFrame  # index gene name; chrom, tss
    peaks: pd.DataFrame  # chrom, start, end
    obs: pd.DataFrame  # index barcode; the file's cell metadata (no columns for 10x)


def load_multiome(spec: str, *, label_key: str | None = None, labels_csv: str | None = None,
                  markers: dict[str, tuple[str, ...]] | None = None, n_top_genes: int = 3000,
                  min_cells_per_type: int = 10, split_seed: int = 0, rna_mod: str = "rna", atac_mod: str = "atac",
                  cache_dir: str | Path | None = None, report: Callable[[str], None] | None = None) -> MultiomeData:
    """Load, label, preprocess and cache real multiome data.

    spec: `filtered_feature_bc_matrix.h5` (10x ARC), `"rna.h5ad,atac.h5ad"`, or `data.h5mu` (modalities
        `rna_mod`, `atac_mod`).
    label_key / labels_csv: an obs column, or a CSV with columns barcode,cell_type (exactly one). Unlabelled cells
        are dropped and reported.
    markers: {cell_type: genes}; Default: the paper's Table 2. Markers of the cell types present must be in the
        data and are always kept among the genes.
    n_top_genes: genes kept, ranked by the one-way ANOVA F statistic of log-normalised expression between cell
        types (the paper keeps the top 3,000 differentially expressed genes). Default: 3000.
    min_cells_per_type: smaller cell types raise `InputError` (each split needs cells). Default: 10.
    cache_dir: Default: $GRIDS_BENCH_CACHE or ~/.cache/grids-bench; results go to `<cache_dir>/data/`.
    report: called with one line per step. Default: `logging.info`.
    """
    report = report or log.info
    fmt, paths = parse_spec(spec)
    markers = dict(PAPER_MARKERS) if markers is None else {str(k): tuple(v) for k, v in markers.items()}
    _check_options(fmt, label_key, labels_csv, n_top_genes, min_cells_per_type)
    options = dict(fmt=fmt, label_key=label_key, markers=sorted(markers.items()), n_top_genes=n_top_genes,
                   min_cells_per_type=min_cells_per_type, split_seed=split_seed, rna_mod=rna_mod,
                   atac_mod=atac_mod, version=LOADER_VERSION)
    key = _fingerprint([*paths, *([Path(labels_csv)] if labels_csv else [])], options)
    cache = cache_root(cache_dir) / "data" / f"{paths[0].stem}-{fmt}-{key}.h5mu"
    cached = _read_cache(cache, report)
    if cached is not None:
        return cached

    steps: list[str] = []

    def step(msg: str) -> None:
        steps.append(msg)
        report(msg)

    raw = _read(fmt, paths, rna_mod, atac_mod, step)
    labels = _labels(raw.obs, label_key, labels_csv, step)
    raw, labels = _keep_labelled(raw, labels, step)
    _check_type_sizes(labels, min_cells_per_type)
    atac, rna, normalisation, genes_idx, order = _preprocess(raw, labels, markers, n_top_genes, step)
    types = [c for c in CELL_TYPES if c in set(labels)] + sorted(set(labels) - set(CELL_TYPES))
    obs = pd.DataFrame({"cell_type": pd.Categorical(labels.to_numpy(), categories=types)},
                       index=pd.Index(raw.obs.index.astype(str), name="barcode"))
    obs["split"] = assign_split(obs["cell_type"], split_seed)
    uns = {"source": [str(p.resolve()) for p in paths], "format": fmt, "labels": label_key or str(labels_csv),
           "normalisation": normalisation, "split_seed": split_seed, "n_top_genes": n_top_genes,
           "loader_version": LOADER_VERSION, "preprocessing": steps}
    if fmt == "10x":
        uns["tss_note"] = TSS_NOTE
    try:
        data = MultiomeData(atac[:, order], rna[:, genes_idx].toarray(), obs,
                            raw.peaks.iloc[order].reset_index(drop=True), raw.genes.iloc[genes_idx].copy(), uns)
    except DataValidationError as e:
        raise InputError(str(e)) from e
    report(f"loaded {data!r}")
    _write_cache(data, cache, report)
    return data


def _preprocess(raw: _Raw, labels: pd.Series, markers: dict, n_top_genes: int, step):
    """Binarised ATAC, normalised RNA and how, the kept genes (markers always among them), the genome order."""
    keep_markers = _check_markers(markers, labels, raw.genes.index, step)
    atac = _binarise(raw.atac, step)
    rna, normalisation = _normalise_rna(raw.rna, step)
    genes_idx = _select_genes(rna, labels, n_top_genes, raw.genes.index.get_indexer(keep_markers), step)
    order = _genome_order(raw.peaks)
    step("peaks: already in genome order" if np.all(order == np.arange(len(order)))
         else "peaks: sorted into genome order (chromosome, start); ATAC columns reordered to match")
    return atac, rna, normalisation, genes_idx, order


def _check_options(fmt: str, label_key, labels_csv, n_top_genes: int, min_cells_per_type: int) -> None:
    if label_key is not None and labels_csv is not None:
        raise InputError("pass either --label-key or --labels, not both")
    if label_key is None and labels_csv is None:
        raise InputError("no cell-type labels given: pass --label-key COL (an obs column of the input) or "
                         "--labels CSV (columns barcode,cell_type)")
    if labels_csv is not None and not Path(labels_csv).is_file():
        raise InputError(f"labels file {labels_csv} does not exist; check the path passed to --labels")
    if fmt == "10x" and label_key is not None:
        raise InputError("10x .h5 files carry no cell metadata, so --label-key cannot be used; pass --labels CSV "
                         "with columns barcode,cell_type")
    if n_top_genes < 1 or min_cells_per_type < 1:
        raise InputError(f"n_top_genes ({n_top_genes}) and min_cells_per_type ({min_cells_per_type}) must be ≥ 1")


def _binarise(atac: sp.spmatrix, step) -> sp.csr_matrix:
    atac = sp.csr_matrix(atac, copy=True)
    atac.data = (atac.data > 0).astype(np.uint8)
    atac.eliminate_zeros()
    step(f"ATAC: binarised {atac.shape[1]} peaks (value > 0 → 1); {atac.nnz / max(1, atac.shape[0]):.0f} open "
         "peaks per cell on average")
    return atac


# ---------------------------------------------------------------------------------------------------- spec, cache
def _read_cache(cache: Path, report) -> MultiomeData | None:
    """The processed data cached under `cache`, or None; a damaged cache is reported and rebuilt, not fatal."""
    if not cache.is_file():
        return None
    from datasets.io import load_h5mu

    try:
        data = load_h5mu(cache)
    except (OSError, KeyError, ValueError) as e:
        report(f"cache {cache} unreadable ({e}); rebuilding")
        return None
    report(f"loaded cached {cache}")
    return data


def parse_spec(spec) -> tuple[str, list[Path]]:
    """('10x' | 'h5ad' | 'h5mu', the files) of an input spec; InputError for a missing file or unknown format.
    Public so that datasets/guides.py finds the guides in the very files the loader read."""
    parts = [p.strip() for p in str(spec).split(",") if p.strip()]
    if not parts:
        raise InputError(f"no input file given; accepted inputs: {ACCEPTED}")
    paths = [Path(p).expanduser() for p in parts]
    for i, p in enumerate(paths):
        if p.is_dir() and (p / "filtered_feature_bc_matrix.h5").is_file():  # a Cell Ranger `outs/` folder
            paths[i] = p = p / "filtered_feature_bc_matrix.h5"
        if not p.is_file():
            raise InputError(f"input file {p} does not exist; check the path passed to --data")
    suffixes = [p.suffix.lower() for p in paths]
    if suffixes == [".h5"]:
        return "10x", paths
    if suffixes == [".h5mu"]:
        return "h5mu", paths
    if suffixes == [".h5ad", ".h5ad"]:
        return "h5ad", paths
    hint = " (an AnnData input is two files: RNA first, then ATAC)" if ".h5ad" in suffixes else ""
    raise InputError(f"unknown input format {spec!r}{hint}; accepted: {ACCEPTED}")


def _fingerprint(paths: list[Path], options: dict) -> str:
    """Cheap identity of the inputs: path, size and modification time of each file, plus every option."""
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(json.dumps(options, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _write_cache(data: MultiomeData, path: Path, report) -> None:
    from datasets.io import save_h5mu

    try:
        save_h5mu(data, path)
        report(f"cached processed data at {path}")
    except OSError as e:  # an unwritable cache slows the next run but does not stop this one
        report(f"could not write cache {path}: {e}")


# ---------------------------------------------------------------------------------------------------- readers
def _read(fmt: str, paths: list[Path], rna_mod: str, atac_mod: str, step) -> _Raw:
    if fmt == "10x":
        return _read_10x(paths[0], step)
    if fmt == "h5ad":
        import anndata as ad

        rna, atac = (_open(ad.read_h5ad, p, "AnnData .h5ad") for p in paths)
        return _from_anndata(rna, atac, (paths[0].name, paths[1].name), None, step)
    import mudata as md

    mdata = _open(md.read_h5mu, paths[0], "MuData .h5mu")
    missing = [m for m in (rna_mod, atac_mod) if m not in mdata.mod]
    if missing:
        raise InputError(f"{paths[0].name} has no modality {missing[0]!r}; it has {list(mdata.mod)} "
                         "(set rna_mod/atac_mod to the RNA and ATAC modality names)")
    names = (f"{paths[0].name}[{rna_mod}]", f"{paths[0].name}[{atac_mod}]")
    return _from_anndata(mdata.mod[rna_mod], mdata.mod[atac_mod], names, mdata.obs, step)


def _open(reader, path: Path, what: str):
    try:
        return reader(path)
    except Exception as e:  # h5py/anndata raise many types for a foreign file; all mean "not this format"
        raise InputError(f"cannot read {path} as {what} ({type(e).__name__}: {e}); check the file") from None


def _read_10x(path: Path, step) -> _Raw:
    import h5py

    f = _open(lambda p: h5py.File(p, "r"), path, "a 10x HDF5 feature-barcode matrix")
    with f:
        need = ["data", "indices", "indptr", "shape", "barcodes", "features/id", "features/name",
                "features/feature_type"]
        missing = [k for k in need if f"matrix/{k}" not in f]
        if missing:
            raise InputError(f"{path.name} is not a 10x feature-barcode matrix (missing matrix/{missing[0]}); pass "
                             "Cell Ranger ARC's filtered_feature_bc_matrix.h5")
        m, feat = f["matrix"], f["matrix/features"]
        data = m["data"][()]
        _check_numeric(data.dtype, f"{path.name} matrix/data")
        n_features, n_cells = (int(x) for x in m["shape"][()])
        try:  # stored CSC by barcode (features × barcodes): the same arrays are CSR cells × features
            X = sp.csr_matrix((data, m["indices"][()], m["indptr"][()]), shape=(n_cells, n_features))
        except ValueError as e:
            raise InputError(f"{path.name} has an inconsistent sparse matrix ({e}); the file is damaged") from None
        barcodes = _strings(m["barcodes"])
        ftype, names, ids = (_strings(feat[k]) for k in ("feature_type", "name", "id"))
        interval = _strings(feat["interval"]) if "interval" in feat else None
    step(f"read 10x {path.name}: {n_cells} cells, {len(ftype)} features")
    found = sorted(str(t) for t in set(ftype))
    for kind in ("Peaks", "Gene Expression"):
        if kind not in found:
            raise InputError(f"{path.name} has no '{kind}' features (feature types: {found}); pass the "
                             "filtered_feature_bc_matrix.h5 of a Cell Ranger ARC multiome run (genes and peaks)")
    is_gene, is_peak = ftype == "Gene Expression", ftype == "Peaks"
    other = int((~is_gene & ~is_peak).sum())
    if other:
        step(f"ignored {other} features of other types ({[t for t in found if t not in ('Peaks', 'Gene Expression')]})")
    peak_text = interval[is_peak] if interval is not None else ids[is_peak]
    peaks = _peak_table(peak_text, path.name)
    genes = pd.DataFrame(index=_unique_names(names[is_gene], step))
    if interval is not None:
        chrom, start, _ = _parse_intervals(interval[is_gene])
        genes["chrom"], genes["tss"] = chrom, start
        step(f"genes: {TSS_NOTE}")
    obs = pd.DataFrame(index=pd.Index(barcodes))
    return _Raw(X[:, np.flatnonzero(is_gene)], X[:, np.flatnonzero(is_peak)], genes, peaks, obs)


def _from_anndata(rna, atac, names: tuple[str, str], global_obs, step) -> _Raw:
    """Match the two modalities' cells by barcode; collect the cell metadata of both (and of a MuData)."""
    for a, name in ((rna, names[0]), (atac, names[1])):
        if a.X is None:
            raise InputError(f"{name} has no matrix X; store the counts in X")
        if not a.obs_names.is_unique:
            dup = a.obs_names[a.obs_names.duplicated()][:3].tolist()
            raise InputError(f"{name} has duplicated cell barcodes {dup}; make them unique (obs_names_make_unique)")
    if _looks_like_peaks(rna.var_names) and not _looks_like_peaks(atac.var_names):
        raise InputError(f"{names[0]} looks like ATAC (features are genomic intervals) and {names[1]} like RNA; "
                         "pass the RNA file first: 'rna.h5ad,atac.h5ad'")
    common = rna.obs_names[rna.obs_names.isin(atac.obs_names)]
    if len(common) == 0:
        raise InputError(f"{names[0]} and {names[1]} share no cell barcodes (e.g. {rna.obs_names[:2].tolist()} vs "
                         f"{atac.obs_names[:2].tolist()}); name the cells the same way in both (check prefixes or "
                         "'-1' suffixes)")
    n_rna, n_atac = rna.n_obs - len(common), atac.n_obs - len(common)
    if n_rna or n_atac:
        step(f"matched cells by barcode: {len(common)} common; dropped {n_rna} RNA-only and {n_atac} ATAC-only cells")
    rna_x = _numeric_csr(rna.X, names[0])[rna.obs_names.get_indexer(common)]
    atac_x = _numeric_csr(atac.X, names[1])[atac.obs_names.get_indexer(common)]
    var = atac.var
    if {"chrom", "start", "end"} <= set(var.columns):
        peaks = pd.DataFrame({"chrom": var["chrom"].astype(str).to_numpy(),
                              "start": pd.to_numeric(var["start"]).astype(np.int64).to_numpy(),
                              "end": pd.to_numeric(var["end"]).astype(np.int64).to_numpy()})
    else:
        peaks = _peak_table(np.asarray(atac.var_names, dtype=str), names[1])
    genes = pd.DataFrame(index=_unique_names(np.asarray(rna.var_names, dtype=str), step))
    if "interval" in rna.var:
        chrom, start, _ = _parse_intervals(rna.var["interval"].astype(str).to_numpy())
        genes["chrom"], genes["tss"] = chrom, start
    elif "chrom" in rna.var and ("tss" in rna.var or "start" in rna.var):
        genes["chrom"] = rna.var["chrom"].astype(object).to_numpy()
        genes["tss"] = pd.to_numeric(rna.var["tss" if "tss" in rna.var else "start"], errors="coerce").to_numpy()
    frames = ([global_obs] if global_obs is not None else []) + [rna.obs, atac.obs]
    obs = pd.concat([f.reindex(common) for f in frames], axis=1)
    obs = obs.loc[:, ~obs.columns.duplicated()]
    step(f"read {names[0]} + {names[1]}: {len(common)} cells, {rna_x.shape[1]} genes, {atac_x.shape[1]} peaks")
    return _Raw(rna_x, atac_x, genes, peaks, obs)


def _strings(ds) -> np.ndarray:
    arr = ds[()]
    if arr.dtype.kind == "S":
        return np.char.decode(arr, "utf-8")
    return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in arr], dtype=str)


def _check_numeric(dtype, what: str) -> None:
    if np.dtype(dtype).kind not in "biuf":
        raise InputError(f"{what} is not numeric (dtype {dtype}); it must hold counts or normalised expression, "
                         "not text — check which matrix was stored")


def _numeric_csr(X, what: str) -> sp.csr_matrix:
    if not sp.issparse(X):
        X = np.asarray(X)
    _check_numeric(X.dtype, f"the matrix X of {what}")
    return sp.csr_matrix(X)


def _unique_names(names: np.ndarray, step) -> pd.Index:
    """Duplicated gene symbols (10x has a few) become NAME-1, NAME-2 like anndata's var_names_make_unique."""
    s = pd.Series(names, dtype=str)
    n = s.groupby(s).cumcount()
    if n.any():
        step(f"genes: {int((n > 0).sum())} duplicated gene names made unique with a -1, -2, … suffix")
    return pd.Index(np.where(n > 0, s + "-" + n.astype(str), s))


def _parse_intervals(text: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """'chr1:100-600' → ('chr1', 100., 600.); unparsable entries give (None, NaN, NaN)."""
    parts = pd.Series(text, dtype=str).str.extract(PEAK_INTERVAL)
    chrom = parts[0].astype(object).where(parts[0].notna(), None).to_numpy()
    return chrom, pd.to_numeric(parts[1]).to_numpy(float), pd.to_numeric(parts[2]).to_numpy(float)


def _looks_like_peaks(names) -> bool:
    return len(names) > 0 and pd.Series(np.asarray(names, dtype=str)).str.match(PEAK_INTERVAL).all()


def _peak_table(text: np.ndarray, where: str) -> pd.DataFrame:
    chrom, start, end = _parse_intervals(text)
    bad = np.isnan(start)
    if bad.any():
        raise InputError(f"cannot read peak coordinates of {where}: {int(bad.sum())} peak names like "
                         f"{text[bad][0]!r} are not 'chr1:100-600' or 'chr1-100-600'; add chrom/start/end columns")
    return pd.DataFrame({"chrom": chrom.astype(str), "start": start.astype(np.int64), "end": end.astype(np.int64)})


# ---------------------------------------------------------------------------------------------------- labels
def _labels(obs: pd.DataFrame, label_key, labels_csv, step) -> pd.Series:
    """Labels aligned to the cells (NaN where a cell has none)."""
    if label_key is not None:
        if label_key not in obs.columns:
            cols = [str(c) for c in obs.columns]
            raise InputError(f"label column {label_key!r} is not in the cell metadata; available columns: {cols}")
        labels, source = obs[label_key], f"obs column {label_key!r}"
    else:
        table = _read_labels_csv(Path(labels_csv))
        labels, source = table.reindex(obs.index), str(labels_csv)
        if labels.isna().all():
            raise InputError(f"none of the barcodes in {labels_csv} match the data's cells (e.g. "
                             f"{table.index[:2].tolist()} vs {obs.index[:2].tolist()}); fix the barcode column")
    labels = pd.Series(labels.to_numpy(dtype=object), index=obs.index)
    empty = labels.isna()
    labels = labels.astype(str).str.strip()
    labels[empty | labels.isin(["", "nan", "NaN", "None"])] = np.nan
    step(f"labels from {source}")
    return labels


def _read_labels_csv(path: Path) -> pd.Series:
    try:
        table = read_table(path, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read labels file {path} ({e}); it must be a CSV with columns barcode,cell_type")
    missing = [c for c in ("barcode", "cell_type") if c not in table.columns]
    if missing:
        raise InputError(f"labels file {path} needs columns barcode,cell_type; missing {missing} "
                         f"(found {list(table.columns)})")
    table = table.dropna(subset=["barcode"]).drop_duplicates(["barcode", "cell_type"])
    dup = table["barcode"][table["barcode"].duplicated()]
    if len(dup):
        raise InputError(f"labels file {path} gives barcode {dup.iloc[0]!r} more than one cell type; keep one row each")
    return table.set_index("barcode")["cell_type"]


def _keep_labelled(raw: _Raw, labels: pd.Series, step) -> tuple[_Raw, pd.Series]:
    keep = labels.notna().to_numpy()
    if not keep.any():
        raise InputError("no cell has a cell-type label; check the label column or labels file")
    if keep.all():
        return raw, labels
    step(f"dropped {int((~keep).sum())} of {len(keep)} cells without a cell-type label")
    idx = np.flatnonzero(keep)
    return _Raw(raw.rna[idx], raw.atac[idx], raw.genes, raw.peaks, raw.obs.iloc[idx]), labels.iloc[idx]


def _check_type_sizes(labels: pd.Series, min_cells: int) -> None:
    counts = labels.value_counts()
    small = counts[counts < min_cells]
    if len(small):
        listed = ", ".join(f"{ct!r} has {n} cells" for ct, n in small.items())
        raise InputError(f"cell type {listed}, fewer than min_cells_per_type={min_cells}; lower min_cells_per_type "
                         "or drop/relabel those cells in the labels")


def _check_markers(markers: dict, labels: pd.Series, gene_names: pd.Index, step) -> list[str]:
    """Marker genes of the cell types present; all must be RNA features."""
    present = set(labels)
    evaluated = [ct for ct in markers if ct in present]
    absent = {ct: [g for g in markers[ct] if g not in gene_names] for ct in evaluated}
    absent = {ct: gs for ct, gs in absent.items() if gs}
    if absent:
        listed = "; ".join(f"{ct}: {', '.join(gs)}" for ct, gs in absent.items())
        raise InputError(f"marker genes absent from the RNA features ({listed}); pass a marker file (--markers FILE "
                         f"with columns cell_type,gene) or fix the gene names (the data has e.g. "
                         f"{gene_names[:3].tolist()})")
    unevaluated = sorted(present - set(evaluated))
    rest = f"; no markers for {unevaluated} (not evaluated)" if unevaluated else ""
    step(f"markers: evaluating {evaluated}{rest}")
    return list(dict.fromkeys(g for ct in evaluated for g in markers[ct]))


# ---------------------------------------------------------------------------------------------------- preprocessing
def _normalise_rna(X: sp.csr_matrix, step) -> tuple[sp.csr_matrix, str]:
    """Raw counts → log1p(counts / cell total × 1e5); already log-normalised values are kept."""
    X = sp.csr_matrix(X, dtype=np.float64)
    vals = X.data[np.isfinite(X.data)]
    if vals.size and vals.min() < 0:
        raise InputError(f"RNA has negative values (min {vals.min():.3g}), so it is scaled or centred; pass raw counts "
                         "(e.g. adata.layers['counts'] or adata.raw) or log-normalised values")
    if vals.size == X.nnz and np.all(vals == np.round(vals)):
        totals = np.asarray(X.sum(axis=1)).ravel()
        if (totals == 0).any():
            step(f"RNA: {int((totals == 0).sum())} cells have no counts; their expression stays 0")
        X = sp.diags(1e5 / np.where(totals == 0, 1, totals)) @ X
        X = sp.csr_matrix(X)
        X.data = np.log1p(X.data)
        step("RNA: raw counts detected (non-negative integers) → log1p(counts / total counts per cell × 1e5)")
        return X, "log1p(counts per 1e5)"
    top = vals.max() if vals.size else 0.0
    if top >= LOGNORM_MAX:
        raise InputError(f"RNA values are non-integer with max {top:.3g} ≥ {LOGNORM_MAX:g}: neither raw counts nor "
                         "log-normalised; pass raw counts (preferred) or log1p-normalised values")
    step(f"RNA: non-integer values with max {top:.3g} < {LOGNORM_MAX:g}; assumed already log-normalised, kept as is")
    return X, "as provided (assumed log-normalised)"


def _select_genes(X: sp.csr_matrix, labels: pd.Series, n_top: int, markers_idx: np.ndarray, step) -> np.ndarray:
    """Top `n_top` genes by the between-cell-type F statistic, plus the markers; columns in file order.

    F = [Σ_k n_k (m_k − m)² / (K − 1)] / [Σ_k Σ_{c∈k} (x_c − m_k)² / (N − K)] per gene: one-way ANOVA on
    the log-normalised values, the usual "differentially expressed between types" ranking. With one cell type
    it falls back to the variance.
    """
    n_genes = X.shape[1]
    if n_top >= n_genes:
        step(f"genes: kept all {n_genes} (n_top_genes={n_top})")
        return np.arange(n_genes)
    codes, _ = pd.factorize(labels)
    K, N = codes.max() + 1, len(codes)
    G = sp.csr_matrix((np.ones(N), (codes, np.arange(N))), shape=(K, N))
    n_k = np.bincount(codes).astype(float)[:, None]
    s1, s2 = (G @ X).toarray(), (G @ X.multiply(X)).toarray()
    mean_k, mean = s1 / n_k, s1.sum(0) / N
    if K > 1 and N > K:
        between = (n_k * (mean_k - mean) ** 2).sum(0) / (K - 1)
        within = np.maximum(s2.sum(0) - (n_k * mean_k**2).sum(0), 0) / (N - K)
        score = np.divide(between, within, out=np.where(between > 0, np.inf, 0.0), where=within > 0)
        criterion = "between-cell-type F statistic"
    else:
        score, criterion = s2.sum(0) / N - mean**2, "variance"
    top = np.argsort(-score, kind="stable")[:n_top]
    extra = np.setdiff1d(markers_idx, top)
    step(f"genes: kept {n_top + len(extra)} of {n_genes}: top {n_top} by {criterion} of log-normalised expression"
         f" plus {len(extra)} marker genes outside the top")
    return np.sort(np.concatenate([top, extra]))


def _chrom_key(name: str) -> tuple:
    """chr1 … chr22, chrX, chrY, chrM, then other contigs by name."""
    s = name[3:] if name.lower().startswith("chr") else name
    if s.isdigit():
        return (0, int(s), "")
    special = {"X": 1, "Y": 2, "M": 3, "MT": 3}
    return (1, special[s.upper()], "") if s.upper() in special else (2, 0, s)


def _genome_order(peaks: pd.DataFrame) -> np.ndarray:
    chroms = peaks["chrom"].astype(str)
    rank = {c: i for i, c in enumerate(sorted(chroms.unique(), key=_chrom_key))}
    return np.lexsort((peaks["end"].to_numpy(), peaks["start"].to_numpy(), chroms.map(rank).to_numpy()))
