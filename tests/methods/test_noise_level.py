"""WaveGrad's continuous noise level: draws between schedule points, the L1 loss, sampling on
any schedule, and the oracle round trip (a network that knows the clean audio gives it back)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.methods.diffusion.noise_level import (
    NoiseLevelLoss,
    add_noise_at_level,
    draw_levels,
    level_model,
    level_points,
)
from genlab.methods.diffusion.samplers import DDPMScheduler, sample_loop
from genlab.methods.diffusion.schedule import NoiseSchedule
from genlab.methods.diffusion.schedule_search import candidate_schedules, search_schedule


def test_levels_fall_between_neighbouring_schedule_points() -> None:
    schedule = NoiseSchedule("linear", 50, 1e-4, 0.05)
    points = level_points(schedule)
    assert points[0] == 1 and torch.allclose(points[1:], schedule.alphas_cumprod.sqrt())
    levels = draw_levels(schedule, 4000, torch.Generator().manual_seed(0))
    assert levels.min() >= points[-1] and levels.max() <= 1
    # uniform over segments: each of the 50 segments gets about 80 of 4000 draws
    segment = torch.searchsorted(-points, -levels)
    counts = torch.bincount(segment, minlength=51)[1:]
    assert counts.min() > 40 and counts.max() < 130
    # and continuous: hardly two draws share a float32 value
    assert len(levels.unique()) > 0.99 * len(levels)


def test_noising_at_a_level_keeps_unit_variance() -> None:
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 20000, generator=g), torch.randn(3, 20000, generator=g)
    level = torch.tensor([1.0, 0.6, 0.0])
    noisy = add_noise_at_level(x0, noise, level)
    assert torch.equal(noisy[0], x0[0]) and torch.equal(noisy[2], noise[2])
    assert noisy[1].std().item() == pytest.approx(1.0, abs=0.03)


class Oracle(torch.nn.Module):
    """The noise estimate of a network that knows the clean audio ``x0``."""

    def __init__(self, x0: Tensor) -> None:
        super().__init__()
        self.x0 = x0

    def forward(self, x: Tensor, level: Tensor, mel: Tensor) -> Tensor:
        level = level[:, None]
        return (x - level * self.x0) / (1 - level**2).sqrt()


@pytest.mark.parametrize("steps", [1000, 50, 6])
def test_the_oracle_vocodes_the_reference_exactly(steps: int) -> None:
    """wav -> sampler -> wav with the true noise as the network's answer returns the input, on
    the training schedule at any number of steps and on a short schedule of its own."""
    x0 = torch.sin(torch.linspace(0, 60, 512))[None] * 0.5
    train = DDPMScheduler("linear", 1000, 1e-6, 0.01, clip_sample=False)
    train.set_timesteps(steps)
    short = DDPMScheduler(trained_betas=[1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.5], clip_sample=False)
    for scheduler in (train, short):
        g = torch.Generator().manual_seed(0)
        model_fn = level_model(Oracle(x0), scheduler, mel=torch.zeros(1))
        out = sample_loop(model_fn, scheduler, torch.randn(1, 512, generator=g), generator=g)
        assert (out - x0).abs().max() < 1e-3  # float32 at levels within 1e-6 of 1


def test_level_model_passes_the_schedule_level() -> None:
    seen = []
    schedule = DDPMScheduler(trained_betas=[0.1, 0.5], clip_sample=False)

    def net(x: Tensor, level: Tensor, mel: Tensor) -> Tensor:
        seen.append(level)
        return x

    fn = level_model(net, schedule, mel=torch.zeros(1))
    fn(torch.zeros(2, 4), torch.tensor(1))
    assert torch.allclose(seen[0], torch.tensor([0.45**0.5] * 2))
    with pytest.raises(GenlabError, match="outside"):
        fn(torch.zeros(1, 4), torch.tensor(2))


def test_the_loss_is_l1_on_the_noise_and_trains() -> None:
    torch.manual_seed(0)
    batch = {
        "sample": torch.randn(4, 16),
        "noise": torch.randn(4, 16),
        "level": torch.tensor([0.9, 0.5, 0.3, 0.1]),
        "mel": torch.zeros(4, 2),
    }
    zero = lambda x, level, mel: torch.zeros_like(x)  # noqa: E731
    loss, metrics = NoiseLevelLoss()(zero, batch)
    assert loss.item() == pytest.approx(batch["noise"].abs().mean().item())
    assert metrics == {"samples": 4}
    scale = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([scale], lr=0.05)
    first = None
    for _ in range(50):  # a one-parameter "network" x * scale learns to pass the noise on
        loss, _ = NoiseLevelLoss()(lambda x, level, mel: x * scale, batch)
        first = first or loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.9 * first


def test_the_search_ranks_every_increasing_schedule() -> None:
    grid = (1e-4, 1e-2, 0.1, 0.5)
    candidates = candidate_schedules(2, grid)
    assert len(candidates) == 6 and all(a < b for a, b in candidates)
    ranked = search_schedule(lambda betas: abs(sum(betas) - 0.6), candidates)
    assert ranked[0].betas == (0.1, 0.5) and ranked[0].score == pytest.approx(0.0)
    assert [c.score for c in ranked] == sorted(c.score for c in ranked)
    with pytest.raises(GenlabError):
        candidate_schedules(5, grid)
    with pytest.raises(GenlabError):
        candidate_schedules(2, (0.0, 0.5))
