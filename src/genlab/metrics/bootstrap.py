"""Bootstrap confidence intervals: how sure a measured rate is, from the measured items alone.

Efron (1979) resamples the measured items with replacement and reads the interval off the
resampled statistics' percentiles. With several seeds, the items of every seed are resampled
within their seed (a stratified bootstrap): each seed keeps its weight, and the interval says
how far the mean of the seeds' means could move had other prompts been drawn for the same runs.
The seeds themselves are not resampled (with a handful of them that says little): reports show
each seed's own figure beside the interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided bootstrap interval at ``level``."""

    mean: float
    low: float
    high: float
    level: float = 0.95

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "level": self.level}

    def format(self, percent: bool = True, digits: int = 1) -> str:
        """``"65.2% [60.1, 70.3]"`` (or ``"0.812 [0.790, 0.833]"`` with ``percent=False``)."""
        if percent:
            m, lo, hi = (100 * x for x in (self.mean, self.low, self.high))
            return f"{m:.{digits}f}% [{lo:.{digits}f}, {hi:.{digits}f}]"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def bootstrap_mean(
    groups: Sequence[Sequence[float]] | Sequence[float],
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """The mean of ``groups`` (one list of item scores per seed, or one flat list) and its
    percentile bootstrap interval, resampling items within each group.

    The mean is the mean of the groups' means (each seed weighs the same).
    """
    _check_level(level)
    if len(groups) and not isinstance(groups[0], (Sequence, np.ndarray)):
        groups = [groups]  # type: ignore[list-item]
    arrays = [np.asarray(g, dtype=np.float64) for g in groups]
    if not arrays or any(a.size == 0 for a in arrays):
        raise ValueError("bootstrap needs at least one item in every group")
    rng = np.random.default_rng(seed)
    resampled = np.zeros(n_resamples)
    for a in arrays:
        picks = rng.integers(0, a.size, size=(n_resamples, a.size))
        resampled += a[picks].mean(axis=1)
    resampled /= len(arrays)
    return _percentile_interval(float(np.mean([a.mean() for a in arrays])), resampled, level)


def bootstrap_statistic(
    statistic: Callable[[np.ndarray], float],
    n_items: int,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Any statistic of ``n_items`` items (``statistic(indices)`` computes it on the items at
    those indices, repeats included) with its percentile bootstrap interval: for figures that
    are not a mean of per-item scores, such as a calibration error."""
    _check_level(level)
    if n_items < 1:
        raise ValueError("bootstrap needs at least one item")
    rng = np.random.default_rng(seed)
    resampled = [statistic(rng.integers(0, n_items, n_items)) for _ in range(n_resamples)]
    return _percentile_interval(float(statistic(np.arange(n_items))), resampled, level)


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _percentile_interval(
    estimate: float, resampled: Sequence[float] | np.ndarray, level: float
) -> Interval:
    """The estimate with the resampled statistics' percentiles at ``level`` around it."""
    tail = (1.0 - level) / 2
    low, high = np.quantile(resampled, [tail, 1.0 - tail])
    return Interval(estimate, float(low), float(high), level)
