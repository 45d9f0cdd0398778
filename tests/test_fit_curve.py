"""bench/fidelity/fit_curve.py: the curve measures the weights the profile's own training has at each epoch (R²
recomputed here by hand from those weights' predictions), its measurements do not disturb the training they sit in,
and on stand-in models with a known R² (the observed means: 1; their grand mean: 0; a shift: by hand) it reports it."""

import numpy as np
import pytest
import torch

from bench.config import PROFILES
from bench.fidelity.fit_curve import fidelity_curve
from datasets.markers import PAPER_MARKERS
from datasets.synthetic import simulate
from surrogates.train import train_surrogate


@pytest.fixture(scope="module")
def tiny():
    data, truth = simulate("tiny", seed=0)
    return data, truth, PAPER_MARKERS, PROFILES["tiny"].surrogate_config("paired")


def type_means(data, values: np.ndarray) -> np.ndarray:
    """cell types × genes: the mean of `values` (test cells × genes) over each type's test cells."""
    types = data.cells(split="test").obs["cell_type"].astype(str).to_numpy()
    return np.stack([values[types == ct].mean(0) for ct in data.cell_types if (types == ct).any()]).astype(float)


def r2_by_hand(obs: np.ndarray, pred: np.ndarray) -> float:
    """1 − SS_res / SS_tot of the prediction against the identity line (surrogates/fidelity.py's definition)."""
    return 1 - ((obs - pred) ** 2).sum() / ((obs - obs.mean()) ** 2).sum()


def marker_columns(data, markers) -> list[int]:
    genes = dict.fromkeys(g for ct, gs in markers.items() if ct in data.cell_types for g in gs
                          if g in set(data.gene_names))
    return [data.gene_index(g) for g in genes]


def test_each_row_is_the_training_at_that_epoch(tiny):
    data, truth, markers, config = tiny
    curve = fidelity_curve(data, truth, markers, config, [3, 1, 2], progress=False)
    assert curve["epoch"].tolist() == [1, 2, 3]
    assert curve["train_seconds"].is_monotonic_increasing
    assert {"marker_r2", "interventional_spearman", "group_member_ratio_oracle"} <= set(curve.columns)
    seen = {}

    def at_two(model, epoch, seconds, val_mse):  # a plain run: its test-cell predictions at epoch 2
        if epoch == 2:
            seen["pred"] = model.eval().predict(data.cells(split="test").atac).cpu().numpy()
            seen["val_mse"] = val_mse

    train_surrogate(data, config.__class__(**{**config.to_dict(), "max_epochs": 2, "min_epochs": 2}),
                    progress=False, on_epoch=at_two)
    obs, pred = type_means(data, data.cells(split="test").rna), type_means(data, seen["pred"])
    cols = marker_columns(data, markers)
    row = curve.set_index("epoch").loc[2]
    # the same weights as the plain run, measured by an R² computed here (float32 means: 1e-6 of R²)
    assert row["marker_r2"] == pytest.approx(np.mean([r2_by_hand(obs[:, g], pred[:, g]) for g in cols]), abs=1e-6)
    assert row["pooled_marker_r2"] == pytest.approx(r2_by_hand(obs[:, cols], pred[:, cols]), abs=1e-6)
    varied = [g for g in range(data.n_genes) if np.ptp(obs[:, g]) > 0]
    assert row["all_genes_r2"] == pytest.approx(np.mean([r2_by_hand(obs[:, g], pred[:, g]) for g in varied]),
                                                abs=1e-6)
    assert row["val_mse"] == seen["val_mse"]  # same process, same threads: the same training to the last bit


class PerType(torch.nn.Module):
    """A stand-in model predicting a fixed row of log-expression per cell type (only `predict` is measured)."""

    def __init__(self, types: list[str], rows: np.ndarray):
        super().__init__()
        self.rows = dict(zip(types, torch.as_tensor(rows, dtype=torch.float64)))

    def predict(self, atac, cell_types=None, **_):
        return torch.stack([self.rows[ct] for ct in cell_types])


def test_known_r2_on_models_that_predict_the_observed_means_their_grand_mean_or_a_shift(tiny, monkeypatch):
    """Training replaced by three epochs of stand-ins: the observed per-type means of the test cells (R² = 1), the
    grand mean of those means for every type (R² = 0 exactly), and the means + 0.3 (R² = 1 − T·0.09 / SS_tot)."""
    from bench.fidelity import fit_curve

    data, _, markers, config = tiny
    test_types = data.cells(split="test").obs["cell_type"].astype(str).to_numpy()
    types = [ct for ct in data.cell_types if (test_types == ct).any()]
    obs = type_means(data, data.cells(split="test").rna)
    stand_ins = {1: obs, 2: np.tile(obs.mean(0), (len(obs), 1)), 3: obs + 0.3}

    def fake_training(data, config, device, progress, on_epoch):
        assert config.max_epochs == 3
        for epoch in (1, 2, 3):
            on_epoch(PerType(types, stand_ins[epoch]), epoch, float(epoch), 0.0)

    monkeypatch.setattr(fit_curve, "train_surrogate", fake_training)
    curve = fidelity_curve(data, None, markers, config, [1, 2, 3], progress=False).set_index("epoch")
    cols = marker_columns(data, markers)
    ss_tot = ((obs[:, cols] - obs[:, cols].mean(0)) ** 2).sum(0)
    shifted = np.mean(1 - len(types) * 0.09 / ss_tot)
    assert 0.0 < shifted < 1.0  # a value neither other row can have
    for column in ("marker_r2", "all_genes_r2"):
        assert curve[column].to_numpy()[:2] == pytest.approx([1.0, 0.0], abs=1e-6)
    assert curve.loc[3, "marker_r2"] == pytest.approx(shifted, abs=1e-6)
    assert curve.loc[3, "pooled_marker_r2"] == pytest.approx(
        1 - obs[:, cols].size * 0.09 / ((obs[:, cols] - obs[:, cols].mean()) ** 2).sum(), abs=1e-6)


def test_bad_epochs_and_styles_are_refused(tiny):
    data, truth, markers, config = tiny
    with pytest.raises(ValueError, match="positive epoch"):
        fidelity_curve(data, truth, markers, config, [0, 2], progress=False)
    with pytest.raises(ValueError, match="reference style"):
        fidelity_curve(data, truth, markers, PROFILES["tiny"].surrogate_config("reference"), [2], progress=False)
