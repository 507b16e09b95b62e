"""Every fit of a set of runs in one record: Chinchilla's L(N, D) with intervals, its
compute-optimal exponents and tokens per parameter, and Kaplan's L(N) and L(D).

Kaplan's laws are each fitted to the best loss seen at each value (the lowest loss of any run
with that many parameters, or that many tokens): the envelope a single-variable law describes
when the other variable is not the bottleneck.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from genlab.core.errors import GenlabError
from genlab.scaling.chinchilla import compute_optimal, fit_chinchilla
from genlab.scaling.flops import training_flops
from genlab.scaling.points import Point
from genlab.scaling.power_law import PowerLaw, fit_power_law


def _envelope(points: Sequence[Point], axis: int) -> tuple[list[float], list[float]]:
    best: dict[float, float] = {}
    for point in points:
        best[point[axis]] = min(best.get(point[axis], float("inf")), point[2])
    xs = sorted(best)
    return xs, [best[x] for x in xs]


def kaplan_laws(
    points: Sequence[Point], n_resamples: int = 200, seed: int = 0
) -> dict[str, PowerLaw]:
    """L(N) and L(D) (keys ``"N"``, ``"D"``) on the envelope of ``points``, each where at least
    three values of its variable allow a power law."""
    laws = {}
    for name, axis in (("N", 0), ("D", 1)):
        xs, best = _envelope(points, axis)
        if len(xs) >= 3:
            laws[name] = fit_power_law(xs, best, n_resamples=n_resamples, seed=seed)
    return laws


def fit_points(points: Sequence[Point], n_resamples: int = 200, seed: int = 0) -> dict[str, Any]:
    """The fits of ``points`` as one JSON-able record."""
    if len(points) < 5:
        raise GenlabError(f"a fit needs at least 5 runs, got {len(points)}")
    params, tokens, loss = (list(v) for v in zip(*points, strict=True))
    fit = fit_chinchilla(params, tokens, loss, n_resamples=n_resamples, seed=seed)
    top = max(training_flops(n, d) for n, d, _ in points)
    n_opt, d_opt = compute_optimal(fit, top)
    record: dict[str, Any] = {
        "runs": len(points),
        "chinchilla": fit.as_dict(),
        "compute_optimal": {
            "flops": top,
            "params": float(n_opt),
            "tokens": float(d_opt),
            "tokens_per_param": float(d_opt / n_opt),
        },
    }
    for name, law in kaplan_laws(points, n_resamples, seed).items():
        record[f"L({name})"] = {"alpha": law.alpha, "x_c": law.x_c, "alpha_ci": list(law.alpha_ci)}
    return record
