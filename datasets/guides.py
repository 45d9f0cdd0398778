"""Real perturbation screens: which guides each cell received, and which peak each guide targets.

A screen on real data comes as two pieces, read here and joined to the loaded `MultiomeData` by `attach_screen`:

* the guide → target table (`--guides FILE`, `read_guide_table`): a CSV/TSV with a `guide` column and either a
  `peak` column (a peak name such as chr1:100-200, chr1-100-200 or chr1_100_200) or `chrom`, `start`, `end`
  columns. A target of "non-targeting", "NTC" or "control" (any case; in `peak` or `chrom`) marks a non-targeting
  control, as Cell Ranger's feature reference marks them "Non-Targeting" in `target_gene_id`. Each target becomes
  the data's peak it overlaps most (same chromosome), usually the peak of the same name.
* the per-cell guide assignments, in one of the usual conventions:
  - an obs column of guide identities (`--guide-key COL`), as scPerturb's harmonised files keep them (`perturbation`,
    several guides joined by '|', ';', ',' or '+'; empty or NaN for a cell without a guide);
  - an obsm matrix (`--guide-key KEY`): cells × guides, nonzero where a cell received the guide — a DataFrame whose
    columns are the guide names, or an array whose names are in `uns[f"{KEY}_names"]`;
  - Cell Ranger's `protospacer_calls_per_cell.csv` (`--guide-calls FILE`), columns cell_barcode, num_features,
    feature_call, num_umis, where feature_call joins the guides of a cell with '|'.

Cells that received at least one targeting guide become the `Screen` (datasets/screens.py); cells with no guide or
only non-targeting guides stay observational, with their split. Every input mistake raises
`datasets.loaders.InputError` with one line that says what is wrong and how to fix it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from datasets.data import DataValidationError, MultiomeData
from datasets.files import read_table
from datasets.loaders import PEAK_INTERVAL, InputError, parse_spec
from datasets.screens import Screen, ScreenValidationError, nonzero_pattern, split_screen

_SEPARATORS = r"[|;,+]"  # how an obs column joins a cell's guides (scPerturb and common pipelines)
_NON_TARGETING = {"non-targeting", "nontargeting", "ntc", "control", "non-targeting-control", "negative-control"}
_EMPTY = {"", "nan", "none"}  # what an absent guide looks like once a column has been read as text
CALLS_COLUMNS = ("cell_barcode", "feature_call")  # the columns of protospacer_calls_per_cell.csv we need
TABLE_HELP = "columns guide,peak (e.g. chr1:100-200, or 'non-targeting') or guide,chrom,start,end"


def is_non_targeting(text) -> bool:
    """Whether a target text marks a non-targeting control ('non-targeting', 'NTC', 'control', any case)."""
    if not isinstance(text, str):
        return False
    return re.sub(r"[\s_]+", "-", text.strip().lower()) in _NON_TARGETING


# ---------------------------------------------------------------------------------------------------- options
def check_guide_options(data_spec: str | None, guides: str | None, guide_key: str | None,
                        guide_calls: str | None) -> None:
    """The flag combinations that cannot work, before any file is read (so a typo costs no loading time)."""
    if not (guides or guide_key or guide_calls):
        return
    if not data_spec:
        raise InputError("--guides/--guide-key/--guide-calls read a perturbation screen of your own data and need "
                         "--data; the simulator makes screens with --simulate screen_cells=N")
    if guide_key and guide_calls:
        raise InputError("pass either --guide-key or --guide-calls, not both")
    if not guides:
        raise InputError("--guide-key/--guide-calls need --guides FILE, the guide → target table "
                         f"({TABLE_HELP})")
    if not (guide_key or guide_calls):
        raise InputError("--guides needs the cells' guide assignments too: --guide-key KEY (an obs column or obsm "
                         "entry of the input) or --guide-calls FILE (10x protospacer_calls_per_cell.csv)")
    for path, flag in ((guides, "--guides"), (guide_calls, "--guide-calls")):
        if path and not Path(path).expanduser().is_file():
            raise InputError(f"{flag} file {path} does not exist; check the path passed to {flag}")


# ---------------------------------------------------------------------------------------------------- guide table
def read_guide_table(path, peaks: pd.DataFrame) -> pd.DataFrame:
    """The guide → target table as a DataFrame indexed by guide name, with `peak` (int: the column of the targeted
    peak in the data's ATAC matrix, -1 for a non-targeting control) and `target` (the table's text of it).

    peaks: the data's peak table (`chrom`, `start`, `end`, one row per ATAC column)."""
    path = Path(path).expanduser()
    name = path.name
    try:
        table = read_table(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read guide table {path} ({e}); it must be a CSV with {TABLE_HELP}") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    has_coords = {"chrom", "start", "end"} <= set(table.columns)
    if "guide" not in table.columns or not ("peak" in table.columns or has_coords):
        raise InputError(f"guide table {name} needs {TABLE_HELP}; found {list(table.columns)}")
    table = table.apply(lambda col: col.str.strip())
    table = table[table["guide"] != ""].drop_duplicates()
    dup = table["guide"][table["guide"].duplicated()]
    if len(dup):
        raise InputError(f"guide table {name} gives guide {dup.iloc[0]!r} more than one target; keep one row per "
                         "guide")

    # each row's target as text and as an interval: the peak name wins, coordinates fill rows without one
    text = table["peak"] if "peak" in table.columns else pd.Series("", index=table.index)
    parts = text.str.extract(PEAK_INTERVAL)
    chrom, start, end = parts[0], pd.to_numeric(parts[1]), pd.to_numeric(parts[2])
    control = text.map(is_non_targeting)
    if has_coords:
        use = (text == "") & (table["chrom"] != "")
        control |= use & table["chrom"].map(is_non_targeting)
        use &= ~control
        chrom = chrom.where(~use, table["chrom"])
        start = start.where(~use, pd.to_numeric(table["start"], errors="coerce"))
        end = end.where(~use, pd.to_numeric(table["end"], errors="coerce"))
        text = text.where(~use, table["chrom"] + ":" + table["start"] + "-" + table["end"])
    located = ~control & start.notna() & end.notna() & chrom.notna()
    missing = table["guide"][~control & (text == "")]
    if len(missing):
        raise InputError(f"guide table {name}: guide(s) {missing.tolist()[:5]} have no target (empty peak and no "
                         "chrom/start/end); give each guide a peak such as chr1:100-200, or mark a control "
                         "'non-targeting'")
    unreadable = ~control & ~located
    if unreadable.any():
        i = unreadable.idxmax()
        raise InputError(f"guide table {name}: target {text[i]!r} of guide {table['guide'][i]!r} is not a peak "
                         "like chr1:100-200, chr1-100-200 or chr1_100_200, nor 'non-targeting'; fix the target or "
                         "give chrom,start,end columns")

    peak = np.full(len(table), -1, dtype=np.int64)
    hits = _overlapping_peaks(chrom[located].astype(str).to_numpy(), start[located].to_numpy(np.int64),
                              end[located].to_numpy(np.int64), peaks)
    peak[located.to_numpy()] = hits
    lost = located.to_numpy() & (peak < 0)
    if lost.any():
        examples = [f"{g} → {t}" for g, t in zip(table["guide"][lost][:3], text[lost][:3])]
        chroms = sorted(peaks["chrom"].astype(str).unique())
        raise InputError(f"guide table {name}: {int(lost.sum())} target(s) overlap no peak of the data "
                         f"({'; '.join(examples)}); the data has {len(peaks)} peaks on {chroms[:5]}: check the "
                         "genome build and chromosome names, or drop those guides")
    return pd.DataFrame({"peak": peak, "target": text.to_numpy()},
                        index=pd.Index(table["guide"].to_numpy(), name="guide"))


def _overlapping_peaks(chrom: np.ndarray, start: np.ndarray, end: np.ndarray, peaks: pd.DataFrame) -> np.ndarray:
    """The peak column each interval overlaps most (the identical peak when there is one), -1 where none."""
    p_chrom = peaks["chrom"].astype(str).to_numpy()
    p_start, p_end = peaks["start"].to_numpy(np.int64), peaks["end"].to_numpy(np.int64)
    exact = {(c, s, e): i for i, (c, s, e) in enumerate(zip(p_chrom, p_start, p_end))}
    by_chrom = {}
    for c in np.unique(p_chrom):
        cols = np.flatnonzero(p_chrom == c)
        cols = cols[np.argsort(p_start[cols], kind="stable")]
        by_chrom[c] = (cols, p_start[cols], p_end[cols], int((p_end[cols] - p_start[cols]).max()))
    out = np.full(len(chrom), -1, dtype=np.int64)
    for k, (c, s, e) in enumerate(zip(chrom, start, end)):
        if (c, s, e) in exact:
            out[k] = exact[(c, s, e)]
            continue
        if c not in by_chrom:
            continue
        cols, ps, pe, longest = by_chrom[c]
        # peaks sorted by start: only those starting in (s - longest, e) can overlap [s, e)
        lo, hi = np.searchsorted(ps, s - longest, "right"), np.searchsorted(ps, e, "left")
        overlap = np.minimum(pe[lo:hi], e) - np.maximum(ps[lo:hi], s)
        if overlap.size and overlap.max() > 0:
            out[k] = cols[lo + int(np.argmax(overlap))]
    return out


# ---------------------------------------------------------------------------------------------------- assignments
def guides_from_strings(barcodes, values) -> tuple[pd.Index, list[str], sp.csr_matrix]:
    """Per-cell guide strings (guides joined by '|', ';', ',' or '+'; empty/NaN: none) as (barcodes, guide names
    sorted, cells × guides 0/1 uint8)."""
    barcodes = pd.Index(np.asarray(barcodes).astype(str))
    text = pd.Series(np.asarray(values, dtype=object)).where(lambda s: s.notna(), "").astype(str).str.strip()
    text[text.str.lower().isin(_EMPTY)] = ""
    tokens = text.str.split(_SEPARATORS).explode().str.strip()
    tokens = tokens[tokens.notna() & (tokens != "")]
    names = sorted(tokens.unique().tolist())
    cols = pd.Index(names).get_indexer(tokens.to_numpy())
    m = sp.csr_matrix((np.ones(len(cols), dtype=np.uint8), (tokens.index.to_numpy(), cols)),
                      shape=(len(barcodes), len(names)))
    return barcodes, names, nonzero_pattern(m)


def guides_from_matrix(barcodes, matrix, names) -> tuple[pd.Index, list[str], sp.csr_matrix]:
    """A cells × guides matrix (nonzero = received; NaN = not) with its guide names, as the readers return it."""
    m = sp.csr_matrix(matrix) if sp.issparse(matrix) else sp.csr_matrix(np.nan_to_num(np.asarray(matrix, float)))
    m.data = np.nan_to_num(m.data.astype(float))
    return pd.Index(np.asarray(barcodes).astype(str)), [str(n) for n in names], nonzero_pattern(m)


def read_guide_calls(path) -> tuple[pd.Index, list[str], sp.csr_matrix]:
    """Cell Ranger's protospacer_calls_per_cell.csv (cell_barcode, num_features, feature_call, num_umis; feature_call
    joins a cell's guides with '|'). A barcode listed twice gets the union of its rows."""
    path = Path(path).expanduser()
    try:
        calls = read_table(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read guide calls file {path} ({e}); it must be 10x protospacer_calls_per_cell.csv "
                         "with columns cell_barcode,feature_call") from None
    missing = [c for c in CALLS_COLUMNS if c not in calls.columns]
    if missing:
        raise InputError(f"guide calls file {path.name} needs columns cell_barcode,feature_call (10x "
                         f"protospacer_calls_per_cell.csv); missing {missing} (found {list(calls.columns)})")
    barcodes, names, m = guides_from_strings(calls["cell_barcode"].str.strip(), calls["feature_call"])
    return _merge_duplicates(barcodes, names, m)


def _merge_duplicates(barcodes: pd.Index, names, m: sp.csr_matrix):
    if barcodes.is_unique:
        return barcodes, names, m
    codes, unique = pd.factorize(barcodes)
    pool = sp.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(len(unique), len(codes)))
    return pd.Index(unique), names, nonzero_pattern(pool @ m)


def read_guide_key(spec: str, key: str, rna_mod: str = "rna", atac_mod: str = "atac"):
    """The guide assignments stored in the input file(s) under `key`, as (barcodes, guide names, cells × guides):
    an obs column first, then an obsm entry — in the RNA then the ATAC file of an AnnData pair, in the global then
    the `rna_mod` and `atac_mod` tables of a MuData. Only the barcodes, that column (or entry) and its names are
    read, not the matrices."""
    return _read_guide_key(spec, key, rna_mod, atac_mod)[:3]


def _read_guide_key(spec: str, key: str, rna_mod: str, atac_mod: str):
    """`read_guide_key`'s answer plus where the key was found (for the provenance)."""
    import h5py

    fmt, paths = parse_spec(spec)
    if fmt == "10x":
        raise InputError("10x .h5 files carry no cell metadata, so --guide-key cannot be used; pass --guide-calls "
                         "protospacer_calls_per_cell.csv")
    with contextlib.ExitStack() as stack:
        files = []
        for p in paths:
            try:
                files.append(stack.enter_context(h5py.File(p, "r")))
            except OSError as e:
                raise InputError(f"cannot read {p} to find the guides ({e}); check the file") from None
        if fmt == "h5ad":
            places = [(p.name, f) for p, f in zip(paths, files)]
        else:
            f = files[0]
            places = [(paths[0].name, f)] + [(f"{paths[0].name}[{m}]", f["mod"][m]) for m in (rna_mod, atac_mod)
                                              if "mod" in f and m in f["mod"]]
        for where, group in places:
            if key in _obs_columns(group):
                values = _read_elem(group["obs"][key], where)
                return (*guides_from_strings(_obs_index(group, where), values), f"{where} obs[{key!r}]")
        # a MuData's global obsm also holds one cell-membership mask per modality: not guides
        modalities = set(files[0]["mod"]) if fmt == "h5mu" and "mod" in files[0] else set()
        obsm = [(w, g, [k for k in g.get("obsm", []) if not (g is files[0] and k in modalities)])
                for w, g in places]
        for where, group, keys in obsm:
            if key in keys:
                return (*_obsm_guides(group, key, where), f"{where} obsm[{key!r}]")
        listed = "; ".join(f"{w}: obs {_obs_columns(g)}, obsm {sorted(keys)}" for w, g, keys in obsm)
        raise InputError(f"--guide-key {key!r} is neither an obs column nor an obsm entry ({listed}); pass one of "
                         "them, or --guide-calls for a 10x protospacer calls file")


def _read_elem(elem, where: str):
    try:
        from anndata.io import read_elem
    except ImportError:  # anndata < 0.11
        from anndata.experimental import read_elem
    try:
        return read_elem(elem)
    except Exception as e:  # noqa: BLE001 - anndata raises many types for an element it cannot decode
        raise InputError(f"cannot read {elem.name} of {where} ({type(e).__name__}: {e}); check the file") from None


def _obs_columns(group) -> list[str]:
    if "obs" not in group:
        return []
    obs = group["obs"]
    # anndata records the columns in `column-order`; without it, every member but the index is a column
    order = [str(c) for c in np.atleast_1d(obs.attrs.get("column-order", []))]
    return order or [k for k in obs if k != obs.attrs.get("_index", "_index")]


def _obs_index(group, where: str) -> pd.Index:
    obs = group["obs"]
    name = obs.attrs.get("_index", "_index")
    if name not in obs:
        raise InputError(f"{where} has no cell barcodes in obs (no {name!r}); write it with anndata/mudata")
    return pd.Index(np.asarray(_read_elem(obs[name], where)).astype(str))


def _obsm_guides(group, key: str, where: str):
    index = _obs_index(group, where)
    value = _read_elem(group["obsm"][key], where)
    if isinstance(value, pd.DataFrame):
        return guides_from_matrix(index, value.to_numpy(dtype=float), value.columns)
    names_key = f"{key}_names"
    if "uns" not in group or names_key not in group["uns"]:
        raise InputError(f"obsm[{key!r}] of {where} is an array without guide names; store them in "
                         f"uns[{names_key!r}] or write obsm[{key!r}] as a DataFrame with one column per guide")
    names = np.atleast_1d(np.asarray(_read_elem(group["uns"][names_key], where))).astype(str)
    if len(names) != value.shape[1]:
        raise InputError(f"uns[{names_key!r}] of {where} names {len(names)} guides but obsm[{key!r}] has "
                         f"{value.shape[1]} columns; give one name per column")
    return guides_from_matrix(index, value, names)


# ---------------------------------------------------------------------------------------------------- screen
def attach_screen(data: MultiomeData, barcodes, guide_names, assignments, guide_table: pd.DataFrame, seed: int,
                  source: dict | None = None, report: Callable[[str], None] | None = None) -> MultiomeData:
    """`data` with its screened cells moved into `data.screen`.

    barcodes, guide_names, assignments: a reader's output (cells × guides, nonzero = received). guide_table: from
    `read_guide_table` on `data.peaks`. Cells are matched by barcode; those with at least one targeting guide become
    the `Screen` (split by `split_screen(n, seed)`), the rest stay observational with their split. The screen keeps
    the guides called in the data's cells. `source` (e.g. file names) goes into uns['screen'] with the counts."""
    report = report or (lambda _: None)
    barcodes = pd.Index(np.asarray(barcodes).astype(str))
    assignments = sp.csr_matrix(assignments)
    guide_names = [str(g) for g in guide_names]
    if assignments.shape != (len(barcodes), len(guide_names)):
        raise InputError(f"the guide assignments have shape {assignments.shape} for {len(barcodes)} cells and "
                         f"{len(guide_names)} guides")
    barcodes, guide_names, assignments = _merge_duplicates(barcodes, guide_names, assignments)
    with_guide = np.asarray((assignments != 0).sum(1)).ravel() > 0
    if not with_guide.any():
        raise InputError("no cell has a guide in the guide assignments; check --guide-key/--guide-calls")
    row = data.obs.index.astype(str).get_indexer(barcodes)
    matched = (row >= 0) & with_guide
    if not matched.any():
        raise InputError(f"none of the {int(with_guide.sum())} barcodes with guides match the data's cells (e.g. "
                         f"{barcodes[with_guide][:2].tolist()} vs {data.obs.index[:2].tolist()}); name the cells "
                         "the same way (check prefixes or '-1' suffixes)")

    # cells × guides of the data's cells, restricted to the guides called in them
    A = sp.csr_matrix((np.ones(int(matched.sum())), (row[matched], np.flatnonzero(matched))),
                      shape=(data.n_cells, len(barcodes))) @ assignments
    A = sp.csr_matrix(A)
    A.data[:] = 1
    called = np.flatnonzero(np.asarray(A.sum(0)).ravel() > 0)
    names = pd.Index(guide_names)[called]
    absent = ~names.isin(guide_table.index)
    if absent.any():
        cells = int((A[:, called[absent]].sum(1) > 0).sum())
        raise InputError(f"{int(absent.sum())} of the {len(names)} guides called in the data's cells ({cells} cells "
                         f"carry them) are not in the guide table: {names[absent][:5].tolist()}; add them to the "
                         "--guides table (non-targeting controls too, with peak 'non-targeting')")
    A = sp.csr_matrix(A[:, called], dtype=np.uint8)
    table = guide_table.loc[names].copy()
    peak = table["peak"].to_numpy(np.int64)
    screened = np.asarray(A[:, peak >= 0].sum(1)).ravel() > 0
    if screened.all():
        raise InputError("every cell of the data received a targeting guide, so no observational cell is left to "
                         "explain and evaluate; add the screen's unperturbed cells (no guide or non-targeting only)")
    if not screened.any():
        raise InputError("no cell of the data received a targeting guide (only non-targeting ones), so there is no "
                         "screen; check the guide table's targets")

    keep, scr = np.flatnonzero(~screened), np.flatnonzero(screened)
    screen_obs = pd.DataFrame({"cell_type": data.obs["cell_type"].to_numpy()[scr],
                               "split": split_screen(len(scr), seed)},
                              index=pd.Index(data.obs.index[scr], name=data.obs.index.name))
    obs = data.obs.iloc[keep].copy()
    emptied = sorted(set(data.cell_types) - set(obs["cell_type"].astype(str)))
    obs["cell_type"] = obs["cell_type"].cat.remove_unused_categories()
    # the observational cells keep the loader's split; a type whose cells were mostly screened may have lost the
    # train cells explainers read or the test cells a run scores on (validation cells are pooled over types)
    needed = ("train", "test")
    per_split = pd.crosstab(obs["cell_type"], obs["split"].astype(str)).reindex(columns=list(needed), fill_value=0)
    short = {str(t): [s for s in needed if row[s] == 0] for t, row in per_split.iterrows() if (row == 0).any()}
    if short:
        raise InputError(f"after the {len(scr)} screened cells move out, cell type(s) {sorted(short)} have no "
                         f"unperturbed cell in split(s) {sorted({s for v in short.values() for s in v})}; runs need "
                         "each "
                         "type's unperturbed cells to explain (train) and to score on (test): add unperturbed cells of "
                         "those types, or leave them out of the labels")
    non_targeting_only = int((np.asarray(A.sum(1)).ravel()[keep] > 0).sum())
    counts = {"screened_cells": len(scr), "observational_cells": len(keep),
              "non_targeting_only_cells": non_targeting_only,
              "barcodes_with_guides": int(with_guide.sum()),
              "unmatched_barcodes": int((with_guide & (row < 0)).sum()),
              "guides_in_table": len(guide_table), "guides_called": len(names),
              "cell_types_all_screened": emptied}
    uns = {**data.uns, "screen": {**(source or {}), **counts, "split_seed": seed}}
    try:
        screen = Screen(data.atac[scr], data.rna[scr], screen_obs, A[scr], table)
        out = MultiomeData(data.atac[keep], data.rna[keep], obs, data.peaks, data.genes, uns, screen=screen)
    except (DataValidationError, ScreenValidationError) as e:
        raise InputError(str(e)) from e
    report(f"screen: {len(scr)} cells with a targeting guide moved out of the observational cells "
           f"({len(keep)} left, {non_targeting_only} of them with non-targeting guides only); "
           f"{len(names)} guides called, {counts['unmatched_barcodes']} barcodes with guides not in the data")
    if emptied:
        report(f"screen: every cell of {emptied} is screened, so no observational cell of that type is left")
    return out


def load_screen(data: MultiomeData, spec: str, guides: str, *, guide_key: str | None = None,
                guide_calls: str | None = None, rna_mod: str = "rna", atac_mod: str = "atac", seed: int = 0,
                report: Callable[[str], None] | None = None) -> MultiomeData:
    """Read the guide table and the assignments (from `guide_key` in the input `spec`, or the `guide_calls` file)
    and `attach_screen` them to `data`, the `load_multiome(spec)` result."""
    check_guide_options(spec, guides, guide_key, guide_calls)
    table = read_guide_table(guides, data.peaks)
    if guide_key is not None:
        barcodes, names, assignments, where = _read_guide_key(spec, guide_key, rna_mod, atac_mod)
        source = {"guides": Path(guides).name, "guide_key": guide_key, "read_from": where}
    else:
        barcodes, names, assignments = read_guide_calls(guide_calls)
        source = {"guides": Path(guides).name, "guide_calls": Path(guide_calls).name}
    return attach_screen(data, barcodes, names, assignments, table, seed, source=source, report=report)
