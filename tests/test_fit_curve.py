"""bench/fidelity/fit_curve.py: the curve measures the weights the profile's own training has at each epoch, and its
measurements do not disturb the training they sit in."""

import pytest

from bench.config import PROFILES
from bench.fidelity.fit_curve import fidelity_curve
from bench.running.pipeline import marker_fidelity
from datasets.markers import PAPER_MARKERS
from datasets.synthetic import simulate
from surrogates.train import train_surrogate


@pytest.fixture(scope="module")
def tiny():
    data, truth = simulate("tiny", seed=0)
    return data, truth, PAPER_MARKERS, PROFILES["tiny"].surrogate_config("paired")


def test_each_row_is_the_training_at_that_epoch(tiny):
    data, truth, markers, config = tiny
    curve = fidelity_curve(data, truth, markers, config, [3, 1, 2], progress=False)
    assert curve["epoch"].tolist() == [1, 2, 3]
    assert curve["train_seconds"].is_monotonic_increasing
    assert {"marker_r2", "interventional_spearman", "group_member_ratio_oracle"} <= set(curve.columns)
    seen = {}

    def at_two(model, epoch, seconds, val_mse):  # a plain run, measured only at epoch 2
        if epoch == 2:
            seen["r2"] = marker_fidelity(model.eval(), data, markers).marker_r2
            seen["val_mse"] = val_mse

    train_surrogate(data, config.__class__(**{**config.to_dict(), "max_epochs": 2, "min_epochs": 2}),
                    progress=False, on_epoch=at_two)
    row = curve.set_index("epoch").loc[2]
    # same process, same threads: the same weights, so the same numbers to the last bit
    assert row["marker_r2"] == seen["r2"] and row["val_mse"] == seen["val_mse"]


def test_bad_epochs_and_styles_are_refused(tiny):
    data, truth, markers, config = tiny
    with pytest.raises(ValueError, match="positive epoch"):
        fidelity_curve(data, truth, markers, config, [0, 2], progress=False)
    with pytest.raises(ValueError, match="reference style"):
        fidelity_curve(data, truth, markers, PROFILES["tiny"].surrogate_config("reference"), [2], progress=False)
