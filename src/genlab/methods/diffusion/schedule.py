"""The forward process of diffusion: noise schedules, noising in closed form, training targets.

A diffusion model learns to undo a fixed process that mixes a sample with Gaussian noise over T
steps, ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``, ``abar_t`` the cumulative product of
``1 - beta_t`` (Ho et al., 2020, "Denoising Diffusion Probabilistic Models", DDPM). Schedules:
``linear`` (DDPM), ``cosine`` (Nichol & Dhariwal, 2021, "Improved Denoising Diffusion
Probabilistic Models") and ``scaled_linear`` (Stable Diffusion's). Targets: the noise (``eps``),
the clean sample (``x0``) or the velocity (``v``; Salimans & Ho, 2022, "Progressive Distillation
for Fast Sampling of Diffusion Models"), weighted by Min-SNR-gamma (Hang et al., 2023, "Efficient
Diffusion Training via Min-SNR Weighting Strategy"). A sample is any tensor (B, ...), image or
audio. The arithmetic follows diffusers, and its argument names work too (``beta_schedule``,
``prediction_type``, ``trained_betas``, with its values ``squaredcos_cap_v2``, ``epsilon``,
``sample``, ``v_prediction``), so a diffusers configuration builds the same schedule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from genlab.core.errors import GenlabError

# genlab's name of each choice -> diffusers' name of it
DIFFUSERS_SCHEDULES = {
    "linear": "linear",
    "cosine": "squaredcos_cap_v2",
    "scaled_linear": "scaled_linear",
}
DIFFUSERS_PREDICTIONS = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
SCHEDULES = tuple(DIFFUSERS_SCHEDULES)
PREDICTIONS = tuple(DIFFUSERS_PREDICTIONS)


def check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    """Refuse a ``value`` that is not one of ``choices``, naming them."""
    if value not in choices:
        raise GenlabError(f"unknown {what} '{value}'; choose one of {', '.join(choices)}")


def genlab_name(value: str, diffusers_names: dict[str, str], what: str) -> str:
    """genlab's name for a choice given by either library's name (``epsilon`` -> ``eps``)."""
    ours = {theirs: mine for mine, theirs in diffusers_names.items()}.get(value, value)
    if ours not in diffusers_names:
        choices = ", ".join(f"{mine} ({theirs})" for mine, theirs in diffusers_names.items())
        raise GenlabError(f"unknown {what} '{value}'; choose one of {choices}")
    return ours


def _choice(
    ours: str, default: str, theirs: str | None, diffusers_names: dict[str, str], what: str
) -> str:
    """genlab's name of a choice given as genlab's argument (``ours``) or diffusers'
    (``theirs``), refusing two different ones."""
    ours = genlab_name(ours, diffusers_names, what)
    if theirs is None:
        return ours
    theirs = genlab_name(theirs, diffusers_names, what)
    if ours not in (default, theirs):
        raise GenlabError(f"{what} given twice, as '{ours}' and as '{theirs}'; give one")
    return theirs


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
    """The float32 betas of a named schedule (``linear``, ``cosine`` or ``scaled_linear``, or
    diffusers' ``squaredcos_cap_v2`` for the cosine one)."""
    T = num_train_timesteps
    if T < 1:
        raise GenlabError(f"num_train_timesteps must be positive, got {T}")
    schedule = genlab_name(schedule, DIFFUSERS_SCHEDULES, "noise schedule")
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, T, dtype=torch.float32)
    if schedule == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float32) ** 2
    return cosine_betas(T)


def _per_sample(coef: Tensor, ndim: int) -> Tensor:
    """Shape per-sample coefficients (B,) as (B, 1, ..., 1) to broadcast over a batch."""
    return coef.reshape(-1, *([1] * (ndim - 1)))


class NoiseSchedule:
    """The forward process: betas, their cumulative products, noising and training targets.

    ``beta_schedule``, ``prediction_type`` and ``trained_betas`` are diffusers' names for
    ``schedule``, ``prediction`` and ``betas``; either library's values are accepted and kept
    under genlab's names (``prediction_type`` reads them back under diffusers').
    """

    def __init__(
        self,
        schedule: str = "linear",
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        betas: Tensor | None = None,
        prediction: str = "eps",
        *,
        beta_schedule: str | None = None,
        prediction_type: str | None = None,
        trained_betas: Tensor | Sequence[float] | None = None,
    ) -> None:
        self.schedule = _choice(
            schedule, "linear", beta_schedule, DIFFUSERS_SCHEDULES, "noise schedule"
        )
        self.prediction = _choice(
            prediction, "eps", prediction_type, DIFFUSERS_PREDICTIONS, "prediction type"
        )
        if trained_betas is not None:
            if betas is not None:
                raise GenlabError("betas given twice, as betas and as trained_betas; give one")
            betas = trained_betas
        self.beta_start, self.beta_end = beta_start, beta_end
        self.trained_betas = None if betas is None else torch.as_tensor(betas, dtype=torch.float32)
        if betas is None:
            betas = make_betas(self.schedule, num_train_timesteps, beta_start, beta_end)
        self.betas = torch.as_tensor(betas, dtype=torch.float32)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.num_train_timesteps = len(self.betas)

    @property
    def prediction_type(self) -> str:
        """What the network predicts, under diffusers' name (``epsilon``, ``sample``, ...)."""
        return DIFFUSERS_PREDICTIONS[self.prediction]

    @property
    def beta_schedule(self) -> str:
        """The schedule under diffusers' name (``squaredcos_cap_v2`` for the cosine one)."""
        return DIFFUSERS_SCHEDULES[self.schedule]

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
        gives the noisiest steps almost no weight (SNR ~ 0), yet only there does a condition
        (a caption) decide where a shape goes, since at lower noise the sample itself shows it
        (genlab's addition, measured in docs/diffusion.md)."""
        prediction = prediction or self.prediction
        prediction = genlab_name(prediction, DIFFUSERS_PREDICTIONS, "prediction type")
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
        prediction = genlab_name(prediction, DIFFUSERS_PREDICTIONS, "prediction type")
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
