"""The Chinchilla law: L(N, D) = E + A / N^alpha + B / D^beta, and the compute-optimal split.

Hoffmann et al. (2022, "Training Compute-Optimal Large Language Models", approach 3) fit the
five coefficients by minimising the Huber loss (delta 1e-3) between the predicted and observed
log-loss, in the parametrisation a = log A, b = log B, e = log E (so that log L is a log-sum-exp
of three terms), with L-BFGS from a grid of initialisations, keeping the best. Besiroglu et al.
(2024, "Chinchilla Scaling: A replication attempt") showed the published intervals were far too
narrow; here each coefficient's 95% interval comes from a bootstrap over the runs (each resample
refitted from the full fit's optimum and the best grid starts).

With compute C = 6ND the loss is lowest at N_opt(C) = G (C/6)^a and D_opt(C) = (C/6)^b / G, with
a = beta / (alpha + beta), b = alpha / (alpha + beta), G = (alpha A / (beta B))^(1/(alpha+beta))
(the paper's equation 4). Published fit: E 1.69, A 406.4, B 410.7, alpha 0.34, beta 0.28.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from genlab.core.errors import GenlabError

PUBLISHED = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
DELTA = 1e-3  # the Huber loss's threshold on log-loss residuals
GRID = {  # the paper's initialisations
    "alpha": np.arange(0.0, 2.01, 0.5),
    "beta": np.arange(0.0, 2.01, 0.5),
    "e": np.arange(-1.0, 1.01, 0.5),
    "a": np.arange(0.0, 25.1, 5.0),
    "b": np.arange(0.0, 25.1, 5.0),
}
NAMES = ("E", "A", "B", "alpha", "beta")


@dataclass
class ChinchillaFit:
    """The fitted coefficients, their 95% bootstrap intervals, and the compute-optimal
    exponents N_opt ~ C^a, D_opt ~ C^b."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    huber: float = 0.0  # the objective at the optimum
    draws: list[ChinchillaFit] = field(default_factory=list, repr=False)  # the bootstrap refits

    @property
    def a(self) -> float:
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in NAMES} | {
            "intervals": {k: list(v) for k, v in self.intervals.items()},
            "a": self.a,
            "b": self.b,
            "huber": self.huber,
        }


def predict(
    fit: ChinchillaFit, params: float | np.ndarray, tokens: float | np.ndarray
) -> np.ndarray:
    """L(N, D) under ``fit``."""
    n, d = np.asarray(params, dtype=float), np.asarray(tokens, dtype=float)
    return fit.E + fit.A / n**fit.alpha + fit.B / d**fit.beta


def predict_interval(
    fit: ChinchillaFit, params: float, tokens: float, level: float = 0.95
) -> tuple[float, float]:
    """The loss the bootstrap refits predict for one run: the percentile interval at ``level``
    (the spread of the fit, not the run's own noise)."""
    if not fit.draws:
        raise GenlabError("this fit has no bootstrap refits: fit with n_resamples > 0")
    values = np.array([predict(draw, params, tokens) for draw in fit.draws], dtype=float)
    tail = 100 * (1 - level) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def compute_optimal(fit: ChinchillaFit, flops: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N_opt, D_opt)`` at compute ``flops`` (C = 6ND)."""
    c = np.asarray(flops, dtype=float) / 6.0
    g = (fit.alpha * fit.A / (fit.beta * fit.B)) ** (1.0 / (fit.alpha + fit.beta))
    return g * c**fit.a, c**fit.b / g


def _objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray):
    """Summed Huber loss of the log-loss residuals, and its gradient in (a, b, e, alpha, beta)."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = terms.max(axis=0)
    weights = np.exp(terms - top)
    total = weights.sum(axis=0)
    residual = top + np.log(total) - log_l
    weights /= total
    small = np.abs(residual) <= DELTA
    loss = np.where(small, 0.5 * residual**2, DELTA * (np.abs(residual) - 0.5 * DELTA))
    slope = np.where(small, residual, DELTA * np.sign(residual))
    grad = np.array(
        [
            (slope * weights[0]).sum(),
            (slope * weights[1]).sum(),
            (slope * weights[2]).sum(),
            -(slope * weights[0] * log_n).sum(),
            -(slope * weights[1] * log_d).sum(),
        ]
    )
    return loss.sum(), grad


def _best(starts: Sequence[np.ndarray], data: tuple[np.ndarray, ...]) -> tuple[np.ndarray, float]:
    """L-BFGS from each start (tolerances tight: the objective is a sum of tiny residuals)."""
    best, value = starts[0], np.inf
    for start in starts:
        res = minimize(
            _objective, start, args=data, jac=True, method="L-BFGS-B",
            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000},
        )  # fmt: skip
        if res.fun < value:
            best, value = res.x, float(res.fun)
    return best, value


def _grid_starts(data: tuple[np.ndarray, ...], keep: int) -> list[np.ndarray]:
    """The ``keep`` points of the paper's initialisation grid with the lowest objective (the
    whole grid evaluated at once): L-BFGS runs from these rather than from all 4500."""
    grid = np.array(list(itertools.product(*(GRID[k] for k in ("a", "b", "e", "alpha", "beta")))))
    log_n, log_d, log_l = data
    a, b, e, alpha, beta = (grid[:, i : i + 1] for i in range(5))
    shape = (len(grid), len(log_n))
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.broadcast_to(e, shape)])
    residual = np.logaddexp.reduce(terms, axis=0) - log_l
    small = np.abs(residual) <= DELTA
    huber = np.where(small, 0.5 * residual**2, DELTA * (np.abs(residual) - 0.5 * DELTA))
    return list(grid[np.argsort(huber.sum(axis=1))[:keep]])


def _fit(theta: np.ndarray, value: float) -> ChinchillaFit:
    a, b, e, alpha, beta = theta
    return ChinchillaFit(
        float(np.exp(e)), float(np.exp(a)), float(np.exp(b)), float(alpha), float(beta), huber=value
    )


def fit_chinchilla(
    params: Sequence[float],
    tokens: Sequence[float],
    loss: Sequence[float],
    n_resamples: int = 200,
    starts: int = 32,
    seed: int = 0,
) -> ChinchillaFit:
    """Fit L(N, D) to runs (their parameters, tokens and final loss): L-BFGS from the ``starts``
    best points of the paper's grid; then ``n_resamples`` bootstrap refits, each from the full
    fit's optimum and the four best grid points (a refit started only at the optimum stays
    there when a coefficient is flat, e.g. E -> 0 on runs far from convergence)."""
    n, d, l_ = (np.asarray(v, dtype=float) for v in (params, tokens, loss))
    if not n.shape == d.shape == l_.shape or len(n) < 5:
        raise GenlabError(
            "a Chinchilla fit needs at least 5 runs, each with params, tokens and loss"
        )
    if (n <= 0).any() or (d <= 0).any() or (l_ <= 0).any():
        raise GenlabError("params, tokens and losses must all be positive")
    data = (np.log(n), np.log(d), np.log(l_))
    grid = _grid_starts(data, starts)
    theta, value = _best(grid, data)
    fit = _fit(theta, value)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_resamples):
        i = rng.integers(0, len(n), len(n))
        draws.append(_fit(*_best([theta, *grid[:4]], tuple(v[i] for v in data))))
    fit.draws = draws
    for name in NAMES if draws else ():
        values = np.array([getattr(f, name) for f in draws])
        fit.intervals[name] = (
            float(np.percentile(values, 2.5)),
            float(np.percentile(values, 97.5)),
        )
    return fit
