"""Kaplan et al.'s single-variable laws: L(N) = (N_c / N)^alpha_N, and the same in data.

Each is a straight line in log-log space, log L = alpha log X_c - alpha log X, so it is fitted by
least squares on the logs; a bootstrap over the points gives each coefficient's 95% interval.
The published values (Kaplan et al., 2020, section 1.2): alpha_N = 0.076, N_c = 8.8e13
non-embedding parameters; alpha_D = 0.095, D_c = 5.4e13 tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from genlab.core.errors import GenlabError


@dataclass(frozen=True)
class PowerLaw:
    """L(x) = (x_c / x)^alpha, with 95% bootstrap intervals of both coefficients."""

    alpha: float
    x_c: float
    alpha_ci: tuple[float, float]
    x_c_ci: tuple[float, float]

    def __call__(self, x: float | np.ndarray) -> float | np.ndarray:
        return (self.x_c / np.asarray(x, dtype=float)) ** self.alpha


def _line(log_x: np.ndarray, log_l: np.ndarray) -> tuple[float, float]:
    slope, intercept = np.polyfit(log_x, log_l, 1)
    alpha = -slope
    return alpha, float(np.exp(intercept / alpha)) if alpha != 0 else float("inf")


def fit_power_law(
    x: Sequence[float], loss: Sequence[float], n_resamples: int = 1000, seed: int = 0
) -> PowerLaw:
    """Fit L = (x_c / x)^alpha to positive ``x`` and ``loss`` (at least 3 distinct x)."""
    xs, ls = np.asarray(x, dtype=float), np.asarray(loss, dtype=float)
    if xs.shape != ls.shape or len(np.unique(xs)) < 3 or (xs <= 0).any() or (ls <= 0).any():
        raise GenlabError("a power law needs at least 3 distinct positive x with positive losses")
    log_x, log_l = np.log(xs), np.log(ls)
    alpha, x_c = _line(log_x, log_l)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_resamples):
        i = rng.integers(0, len(xs), len(xs))
        if len(np.unique(xs[i])) >= 2:
            draws.append(_line(log_x[i], log_l[i]))
    a, c = np.array(draws).T
    return PowerLaw(
        float(alpha),
        x_c,
        (float(np.percentile(a, 2.5)), float(np.percentile(a, 97.5))),
        (float(np.percentile(c, 2.5)), float(np.percentile(c, 97.5))),
    )
