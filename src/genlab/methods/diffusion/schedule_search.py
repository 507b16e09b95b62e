"""A short noise schedule found by grid search on held-out data, as WaveGrad finds its 6 steps.

Chen et al., 2021, "WaveGrad: Estimating Gradients for Waveform Generation", section 3.3: a
network conditioned on the continuous noise level can sample on any schedule, and a handful of
steps suffice when their betas are chosen well. The search tries every increasing choice of
``steps`` betas from a log-spaced grid (so the noise grows from step to step, as in every
schedule) and keeps the one whose samples score best on held-out data. The scorer is given
(for a vocoder: the log-spectral distance of validation clips), which keeps this modality-free.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from genlab.core.errors import GenlabError

# beta values a step may take, log-spaced over WaveGrad's range (1e-6, the training schedule's
# first beta, up to 0.8, where one step removes most of the remaining signal)
GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.1, 0.2, 0.5, 0.8)


@dataclass(frozen=True)
class Candidate:
    """One schedule tried and its score (lower is better)."""

    betas: tuple[float, ...]
    score: float


def candidate_schedules(steps: int, grid: Sequence[float] = GRID) -> list[tuple[float, ...]]:
    """Every strictly increasing choice of ``steps`` betas from ``grid``: C(len(grid), steps)."""
    values = sorted(set(grid))
    if not all(0 < b < 1 for b in values):
        raise GenlabError(f"grid betas must lie in (0, 1), got {list(grid)}")
    if not 1 <= steps <= len(values):
        raise GenlabError(f"{steps} steps need 1 to {len(values)} grid values (got {steps})")
    return list(itertools.combinations(values, steps))


def search_schedule(
    score: Callable[[tuple[float, ...]], float],
    candidates: Sequence[tuple[float, ...]],
    progress: Callable[[int, Candidate], None] | None = None,
) -> list[Candidate]:
    """Score every candidate; return them best first (ties keep the grid's order)."""
    if not candidates:
        raise GenlabError("no candidate schedules to search")
    tried = []
    for i, betas in enumerate(candidates):
        tried.append(Candidate(tuple(betas), float(score(tuple(betas)))))
        if progress is not None:
            progress(i, tried[-1])
    return sorted(tried, key=lambda c: c.score)
