"""Diffusion conditioned on a continuous noise level instead of a step index (WaveGrad).

Chen et al., 2021, "WaveGrad: Estimating Gradients for Waveform Generation", algorithm 1: the
network sees ``sqrt(abar)`` itself, and training draws it uniformly between two neighbouring
points of the training schedule, ``l_s = sqrt(abar_s)`` with ``l_0 = 1``. A network trained so
has seen every level in ``[l_T, 1]``, so it runs on any schedule at inference, one of 1,000 steps
or a searched one of 6, with the samplers of :mod:`genlab.methods.diffusion.samplers` unchanged:
:func:`level_model` turns their step index into the level of their own schedule. The loss is
WaveGrad's L1 between the estimated and the true noise (it found L1 more stable than L2).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.errors import GenlabError
from genlab.methods.diffusion.schedule import NoiseSchedule

LEVEL_KEYS = ("sample", "noise", "level")  # a batch's other keys are the network's conditions


def level_points(schedule: NoiseSchedule) -> Tensor:
    """``(T + 1,)`` levels ``l_0 = 1, l_s = sqrt(abar_s)``: the points training draws between."""
    return torch.cat([torch.ones(1), schedule.alphas_cumprod.sqrt()])


def draw_levels(schedule: NoiseSchedule, n: int, generator: torch.Generator) -> Tensor:
    """``n`` continuous noise levels: a segment ``s`` uniform in 1..T, then a level uniform in
    ``[l_s, l_{s-1}]`` (WaveGrad, algorithm 1)."""
    points = level_points(schedule)
    s = torch.randint(1, len(points), (n,), generator=generator)
    u = torch.rand(n, generator=generator)
    return points[s] + u * (points[s - 1] - points[s])


def add_noise_at_level(sample: Tensor, noise: Tensor, level: Tensor) -> Tensor:
    """``level * x_0 + sqrt(1 - level^2) * noise``, each row at its own level."""
    level = level.reshape(-1, *([1] * (sample.ndim - 1))).to(sample.dtype)
    return level * sample + (1 - level**2).sqrt() * noise


class NoiseLevelLoss:
    """The trainer's step function: L1 between the network's noise estimate at
    ``(x_noisy, level, **conditions)`` and the noise. The batch holds ``sample``, ``noise`` and
    ``level`` (drawn by the batch source, so a resumed run sees the same draws); its other keys
    are conditions passed by name (WaveGrad: ``mel``)."""

    def __call__(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict]:
        sample, noise, level = (batch[key] for key in LEVEL_KEYS)
        cond = {k: v for k, v in batch.items() if k not in LEVEL_KEYS}
        pred = model(add_noise_at_level(sample, noise, level), level, **cond)
        return F.l1_loss(pred.float(), noise), {"samples": sample.shape[0]}


def level_model(
    model: Callable[..., Tensor], schedule: NoiseSchedule, **cond: Tensor
) -> Callable[[Tensor, Tensor], Tensor]:
    """``model_fn(x_t, t)`` for :func:`~genlab.methods.diffusion.samplers.sample_loop`: the
    sampler's step ``t`` becomes the level ``sqrt(abar_t)`` of ``schedule`` (the sampler's own)."""
    levels = schedule.alphas_cumprod.sqrt()

    def model_fn(x: Tensor, t: Tensor) -> Tensor:
        t = int(t)
        if not 0 <= t < len(levels):
            raise GenlabError(f"step {t} is outside the schedule's {len(levels)} steps")
        level = levels[t].to(x.device).expand(x.shape[0])
        return model(x, level, **cond)

    return model_fn
