"""Helpers shared by the explainers (a leading underscore: the registry does not import it as a method).

* `rank_peaks` / `top_l`: order peaks by score, equal scores by how often the peak is open, then by index;
* `open_frequency`: how many of the given cells have each peak open;
* `seeded_torch_rng`: a seeded, isolated torch generator for libraries (captum) that draw from the global one.

Explainers see the model they explain only through the protocol of surrogates/protocol.py (`predict`, `dense`,
`gene_index`, `device`, `evaluating`, and optional fast paths checked with `fast_path`); they switch it to eval mode
with `with model.evaluating():`, which restores the previous mode even when the explainer raises.
"""

from __future__ import annotations

import contextlib

import numpy as np
import scipy.sparse as sp
import torch


def rank_peaks(scores: np.ndarray, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """Every peak index, highest score first; equal scores ordered by `tiebreak` (higher first), then by index.

    Methods whose scores tie by construction (SAGE and CXPlain give every peak of a window its window's value,
    LIME's fill has many zeros) pass the peaks' open frequency, so the peak open in most cells comes first."""
    scores = np.asarray(scores, dtype=np.float64)
    keys = [np.arange(scores.size)]
    if tiebreak is not None:
        keys.append(-np.asarray(tiebreak, dtype=np.float64))
    keys.append(-scores)
    return np.lexsort(keys)


def top_l(scores: np.ndarray, L: int, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """The first L of `rank_peaks(scores, tiebreak)`."""
    return rank_peaks(scores, tiebreak)[:L]


def open_frequency(atac: sp.spmatrix) -> np.ndarray:
    """Per peak, the number of cells (rows of `atac`) in which it is open, as float64."""
    return np.asarray(atac.sum(axis=0)).ravel().astype(np.float64)


@contextlib.contextmanager
def seeded_torch_rng(seed: int, device: torch.device):
    """Seed torch's global generator (captum's noise comes from it) inside `fork_rng`: reproducible, and the
    generator state outside is left as it was."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
