"""ECE and reliability bins against torchmetrics, on random and adversarial confidences."""

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_calibration_error

from genlab.metrics.calibration import expected_calibration_error, reliability


@pytest.mark.parametrize("n_bins", [5, 10, 15])
def test_ece_matches_torchmetrics(n_bins: int) -> None:
    rng = np.random.default_rng(n_bins)
    conf = rng.uniform(0, 1, 500)
    correct = rng.uniform(0, 1, 500) < conf**2  # overconfident
    ours = expected_calibration_error(conf, correct, n_bins)
    # torchmetrics' binary ECE takes p(class 1) and the label: confidence of "correct"
    theirs = binary_calibration_error(
        torch.tensor(conf), torch.tensor(correct.astype(int)), n_bins=n_bins, norm="l1"
    )
    assert ours == pytest.approx(float(theirs), abs=1e-6)


def test_edges_zero_and_one_land_where_torchmetrics_puts_them() -> None:
    conf = np.array([0.0, 0.1, 0.2, 0.5, 0.9, 1.0, 1.0])
    correct = np.array([0, 0, 1, 1, 0, 1, 1], dtype=bool)
    theirs = binary_calibration_error(
        torch.tensor(conf), torch.tensor(correct.astype(int)), n_bins=10, norm="l1"
    )
    assert expected_calibration_error(conf, correct) == pytest.approx(float(theirs), abs=1e-6)
    bins = reliability(conf, correct)
    assert bins.count.sum() == 7 and bins.count[-1] == 3  # 0.9, 1.0, 1.0
    assert bins.count[1] == 1 and bins.count[2] == 1  # 0.1 -> [0.1, 0.2), 0.2 -> [0.2, 0.3)


def test_a_calibrated_model_has_small_ece_and_a_confident_wrong_one_large() -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 20000)
    assert expected_calibration_error(conf, rng.uniform(0, 1, 20000) < conf) < 0.02
    assert expected_calibration_error(np.full(100, 0.99), np.zeros(100, bool)) == pytest.approx(
        0.99
    )
    bins = reliability([0.95, 0.95], [True, False])
    assert np.isnan(bins.accuracy[0]) and bins.accuracy[-1] == 0.5


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="lie in"):
        reliability([1.5], [True])
    with pytest.raises(ValueError, match="one length"):
        reliability([0.5, 0.6], [True])
    with pytest.raises(ValueError, match="non-empty"):
        reliability([], [])
