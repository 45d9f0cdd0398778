"""Helpers shared by the explainers (a leading underscore: the registry does not import it as a method).

* `target_head`: the surrogate's layers after the first, for one gene only;
* `rank_peaks` / `top_l`: order peaks by score, equal scores by how often the peak is open, then by index;
* `open_frequency`: how many of the given cells have each peak open;
* `seeded_torch_rng`: a seeded, isolated torch generator for libraries (captum) that draw from the global one.

Explainers switch the surrogate to eval mode with `with surrogate.evaluating():` (surrogates/model.py), which
restores the previous mode even when the explainer raises.
"""

from __future__ import annotations

import contextlib

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn


def _decoder_parts(surrogate):
    """(a → the decoder's last hidden layer, last weight, last bias) when the RNA decoder is a Sequential ending in
    a Linear, else None: then a few output rows can be computed without the full 3,000-gene product."""
    dec = surrogate.dec_r
    if not (isinstance(dec, nn.Sequential) and isinstance(dec[-1], nn.Linear)):
        return None  # pragma: no cover - other surrogate layouts
    body = dec[:-1]
    return (lambda a: body(surrogate.f_ar(surrogate.enc_a_rest(a)))), dec[-1].weight, dec[-1].bias


def target_head(surrogate, gene: int):
    """a (first pre-activation, any leading shape) → predicted log-expression of one gene, computing only that
    gene's row of the decoder's last layer (the full 3,000-gene output is ~20× the cost when scoring many
    perturbations). Falls back to the full head when the decoder is not a Sequential ending in a Linear."""
    parts = _decoder_parts(surrogate)
    if parts is None:  # pragma: no cover - other surrogate layouts
        return lambda a: surrogate.head_from_hidden(a)[..., gene]
    hidden, weight, bias = parts
    w, b = weight[gene], bias[gene]
    return lambda a: (hidden(a) @ w + b).clamp_min(0.0)


def genes_head(surrogate, genes: torch.Tensor):
    """a → predicted log-expression of `genes` only (…, len(genes)), computing just those rows of the decoder's
    last layer: scoring many perturbations on a few hundred of 3,000 genes costs a fraction of the full output."""
    parts = _decoder_parts(surrogate)
    if parts is None:  # pragma: no cover - other surrogate layouts
        return lambda a: surrogate.head_from_hidden(a)[..., genes]
    hidden, weight, bias = parts
    w, b = weight[genes].T, bias[genes]
    return lambda a: (hidden(a) @ w + b).clamp_min(0.0)


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
