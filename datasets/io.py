"""Save/load `MultiomeData` as a MuData `.h5mu` file (modalities `rna` and `atac`), readable by mudata/muon.

Split, cell type and provenance live in the global `obs`/`uns`, so another tool can open the file as is, and
`load_h5mu(save_h5mu(d))` reproduces `d` exactly (same matrices, dtypes, categories, tables).
"""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd

from datasets.data import MultiomeData
from datasets.files import atomic_path

md.set_options(pull_on_update=False)


def save_h5mu(data: MultiomeData, path) -> Path:
    """Write atomically: a crash mid-write never leaves a truncated file under `path`."""
    path = Path(path)
    genes = data.genes.copy()
    genes["chrom"] = genes["chrom"].astype(str)
    rna = ad.AnnData(X=data.rna, var=genes)
    atac = ad.AnnData(X=data.atac, var=data.peaks.set_index(_peak_names(data.peaks)))
    rna.obs_names = atac.obs_names = data.obs.index.astype(str)
    mdata = md.MuData({"rna": rna, "atac": atac})
    mdata.obs = data.obs.copy()
    mdata.uns["grids_bench"] = json.dumps(data.uns, default=str)
    with atomic_path(path) as tmp:
        mdata.write(tmp)
    return path


def load_h5mu(path) -> MultiomeData:
    mdata = md.read_h5mu(path)
    rna, atac = mdata.mod["rna"], mdata.mod["atac"]
    genes = rna.var.copy()
    genes["chrom"] = genes["chrom"].astype(object).replace({"None": None, "nan": None})
    peaks = atac.var.reset_index(drop=True)
    peaks["chrom"] = peaks["chrom"].astype(str)  # anndata stores string columns as categoricals
    peaks["start"] = peaks["start"].astype(np.int64)
    peaks["end"] = peaks["end"].astype(np.int64)
    obs = mdata.obs[["cell_type", "split"] + [c for c in mdata.obs.columns if c not in ("cell_type", "split")]]
    obs = obs.loc[:, ~obs.columns.str.contains(":")]  # drop mudata's per-modality copies ("rna:...")
    uns = json.loads(mdata.uns.get("grids_bench", "{}"))
    return MultiomeData(atac.X, np.asarray(rna.X), obs.copy(), peaks, genes, uns)


def _peak_names(peaks: pd.DataFrame) -> pd.Index:
    return pd.Index(peaks["chrom"].astype(str) + ":" + peaks["start"].astype(str) + "-" + peaks["end"].astype(str))
