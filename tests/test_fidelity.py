"""Marker-gene fidelity (surrogates/fidelity.py): R² against the identity line, hand-computed on a stand-in model
whose predictions are the observed expression plus a known offset."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from datasets.synthetic import simulate
from surrogates.fidelity import fidelity_report, r2_identity


def test_r2_against_the_identity_line_by_hand():
    observed = np.array([1.0, 2.0, 3.0])
    assert r2_identity(observed, observed) == 1.0
    assert r2_identity(observed, observed + 1.0) == pytest.approx(1 - 3 / 2)  # SS_res 3, SS_tot 2: a bias counts
    assert r2_identity(observed, np.full(3, 2.0)) == pytest.approx(0.0)  # predicting the mean
    assert np.isnan(r2_identity(np.ones(3), np.arange(3.0)))  # no variance to explain


def test_marker_r2_of_a_model_off_by_a_constant_on_one_gene():
    """Predictions = the observed test cells' expression, except gene MOG shifted by c = 0.5: every other gene has
    R² 1; MOG has 1 − T·c² / Σ_t (o_t − ō)² over its T cell-type means o_t."""
    data, _ = simulate("tiny", seed=0)
    held = data.cells(split="test")
    shift = np.zeros(data.n_genes, dtype=np.float32)
    shift[data.gene_index("MOG")] = 0.5
    model = SimpleNamespace(predict=lambda X, cell_types=None: torch.as_tensor(held.rna + shift))
    rep = fidelity_report(model, data, ["AQP4", "MOG"])
    types = held.obs["cell_type"].astype(str).to_numpy()
    o = np.array([held.rna[types == ct, data.gene_index("MOG")].mean() for ct in data.cell_types
                  if (types == ct).any()])
    mog = 1 - o.size * 0.25 / np.sum((o - o.mean()) ** 2)
    assert rep.per_gene_r2["AQP4"] == pytest.approx(1.0, abs=1e-6)
    assert rep.per_gene_r2["MOG"] == pytest.approx(mog, abs=1e-6) and mog < 0.99
    assert rep.marker_r2 == pytest.approx((1 + mog) / 2, abs=1e-6)
    assert set(rep.table["gene"]) == {"AQP4", "MOG"} and len(rep.table) == 2 * o.size
