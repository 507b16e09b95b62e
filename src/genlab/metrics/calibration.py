"""Calibration: does a model's confidence match how often it is right?

A model is calibrated when, among the answers it gives with probability p, a share p is correct.
The expected calibration error (Naeini et al., 2015; Guo et al., 2017, "On Calibration of Modern
Neural Networks") bins the answers by confidence into equal-width bins and averages
|accuracy - confidence| over the bins, weighted by how many answers each holds; the reliability
diagram plots the two per bin. The GPT-4 technical report (OpenAI, 2023, figure 8) shows a
pretrained model calibrated on multiple-choice questions and the same model after RLHF much less so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Reliability:
    """Per confidence bin (equal width over [0, 1]): how many answers, their mean confidence
    and their accuracy (NaN for an empty bin)."""

    edges: np.ndarray  # (n_bins + 1,)
    count: np.ndarray  # (n_bins,)
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error: sum over bins of (count / total) |accuracy - confidence|."""
        held = self.count > 0
        gaps = np.abs(self.accuracy[held] - self.confidence[held])
        return float((self.count[held] * gaps).sum() / self.count.sum())


def reliability(
    confidence: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    n_bins: int = 10,
) -> Reliability:
    """Bin answers by their confidence (the probability of the chosen answer) into ``n_bins``
    equal-width bins, each closed on the left as in torchmetrics' ``calibration_error``
    (a confidence of exactly 1 goes in the last bin)."""
    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct, dtype=float)
    if conf.shape != hit.shape or conf.ndim != 1 or conf.size == 0:
        raise ValueError("confidence and correct must be non-empty 1-D arrays of one length")
    if ((conf < 0) | (conf > 1)).any():
        raise ValueError("confidences must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / count
        accuracy = np.bincount(which, weights=hit, minlength=n_bins) / count
    return Reliability(edges, count, mean_conf, accuracy)


def expected_calibration_error(
    confidence: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    n_bins: int = 10,
) -> float:
    """ECE over ``n_bins`` equal-width confidence bins (see :func:`reliability`)."""
    return reliability(confidence, correct, n_bins).ece
