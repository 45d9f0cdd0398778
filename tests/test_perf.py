"""bench/studies/perf.py: the dense-embedding form computes the same function as the model, and the ratios are read off
the right rows (hand-computed)."""

import numpy as np
import pandas as pd
import pytest
import torch

from bench.studies.perf import DENSE_EMB, PAPER_STEP, SPARSE, _kernels, dense_embedding_grad, perf_ratios
from datasets.synthetic import simulate
from surrogates.model import SurrogateConfig
from surrogates.train import build_surrogate


def test_the_reference_form_has_the_models_gradient():
    """Gathering open/closed embeddings densely and summing per chromosome is the same function as the model's
    dense path, so ∂ŷ/∂x agrees: the timing compares two implementations of one network."""
    data, _ = simulate("tiny", seed=0)
    torch.manual_seed(0)
    model = build_surrogate(data, SurrogateConfig(hidden=16, latent=4)).eval()
    x = torch.as_tensor(data.atac[:5].toarray(), dtype=torch.float32)
    reference = dense_embedding_grad(model, x.clone().requires_grad_(True), gi=3)
    xd = x.clone().requires_grad_(True)
    model(xd)[:, 3].sum().backward()
    torch.testing.assert_close(reference, xd.grad, rtol=1e-4, atol=1e-6)


def test_the_two_sparse_rows_compute_the_same_gains():
    """The timed sparse row (GRIDS's peak-bagged gains) and the per-entry autograd row give the same eq. 4 gains."""
    data, _ = simulate("tiny", seed=0)
    torch.manual_seed(0)
    model = build_surrogate(data, SurrogateConfig(hidden=16, latent=4)).eval()
    kernels = {name: fn for name, fn, _, _ in _kernels(model, data, dense_memory_gb=0.01)}
    gains = kernels[SPARSE]()
    torch.testing.assert_close(gains, kernels[SPARSE + ", per-entry autograd"](), rtol=1e-4, atol=1e-7)
    assert gains.shape == (data.n_peaks,) and torch.count_nonzero(gains) > 0


def test_ratios_per_cell_and_per_step():
    table = pd.DataFrame([
        {"step": SPARSE, "seconds": 0.02, "ms_per_cell": 0.02 / 64 * 1e3, "rss_increase_mib": 0.5, "cells": 64},
        {"step": DENSE_EMB, "seconds": 4.0, "ms_per_cell": 4.0 / 32 * 1e3, "rss_increase_mib": 800.0, "cells": 32},
        {"step": "GRIDS step, ratio", "seconds": 0.05, "ms_per_cell": np.nan, "rss_increase_mib": 10.0, "cells": 64},
    ])
    r = perf_ratios(table)
    assert r["dense-embedding / sparse forward+backward, time per cell"] == pytest.approx(400.0)
    # memory per cell: 800/32 = 25 MiB vs the 1 MiB floor / 64 cells
    assert r["dense-embedding / sparse forward+backward, memory per cell beyond the weights"] == pytest.approx(1600.0)
    assert r["GRIDS step, ratio / sparse forward+backward + gains"] == pytest.approx(2.5)


def test_floor_ratios_are_read_off_the_paper_profiles_step():
    table = pd.DataFrame([
        {"step": SPARSE, "seconds": 0.02, "ms_per_cell": 0.3, "rss_increase_mib": 1.0, "cells": 64,
         "over_floor": 4.0},
        {"step": DENSE_EMB, "seconds": 4.0, "ms_per_cell": 125.0, "rss_increase_mib": 800.0, "cells": 32,
         "over_floor": np.nan},
        {"step": "GRIDS step, L=128, k=32, ratio objective", "seconds": 0.08, "ms_per_cell": np.nan,
         "rss_increase_mib": 10.0, "cells": 64, "over_floor": 9.0},
        {"step": PAPER_STEP, "seconds": 0.05, "ms_per_cell": np.nan, "rss_increase_mib": 10.0, "cells": 64,
         "over_floor": 6.5},
    ])
    r = perf_ratios(table)
    assert r["grids_step_over_floor"] == 6.5 and r["sparse_fwd_bwd_over_floor"] == 4.0
