"""Diffusion noise schedules, training targets and the DDPM and DDIM samplers.

A diffusion model learns to undo a fixed forward process that mixes an image with Gaussian noise
over T steps, ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``, where ``abar_t`` is the
cumulative product of ``1 - beta_t`` (Ho et al., 2020, "Denoising Diffusion Probabilistic
Models", DDPM). This module holds everything about that process that is not the network:

- noise schedules: ``linear`` (DDPM: beta from 1e-4 to 0.02 over 1000 steps), ``cosine``
  (Nichol & Dhariwal, 2021, "Improved Denoising Diffusion Probabilistic Models": abar follows a
  squared cosine, betas clipped at 0.999) and ``scaled_linear`` (linear in sqrt(beta), the
  Stable Diffusion schedule);
- the forward process in closed form (``add_noise``) and the three training targets: the noise
  (``eps``, DDPM), the clean image (``x0``) and the velocity ``v = sqrt(abar) eps -
  sqrt(1 - abar) x0`` (``v``; Salimans & Ho, 2022, "Progressive Distillation for Fast Sampling
  of Diffusion Models");
- ``DDPMScheduler``: ancestral sampling from the posterior q(x_{t-1} | x_t, x_0), with the
  variance fixed small (the posterior's) or large (beta_t);
- ``DDIMScheduler``: the non-Markovian sampler of Song et al., 2021, "Denoising Diffusion
  Implicit Models", which runs on any subsequence of the training steps; ``eta`` interpolates
  between deterministic DDIM (0) and DDPM-like noise (1).

Schedulers are separate from the networks they drive and follow the contract of diffusers:
``set_timesteps(n)``, iterate ``scheduler.timesteps``, and ``step(model_output, t, sample,
generator)`` returns the previous sample. Every stochastic step draws exactly one
``torch.randn(sample.shape, generator=generator)``, and the arithmetic follows diffusers
operation for operation, so that with the same generator both libraries produce the same
samples (the tests check this). Prediction types are named ``eps``, ``x0`` and ``v`` (diffusers:
``epsilon``, ``sample``, ``v_prediction``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from genlab.core.errors import GenlabError

SCHEDULES = ("linear", "cosine", "scaled_linear")
PREDICTIONS = ("eps", "x0", "v")
SPACINGS = ("leading", "trailing", "linspace")
VARIANCES = ("fixed_small", "fixed_large")


def cosine_betas(num_train_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Betas whose cumulative product follows ``cos((t/T + s) / (1 + s) * pi/2)^2``.

    Nichol & Dhariwal clip each beta at ``max_beta`` so that the last steps, where abar reaches
    zero, do not divide by zero.
    """

    def alpha_bar(t: float) -> float:
        return math.cos((t + s) / (1 + s) * math.pi / 2) ** 2

    T = num_train_timesteps
    betas = [min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), max_beta) for i in range(T)]
    return torch.tensor(betas, dtype=torch.float32)


def make_betas(
    schedule: str = "linear",
    num_train_timesteps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
) -> Tensor:
    """The float32 betas of a named schedule (``linear``, ``cosine`` or ``scaled_linear``)."""
    T = num_train_timesteps
    if T < 1:
        raise GenlabError(f"num_train_timesteps must be positive, got {T}")
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, T, dtype=torch.float32)
    if schedule == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float32) ** 2
    if schedule == "cosine":
        return cosine_betas(T)
    raise GenlabError(f"unknown noise schedule '{schedule}'; choose one of {', '.join(SCHEDULES)}")


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise GenlabError(f"unknown {what} '{value}'; choose one of {', '.join(choices)}")


def _per_sample(coef: Tensor, ndim: int) -> Tensor:
    """Shape per-sample coefficients (B,) as (B, 1, ..., 1) to broadcast over a batch."""
    return coef.reshape(-1, *([1] * (ndim - 1)))


@dataclass
class SchedulerOutput:
    """One reverse step: the sample at the previous timestep and the current estimate of x_0."""

    prev_sample: Tensor
    pred_original_sample: Tensor


class NoiseSchedule:
    """The forward process: betas, their cumulative products, noising and training targets."""

    def __init__(
        self,
        schedule: str = "linear",
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        betas: Tensor | None = None,
        prediction: str = "eps",
    ) -> None:
        _check_choice(prediction, PREDICTIONS, "prediction type")
        self.prediction = prediction
        if betas is None:
            betas = make_betas(schedule, num_train_timesteps, beta_start, beta_end)
        self.betas = torch.as_tensor(betas, dtype=torch.float32)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.num_train_timesteps = len(self.betas)

    def _coefficients(self, x: Tensor, t: Tensor | int) -> tuple[Tensor, Tensor]:
        """sqrt(abar_t) and sqrt(1 - abar_t) at ``t``, shaped to broadcast over ``x``."""
        abar = self.alphas_cumprod.to(device=x.device, dtype=x.dtype)
        t = torch.as_tensor(t, device=x.device)
        if t.min() < 0 or t.max() >= self.num_train_timesteps:
            raise GenlabError(
                f"timesteps must lie in [0, {self.num_train_timesteps - 1}], got {t.tolist()}"
            )
        return _per_sample(abar[t] ** 0.5, x.ndim), _per_sample((1 - abar[t]) ** 0.5, x.ndim)

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor | int) -> Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise: any step of the forward process at once."""
        a, s = self._coefficients(x0, t)
        return a * x0 + s * noise

    def snr(self, t: Tensor | int) -> Tensor:
        """Signal-to-noise ratio abar_t / (1 - abar_t) of step ``t``, on ``t``'s device."""
        t = torch.as_tensor(t)
        abar = self.alphas_cumprod.to(t.device)[t]
        return abar / (1 - abar)

    def min_snr_weight(
        self,
        t: Tensor | int,
        gamma: float,
        prediction: str | None = None,
        floor: float = 0.0,
    ) -> Tensor:
        """Min-SNR-gamma loss weight of step ``t`` (Hang et al., 2023): the x_0 error weighted
        by ``min(SNR, gamma)``, written for the parametrisation's own error, so that the
        low-noise steps (large SNR) stop dominating and the steps conflict less.

        ``floor`` > 0 weights the x_0 error by ``clamp(SNR, floor, gamma)`` instead: Min-SNR
        gives the noisiest steps almost no weight (SNR ~ 0), yet only there does a caption
        say where a shape goes, since at lower noise the image itself shows it (genlab's
        addition, measured in docs/diffusion.md)."""
        prediction = prediction or self.prediction
        _check_choice(prediction, PREDICTIONS, "prediction type")
        snr = self.snr(t)
        clipped = snr.clamp(min=floor, max=gamma)
        if prediction == "eps":  # |eps error|^2 = SNR |x0 error|^2
            return clipped / snr
        if prediction == "v":  # |v error|^2 = (SNR + 1) |x0 error|^2
            return clipped / (snr + 1)
        return clipped

    def get_velocity(self, x0: Tensor, noise: Tensor, t: Tensor | int) -> Tensor:
        """v = sqrt(abar_t) noise - sqrt(1 - abar_t) x_0, the target of v-prediction."""
        a, s = self._coefficients(x0, t)
        return a * noise - s * x0

    def training_target(
        self, x0: Tensor, noise: Tensor, t: Tensor | int, prediction: str | None = None
    ) -> Tensor:
        """What the network should output for x_t made from (x0, noise, t); ``prediction``
        defaults to the schedule's own."""
        prediction = prediction or self.prediction
        _check_choice(prediction, PREDICTIONS, "prediction type")
        if prediction == "eps":
            return noise
        if prediction == "x0":
            return x0
        return self.get_velocity(x0, noise, t)

    def _x0_and_eps(
        self, model_output: Tensor, sample: Tensor, alpha_prod_t: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Turn the network's output into estimates of x_0 and of the noise."""
        beta_prod_t = 1 - alpha_prod_t
        if self.prediction == "eps":
            x0 = (sample - beta_prod_t**0.5 * model_output) / alpha_prod_t**0.5
            eps = model_output
        elif self.prediction == "x0":
            x0 = model_output
            eps = (sample - alpha_prod_t**0.5 * x0) / beta_prod_t**0.5
        else:
            x0 = alpha_prod_t**0.5 * sample - beta_prod_t**0.5 * model_output
            eps = alpha_prod_t**0.5 * model_output + beta_prod_t**0.5 * sample
        return x0, eps


def inference_timesteps(
    num_train_timesteps: int, num_inference_steps: int, spacing: str, steps_offset: int = 0
) -> np.ndarray:
    """Which training timesteps a sampler visits, in decreasing order.

    ``leading`` takes multiples of T // n from 0 (the DDIM paper), ``trailing`` counts down from
    T - 1 (so the first step starts from pure noise), ``linspace`` spreads n steps over [0, T-1]
    (Lin et al., 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed", table 2).
    """
    T, n = num_train_timesteps, num_inference_steps
    _check_choice(spacing, SPACINGS, "timestep spacing")
    if not 1 <= n <= T:
        raise GenlabError(f"number of sampling steps must lie in [1, {T}], got {n}")
    if spacing == "linspace":
        steps = np.linspace(0, T - 1, n).round()[::-1].copy().astype(np.int64)
    elif spacing == "leading":
        steps = (np.arange(0, n) * (T // n)).round()[::-1].copy().astype(np.int64) + steps_offset
    else:
        steps = np.round(np.arange(T, 0, -T / n)).astype(np.int64) - 1
    if steps[0] >= T:
        raise GenlabError(
            f"steps_offset={steps_offset} pushes the first timestep to {steps[0]}, past the "
            f"last training step {T - 1}; lower it or take fewer steps"
        )
    return steps


def _randn(sample: Tensor, generator: torch.Generator | None) -> Tensor:
    """One standard normal draw of ``sample``'s shape, made where the generator lives (as
    diffusers' ``randn_tensor`` does, so a CPU generator gives the same numbers on any device)."""
    device = generator.device if generator is not None else sample.device
    noise = torch.randn(sample.shape, generator=generator, device=device, dtype=sample.dtype)
    return noise.to(sample.device)


class DDPMScheduler(NoiseSchedule):
    """Ancestral sampling (Ho et al., 2020): x_{t-1} ~ q(x_{t-1} | x_t, x_0 = predicted x_0).

    The posterior mean mixes the predicted x_0 and x_t; its variance is the posterior's
    ``(1 - abar_{t-1}) / (1 - abar_t) * beta_t`` (``fixed_small``) or ``beta_t``
    (``fixed_large``), the two choices the DDPM paper found to work equally well. With fewer
    sampling steps than training steps, beta_t is that of the stride actually taken.
    """

    def __init__(
        self,
        schedule: str = "linear",
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        betas: Tensor | None = None,
        prediction: str = "eps",
        variance_type: str = "fixed_small",
        clip_sample: bool = True,
        clip_sample_range: float = 1.0,
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
    ) -> None:
        super().__init__(schedule, num_train_timesteps, beta_start, beta_end, betas, prediction)
        _check_choice(variance_type, VARIANCES, "variance type")
        _check_choice(timestep_spacing, SPACINGS, "timestep spacing")
        self.variance_type = variance_type
        self.clip_sample = clip_sample
        self.clip_sample_range = clip_sample_range
        self.timestep_spacing = timestep_spacing
        self.steps_offset = steps_offset
        self.one = torch.tensor(1.0)
        self.set_timesteps(self.num_train_timesteps)

    def set_timesteps(
        self, num_inference_steps: int, device: torch.device | str | None = None
    ) -> None:
        """Choose the timesteps to visit (all T by default, the DDPM sampler proper)."""
        self.num_inference_steps = num_inference_steps
        steps = inference_timesteps(
            self.num_train_timesteps, num_inference_steps, self.timestep_spacing, self.steps_offset
        )
        self.timesteps = torch.from_numpy(steps).to(device)
        # each visited step jumps to the next one in the list, and the last one to x_0
        visited = steps.tolist()
        self._previous = dict(zip(visited, visited[1:] + [-1], strict=True))

    def step(
        self,
        model_output: Tensor,
        timestep: Tensor | int,
        sample: Tensor,
        generator: torch.Generator | None = None,
    ) -> SchedulerOutput:
        """Sample x_{t-1} given the network's output at (x_t, t)."""
        t = int(timestep)
        if t not in self._previous:
            raise GenlabError(
                f"timestep {t} is not one of this scheduler's timesteps; iterate over "
                "scheduler.timesteps after set_timesteps(n)"
            )
        prev_t = self._previous[t]
        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.one
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_t_prev = 1 - alpha_prod_t_prev
        current_alpha_t = alpha_prod_t / alpha_prod_t_prev
        current_beta_t = 1 - current_alpha_t

        x0, _ = self._x0_and_eps(model_output, sample, alpha_prod_t)
        if self.clip_sample:
            x0 = x0.clamp(-self.clip_sample_range, self.clip_sample_range)

        # mean of the posterior q(x_{t-1} | x_t, x_0), DDPM eq. (7)
        x0_coef = (alpha_prod_t_prev**0.5 * current_beta_t) / beta_prod_t
        xt_coef = current_alpha_t**0.5 * beta_prod_t_prev / beta_prod_t
        prev_sample = x0_coef * x0 + xt_coef * sample

        if t > 0:
            noise = _randn(model_output, generator)
            if self.variance_type == "fixed_small":
                variance = torch.clamp(beta_prod_t_prev / beta_prod_t * current_beta_t, min=1e-20)
            else:
                variance = current_beta_t
            prev_sample = prev_sample + variance**0.5 * noise
        return SchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)


class DDIMScheduler(NoiseSchedule):
    """DDIM (Song et al., 2021): sampling on a subsequence of the training timesteps.

    From the predicted x_0 and noise, x_{t'} = sqrt(abar_{t'}) x_0 + sqrt(1 - abar_{t'} -
    sigma^2) eps + sigma z with sigma = eta * sqrt((1 - abar_{t'}) / (1 - abar_t) * (1 - abar_t /
    abar_{t'})): ``eta=0`` is deterministic (an ODE-like map from noise to image), ``eta=1``
    has the variance of DDPM's posterior.

    As in diffusers, the previous timestep is ``t - T // n``: with the default ``leading``
    spacing (and with ``trailing`` when n divides T) that is exactly the next visited step.
    Past the last step, abar is 1 (``set_alpha_to_one``, the clean image) or abar_0.

    ``clip_sample`` clamps the x_0 estimate; like diffusers, the step then still uses the
    unclipped noise estimate. ``rederive_noise`` recomputes the noise from the clipped x_0
    instead, so the two agree (x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps still holds), which
    keeps strongly guided samples moving towards the condition.
    """

    def __init__(
        self,
        schedule: str = "linear",
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        betas: Tensor | None = None,
        prediction: str = "eps",
        eta: float = 0.0,
        clip_sample: bool = True,
        clip_sample_range: float = 1.0,
        set_alpha_to_one: bool = True,
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        rederive_noise: bool = False,
    ) -> None:
        super().__init__(schedule, num_train_timesteps, beta_start, beta_end, betas, prediction)
        _check_choice(timestep_spacing, SPACINGS, "timestep spacing")
        if not 0.0 <= eta <= 1.0:
            raise GenlabError(f"eta must lie in [0, 1] (0: deterministic DDIM), got {eta}")
        self.eta = eta
        self.clip_sample = clip_sample
        self.clip_sample_range = clip_sample_range
        self.rederive_noise = rederive_noise
        self.final_alpha_cumprod = torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0]
        self.timestep_spacing = timestep_spacing
        self.steps_offset = steps_offset
        self.num_inference_steps: int | None = None
        self.timesteps = torch.arange(self.num_train_timesteps - 1, -1, -1)

    def set_timesteps(
        self, num_inference_steps: int, device: torch.device | str | None = None
    ) -> None:
        """Choose the ``num_inference_steps`` timesteps to visit (e.g. 50 of 1000)."""
        steps = inference_timesteps(
            self.num_train_timesteps, num_inference_steps, self.timestep_spacing, self.steps_offset
        )
        self.num_inference_steps = num_inference_steps
        self.timesteps = torch.from_numpy(steps).to(device)

    def step(
        self,
        model_output: Tensor,
        timestep: Tensor | int,
        sample: Tensor,
        generator: torch.Generator | None = None,
    ) -> SchedulerOutput:
        """Move from x_t to x_{t - T//n} given the network's output at (x_t, t)."""
        if self.num_inference_steps is None:
            raise GenlabError("call set_timesteps(n) on the DDIM scheduler before step()")
        t = int(timestep)
        prev_t = t - self.num_train_timesteps // self.num_inference_steps
        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_t_prev = 1 - alpha_prod_t_prev

        x0, eps = self._x0_and_eps(model_output, sample, alpha_prod_t)
        if self.clip_sample:
            x0 = x0.clamp(-self.clip_sample_range, self.clip_sample_range)
            if self.rederive_noise:
                eps = (sample - alpha_prod_t**0.5 * x0) / beta_prod_t**0.5

        # DDIM eq. (12) with sigma from eq. (16)
        variance = (beta_prod_t_prev / beta_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev)
        std_dev_t = self.eta * variance**0.5
        direction = (1 - alpha_prod_t_prev - std_dev_t**2) ** 0.5 * eps
        prev_sample = alpha_prod_t_prev**0.5 * x0 + direction
        if self.eta > 0:
            prev_sample = prev_sample + std_dev_t * _randn(model_output, generator)
        return SchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)


def sample_loop(
    model_fn: Callable[[Tensor, Tensor], Tensor],
    scheduler: DDPMScheduler | DDIMScheduler,
    noise: Tensor,
    generator: torch.Generator | None = None,
    callback: Callable[[int, Tensor, SchedulerOutput], None] | None = None,
) -> Tensor:
    """The reverse process: start from ``noise`` (x_T) and step through ``scheduler.timesteps``.

    ``model_fn(x_t, t)`` returns the network's prediction (wrap a guided model here);
    ``callback(i, t, output)`` sees every step, e.g. to record the x_0 estimates.
    """
    x = noise
    for i, t in enumerate(scheduler.timesteps):
        out = scheduler.step(model_fn(x, t), t, x, generator=generator)
        if callback is not None:
            callback(i, t, out)
        x = out.prev_sample
    return x
