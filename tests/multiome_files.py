"""Tiny multiome inputs written in the real on-disk formats (10x ARC .h5, AnnData pair, MuData), for tests.

`toy_multiome()` is deterministic; each `write_*` helper writes it (or a given toy) and returns the spec string to
pass as `--data` / `load_multiome(spec)`. Peaks are deliberately NOT in genome order (chr10 listed before chr2,
starts shuffled) and ATAC holds counts up to 3, so loaders must sort and binarise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

TOY_TYPES = ("Astro", "Oligo", "Zeta")  # Zeta: a made-up type without markers
TOY_TYPE_SIZES = (24, 21, 15)
TOY_MARKERS = {"Astro": ("ALDH1A1", "AQP4", "GJA1"), "Oligo": ("MOBP", "MOG")}
TOY_DE_GENES = ("G01", "G02")  # strongly type-specific non-markers: the top genes by any DE ranking


@dataclass(frozen=True)
class ToyMultiome:
    barcodes: list[str]
    cell_types: list[str]
    counts: np.ndarray  # cells × genes, integer UMI counts
    gene_names: list[str]
    gene_chrom: list[str]
    gene_start: np.ndarray
    gene_end: np.ndarray
    atac: np.ndarray  # cells × peaks, integer fragment counts 0..3
    peak_chrom: list[str]
    peak_start: np.ndarray
    peak_end: np.ndarray

    def peak_names(self, sep: str = ":") -> list[str]:
        """'chr2:100-600' (sep=':') or 'chr2-100-600' (sep='-')."""
        return [f"{c}{sep}{s}-{e}" for c, s, e in zip(self.peak_chrom, self.peak_start, self.peak_end)]

    def gene_intervals(self) -> list[str]:
        return [f"{c}:{s}-{e}" for c, s, e in zip(self.gene_chrom, self.gene_start, self.gene_end)]


def toy_multiome(n_peaks: int = 40, n_other_genes: int = 25, seed: int = 0) -> ToyMultiome:
    """60 cells (Astro 24, Oligo 21, Zeta 15), 5 marker + `n_other_genes` genes, `n_peaks` peaks on chr2/chr10."""
    rng = np.random.default_rng(seed)
    types = np.repeat(np.arange(len(TOY_TYPES)), TOY_TYPE_SIZES)[rng.permutation(sum(TOY_TYPE_SIZES))]
    n_cells = len(types)
    genes = [g for gs in TOY_MARKERS.values() for g in gs] + [f"G{i:02d}" for i in range(1, n_other_genes + 1)]
    rate = np.exp(rng.normal(0.5, 0.5, size=(len(TOY_TYPES), len(genes))))
    for t, ct in enumerate(TOY_TYPES):
        for g in TOY_MARKERS.get(ct, ()):
            rate[t, genes.index(g)] *= 4
    for t, g in ((2, "G01"), (1, "G02")):  # on in one type only: the clearest differential expression
        rate[:, genes.index(g)] = 0.01
        rate[t, genes.index(g)] = 50.0
    counts = rng.poisson(rate[types]).astype(np.int64)
    counts[:, -1] += 1  # every cell has RNA counts
    g_chrom = ["chr2" if i % 2 else "chr10" for i in range(len(genes))]
    g_start = rng.integers(1_000, 900_000, size=len(genes))

    p_chrom = np.array(["chr10"] * (n_peaks // 2) + ["chr2"] * (n_peaks - n_peaks // 2))
    p_start = np.concatenate([np.arange(n_peaks // 2), np.arange(n_peaks - n_peaks // 2)]) * 20_000 + 500
    order = rng.permutation(n_peaks)  # file order is shuffled
    p_chrom, p_start = p_chrom[order], p_start[order]
    atac = rng.binomial(3, 0.25, size=(n_cells, n_peaks))
    alphabet = np.array(list("ACGT"))
    barcodes = ["".join(rng.choice(alphabet, 16)) + "-1" for _ in range(n_cells)]
    return ToyMultiome(barcodes, [TOY_TYPES[t] for t in types], counts, genes, g_chrom, g_start, g_start + 5_000,
                       atac, list(p_chrom), p_start, p_start + 600)


def write_10x_h5(path, toy: ToyMultiome | None = None, *,
                 feature_types: tuple[str, ...] = ("Gene Expression", "Peaks")) -> str:
    """Cell Ranger ARC `filtered_feature_bc_matrix.h5`: features × barcodes CSC, genes then peaks."""
    import h5py

    toy = toy or toy_multiome()
    n_genes, n_peaks = len(toy.gene_names), len(toy.peak_chrom)
    blocks, ids, names, kinds, intervals = [], [], [], [], []
    if "Gene Expression" in feature_types:
        blocks.append(toy.counts)
        ids += [f"ENSG{i:011d}" for i in range(n_genes)]
        names += toy.gene_names
        kinds += ["Gene Expression"] * n_genes
        intervals += toy.gene_intervals()
    if "Peaks" in feature_types:
        blocks.append(toy.atac)
        ids += toy.peak_names()
        names += toy.peak_names()
        kinds += ["Peaks"] * n_peaks
        intervals += toy.peak_names()
    mat = sp.csc_matrix(np.hstack(blocks).T.astype(np.int32))  # features × barcodes, column = barcode
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m["barcodes"] = np.array(toy.barcodes, dtype="S")
        m["data"] = mat.data.astype(np.int32)
        m["indices"] = mat.indices.astype(np.int64)
        m["indptr"] = mat.indptr.astype(np.int64)
        m["shape"] = np.array(mat.shape, dtype=np.int32)
        feat = m.create_group("features")
        feat["_all_tag_keys"] = np.array(["genome", "interval"], dtype="S")
        feat["id"] = np.array(ids, dtype="S")
        feat["name"] = np.array(names, dtype="S")
        feat["feature_type"] = np.array(kinds, dtype="S")
        feat["genome"] = np.array(["GRCh38"] * len(ids), dtype="S")
        feat["interval"] = np.array(intervals, dtype="S")
    return str(path)


def _anndata_pair(toy: ToyMultiome, label_key, rna_x, peak_sep, peak_columns):
    import anndata as ad

    obs = pd.DataFrame(index=pd.Index(toy.barcodes))
    if label_key is not None:
        obs[label_key] = pd.Categorical(toy.cell_types)
    x = sp.csr_matrix(toy.counts.astype(np.float32)) if rna_x is None else rna_x
    var = pd.DataFrame({"interval": toy.gene_intervals()}, index=pd.Index(toy.gene_names))
    rna = ad.AnnData(X=x, obs=obs, var=var)
    peaks = pd.DataFrame(index=pd.Index(toy.peak_names(peak_sep)))
    if peak_columns:
        peaks["chrom"], peaks["start"], peaks["end"] = toy.peak_chrom, toy.peak_start, toy.peak_end
    atac = ad.AnnData(X=sp.csr_matrix(toy.atac.astype(np.float32)), obs=pd.DataFrame(index=obs.index), var=peaks)
    return rna, atac


def write_h5ad_pair(directory, toy: ToyMultiome | None = None, *, label_key: str | None = "cell_type",
                    rna_only: int = 0, atac_only: int = 0, atac_barcode_prefix: str = "", rna_x=None,
                    peak_sep: str = ":", peak_columns: bool = False) -> str:
    """`rna.h5ad` (raw counts, labels in obs[label_key]) and `atac.h5ad`; returns "rna.h5ad,atac.h5ad".

    rna_only / atac_only add that many cells present in one file only; atac_barcode_prefix renames every ATAC cell
    (no common barcodes); rna_x replaces the RNA matrix (e.g. strings, log-normalised or negative values).
    """
    import anndata as ad

    toy = toy or toy_multiome()
    rna, atac = _anndata_pair(toy, label_key, rna_x, peak_sep, peak_columns)
    if rna_only:
        extra = rna[:rna_only].copy()
        extra.obs_names = [f"RNAONLY{i}" for i in range(rna_only)]
        rna = ad.concat([rna, extra], merge="same", uns_merge="same")
    if atac_only:
        extra = atac[:atac_only].copy()
        extra.obs_names = [f"ATACONLY{i}" for i in range(atac_only)]
        atac = ad.concat([atac, extra], merge="same")
    atac.obs_names = [atac_barcode_prefix + b for b in atac.obs_names]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rna.write_h5ad(directory / "rna.h5ad")
    atac.write_h5ad(directory / "atac.h5ad")
    return f"{directory / 'rna.h5ad'},{directory / 'atac.h5ad'}"


def write_h5mu(path, toy: ToyMultiome | None = None, *, label_key: str | None = "cell_type",
               rna_mod: str = "rna", atac_mod: str = "atac") -> str:
    """MuData with modalities `rna_mod`, `atac_mod`; labels in the global obs[label_key]."""
    import mudata as md

    toy = toy or toy_multiome()
    rna, atac = _anndata_pair(toy, None, None, ":", True)
    mdata = md.MuData({rna_mod: rna, atac_mod: atac})
    if label_key is not None:
        mdata.obs[label_key] = pd.Categorical(toy.cell_types)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mdata.write(path)
    return str(path)


def write_labels_csv(path, barcodes, labels) -> str:
    """CSV with columns barcode,cell_type."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"barcode": list(barcodes), "cell_type": list(labels)}).to_csv(path, index=False)
    return str(path)


# ---------------------------------------------------------------------------------------------------- guide screens
TOY_NON_TARGETING = ("ntc1", "ntc2")


def toy_guides(toy: ToyMultiome, n_screened: int = 18, n_controls: int = 8,
               seed: int = 0) -> tuple[dict[str, list[str]], pd.DataFrame]:
    """A small screen of the toy's cells: ({barcode: guides} for the cells that have any, the guide table with
    columns guide,peak). Guides g1…g6 target the toy's first six peaks (g7 the first peak again), ntc1/ntc2 are
    non-targeting. The first `n_screened` cells get 1–3 targeting guides (some an NTC too), the next `n_controls`
    cells NTCs only; the rest no guide."""
    rng = np.random.default_rng(seed)
    names = toy.peak_names()
    targets = {f"g{i + 1}": names[i] for i in range(6)} | {"g7": names[0]}
    calls = {}
    for b in toy.barcodes[:n_screened]:
        guides = list(rng.choice(sorted(targets), size=rng.integers(1, 4), replace=False))
        calls[b] = guides + (["ntc1"] if rng.random() < 0.3 else [])
    for i, b in enumerate(toy.barcodes[n_screened:n_screened + n_controls]):
        calls[b] = [TOY_NON_TARGETING[i % 2]]
    table = pd.DataFrame({"guide": [*targets, *TOY_NON_TARGETING],
                          "peak": [*targets.values(), "non-targeting", "NTC"]})
    return calls, table


def write_guide_table(path, table: pd.DataFrame) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return str(path)


def write_protospacer_calls(path, calls: dict[str, list[str]]) -> str:
    """10x Cell Ranger `protospacer_calls_per_cell.csv`: cell_barcode,num_features,feature_call,num_umis."""
    rows = [{"cell_barcode": b, "num_features": len(gs), "feature_call": "|".join(gs),
             "num_umis": "|".join(str(5 + i) for i in range(len(gs)))} for b, gs in calls.items()]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["cell_barcode", "num_features", "feature_call", "num_umis"]).to_csv(path, index=False)
    return str(path)


def guide_column(barcodes, calls: dict[str, list[str]], sep: str = "|") -> list[str]:
    """The scPerturb-style obs column: each cell's guides joined by `sep`, '' for a cell without one."""
    return [sep.join(calls.get(b, [])) for b in barcodes]


def guide_frame(barcodes, calls: dict[str, list[str]]) -> pd.DataFrame:
    """Cells × guides 0/1 (an obsm matrix), guide names as columns."""
    names = sorted({g for gs in calls.values() for g in gs})
    frame = pd.DataFrame(0, index=pd.Index(list(barcodes)), columns=names, dtype=np.int8)
    for b, gs in calls.items():
        frame.loc[b, gs] = 1
    return frame


def add_guides_to_h5ad(path, calls: dict[str, list[str]], *, key: str = "guide", how: str = "obs",
                       sep: str = "|") -> str:
    """Store the guides in an existing .h5ad: an obs column ('obs'), an obsm DataFrame ('obsm-frame') or an obsm
    array with its names in uns[f"{key}_names"] ('obsm-array')."""
    import anndata as ad

    adata = ad.read_h5ad(path)
    _put_guides(adata, calls, key, how, sep)
    adata.write_h5ad(path)
    return str(path)


def add_guides_to_h5mu(path, calls: dict[str, list[str]], *, key: str = "guide", how: str = "obs",
                       mod: str | None = None, sep: str = "|") -> str:
    """Like `add_guides_to_h5ad`, in a MuData's global tables or (with `mod`) in one modality's."""
    import mudata as md

    with md.set_options(pull_on_update=False):  # as datasets/io.py: keep the tables as written
        mdata = md.read_h5mu(path)
        _put_guides(mdata if mod is None else mdata.mod[mod], calls, key, how, sep)
        mdata.write(path)
    return str(path)


def _put_guides(adata, calls, key: str, how: str, sep: str) -> None:
    if how == "obs":
        adata.obs[key] = guide_column(adata.obs_names, calls, sep)
        return
    frame = guide_frame(adata.obs_names, calls)
    if how == "obsm-frame":
        adata.obsm[key] = frame
    else:
        adata.obsm[key] = frame.to_numpy()
        adata.uns[f"{key}_names"] = np.array(frame.columns, dtype=str)
