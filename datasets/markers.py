"""The paper's cell types and marker genes (GRIDS, Table 2), and reading a user's own marker table."""

from __future__ import annotations

from pathlib import Path

from datasets.files import read_table

CELL_TYPES = ("Exc", "SST", "VIP", "Astro", "Endo", "Micro", "OPC", "Oligo")

# Exc is in the data but not evaluated in the paper.
PAPER_MARKERS: dict[str, tuple[str, ...]] = {
    "Astro": ("ALDH1A1", "AQP4", "GJA1"),
    "Endo": ("CLDN5", "FLT1"),
    "Micro": ("APBB1IP", "CX3CR1"),
    "OPC": ("NXPH1", "OLIG1", "OLIG2"),
    "Oligo": ("MOBP", "MOG"),
    "SST": ("GAD1", "GAD2"),
    "VIP": ("GAD1", "GAD2"),
}

def marker_genes() -> list[str]:
    """Unique marker gene names in a stable order."""
    return list(dict.fromkeys(g for genes in PAPER_MARKERS.values() for g in genes))


def read_marker_table(path) -> dict[str, tuple[str, ...]]:
    """A CSV/TSV with columns `cell_type, gene` (one row per pair) → {cell_type: genes}."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"marker file {path} does not exist")
    table = read_table(path)
    missing = {"cell_type", "gene"} - set(table.columns)
    if missing:
        raise ValueError(f"marker file {path} needs columns cell_type,gene; missing {sorted(missing)}")
    out: dict[str, tuple[str, ...]] = {}
    for ct, genes in table.groupby("cell_type", sort=False)["gene"]:
        out[str(ct)] = tuple(dict.fromkeys(str(g) for g in genes))
    return out
