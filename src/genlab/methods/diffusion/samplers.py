"""The reverse process: the DDPM and DDIM samplers and the loop that runs them.

``DDPMScheduler`` samples ancestrally from the posterior q(x_{t-1} | x_t, x_0) (Ho et al., 2020,
"Denoising Diffusion Probabilistic Models"); ``DDIMScheduler`` is the non-Markovian sampler of
Song et al., 2021, "Denoising Diffusion Implicit Models", which runs on any subsequence of the
training steps, deterministic at ``eta=0``. Both follow the contract of diffusers
(``set_timesteps(n)``, iterate ``scheduler.timesteps``, ``step(model_output, t, sample, ...)
.prev_sample``) under its argument names, read its configurations (``from_config``,
``from_diffusers``) and write theirs (``config``), draw exactly one ``torch.randn(sample.shape,
generator=generator)`` per stochastic step and compute operation for operation as diffusers
does: the same generator gives the same samples in both libraries, and a sampling loop written
for diffusers runs unchanged on them (the tests check this). A sample is any tensor (B, ...).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.core.io import read_json
from genlab.methods.diffusion.schedule import NoiseSchedule, check_choice

SPACINGS = ("leading", "trailing", "linspace")
VARIANCES = ("fixed_small", "fixed_large")
DIFFUSERS_CONFIG_FILE = "scheduler_config.json"
# diffusers settings genlab does not implement: each must keep its off value
UNSUPPORTED = {
    "thresholding": False,  # Saharia et al., 2022 (Imagen): dynamic thresholding of x_0
    "rescale_betas_zero_snr": False,  # Lin et al., 2024: rescale the schedule to zero SNR
}


@dataclass
class SchedulerOutput:
    """One reverse step: the sample at the previous timestep and the current estimate of x_0."""

    prev_sample: Tensor
    pred_original_sample: Tensor


def inference_timesteps(
    num_train_timesteps: int, num_inference_steps: int, spacing: str, steps_offset: int = 0
) -> np.ndarray:
    """Which training timesteps a sampler visits, in decreasing order.

    ``leading`` takes multiples of T // n from 0 (the DDIM paper), ``trailing`` counts down from
    T - 1 (so the first step starts from pure noise), ``linspace`` spreads n steps over [0, T-1]
    (Lin et al., 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed", table 2).
    """
    T, n = num_train_timesteps, num_inference_steps
    check_choice(spacing, SPACINGS, "timestep spacing")
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


def _output(
    prev_sample: Tensor, x0: Tensor, return_dict: bool
) -> SchedulerOutput | tuple[Tensor, Tensor]:
    if return_dict:
        return SchedulerOutput(prev_sample=prev_sample, pred_original_sample=x0)
    return prev_sample, x0


def _check_eta(eta: float) -> float:
    if not 0.0 <= eta <= 1.0:
        raise GenlabError(f"eta must lie in [0, 1] (0: deterministic DDIM), got {eta}")
    return eta


class SchedulerConfig(dict):
    """A scheduler's settings under diffusers' names, read as keys or as attributes
    (``scheduler.config.prediction_type``), as diffusers' own config is."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Sampler(NoiseSchedule):
    """What DDPM and DDIM share: which timesteps they visit, the clipping of the x_0 estimate,
    and diffusers' configuration. ``timesteps`` counts down over all T steps until
    ``set_timesteps(n)`` chooses n of them.

    ``init_noise_sigma`` and ``scale_model_input`` are there for loops written for diffusers,
    whose other schedulers (Euler, ...) scale the noise; here both leave it as it is.
    """

    init_noise_sigma = 1.0

    def _init_sampling(
        self, clip_sample: bool, clip_sample_range: float, timestep_spacing: str, steps_offset: int
    ) -> None:
        check_choice(timestep_spacing, SPACINGS, "timestep spacing")
        self.clip_sample = clip_sample
        self.clip_sample_range = clip_sample_range
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

    def scale_model_input(self, sample: Tensor, timestep: Tensor | int | None = None) -> Tensor:
        """The network's input at ``timestep``: the sample itself (DDPM and DDIM scale nothing)."""
        return sample

    @property
    def config(self) -> SchedulerConfig:
        """The settings under diffusers' names: ``from_config`` (here or in diffusers) rebuilds
        this scheduler from them, ``json.dumps`` saves them as ``scheduler_config.json``."""
        betas = self.trained_betas
        return SchedulerConfig(
            _class_name=type(self).__name__,
            num_train_timesteps=self.num_train_timesteps,
            beta_start=self.beta_start,
            beta_end=self.beta_end,
            beta_schedule=self.beta_schedule,
            trained_betas=None if betas is None else betas.tolist(),
            prediction_type=self.prediction_type,
            clip_sample=self.clip_sample,
            clip_sample_range=self.clip_sample_range,
            timestep_spacing=self.timestep_spacing,
            steps_offset=self.steps_offset,
            **self._own_config(),
        )

    def _own_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | Any | None = None, **overrides: Any) -> Self:
        """A scheduler from a diffusers-style config (a dict, ``scheduler.config``, or a
        scheduler of either library), ``overrides`` replacing some settings, as in diffusers'
        ``DDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")``.

        Settings this class does not take (another scheduler's, ``_diffusers_version``) are
        ignored, as diffusers does; a diffusers feature genlab lacks is refused.
        """
        config = getattr(config, "config", config)
        settings = {**dict(config or {}), **overrides}
        for name, off in UNSUPPORTED.items():
            if settings.get(name, off) != off:
                raise GenlabError(
                    f"{cls.__name__} does not implement diffusers' {name}; set {name}={off} "
                    "or sample with diffusers"
                )
        takes = inspect.signature(cls.__init__).parameters
        return cls(**{k: v for k, v in settings.items() if k in takes and k != "self"})

    @classmethod
    def from_diffusers(cls, source: str | os.PathLike | Mapping[str, Any] | Any) -> Self:
        """A scheduler from diffusers: a scheduler object, its config, or a saved folder
        (``scheduler_config.json`` in it or in its ``scheduler/`` subfolder) or that file."""
        if not isinstance(source, (str, os.PathLike)):
            return cls.from_config(source)
        path = Path(source)
        for candidate in (
            path,
            path / DIFFUSERS_CONFIG_FILE,
            path / "scheduler" / DIFFUSERS_CONFIG_FILE,
        ):
            if candidate.is_file():
                return cls.from_config(read_json(candidate, what="scheduler config"))
        raise GenlabError(
            f"no {DIFFUSERS_CONFIG_FILE} in {path} (nor in {path / 'scheduler'}); pass a diffusers "
            "pipeline or scheduler folder"
        )


class DDPMScheduler(Sampler):
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
        *,
        beta_schedule: str | None = None,
        prediction_type: str | None = None,
        trained_betas: Tensor | Sequence[float] | None = None,
    ) -> None:
        super().__init__(
            schedule,
            num_train_timesteps,
            beta_start,
            beta_end,
            betas,
            prediction,
            beta_schedule=beta_schedule,
            prediction_type=prediction_type,
            trained_betas=trained_betas,
        )
        self._init_sampling(clip_sample, clip_sample_range, timestep_spacing, steps_offset)
        check_choice(variance_type, VARIANCES, "variance type")
        self.variance_type = variance_type
        self.one = torch.tensor(1.0)
        self.set_timesteps(self.num_train_timesteps)

    def _own_config(self) -> dict[str, Any]:
        return {"variance_type": self.variance_type}

    def set_timesteps(
        self, num_inference_steps: int, device: torch.device | str | None = None
    ) -> None:
        """Choose the timesteps to visit (all T by default, the DDPM sampler proper)."""
        super().set_timesteps(num_inference_steps, device)
        # each visited step jumps to the next one in the list, and the last one to x_0
        visited = self.timesteps.tolist()
        self._previous = dict(zip(visited, visited[1:] + [-1], strict=True))

    def step(
        self,
        model_output: Tensor,
        timestep: Tensor | int,
        sample: Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[Tensor, Tensor]:
        """Sample x_{t-1} given the network's output at (x_t, t); ``return_dict=False`` gives
        the tuple ``(prev_sample, pred_original_sample)``, as in diffusers."""
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
        return _output(prev_sample, x0, return_dict)


class DDIMScheduler(Sampler):
    """DDIM (Song et al., 2021): sampling on a subsequence of the training timesteps.

    From the predicted x_0 and noise, x_{t'} = sqrt(abar_{t'}) x_0 + sqrt(1 - abar_{t'} -
    sigma^2) eps + sigma z with sigma = eta * sqrt((1 - abar_{t'}) / (1 - abar_t) * (1 - abar_t /
    abar_{t'})): ``eta=0`` is deterministic (an ODE-like map from noise to image), ``eta=1``
    has the variance of DDPM's posterior.

    As in diffusers, the previous timestep is ``t - T // n``: with the default ``leading``
    spacing (and with ``trailing`` when n divides T) that is exactly the next visited step.
    Past the last step, abar is 1 (``set_alpha_to_one``, the clean image) or abar_0.

    ``clip_sample`` clamps the x_0 estimate; like diffusers, the step then still uses the
    unclipped noise estimate. ``rederive_noise`` (diffusers' ``use_clipped_model_output``, from
    GLIDE) recomputes the noise from the x_0 estimate instead, so the two agree (x_t = sqrt(abar)
    x_0 + sqrt(1 - abar) eps still holds), which keeps strongly guided samples moving towards
    the condition.
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
        *,
        beta_schedule: str | None = None,
        prediction_type: str | None = None,
        trained_betas: Tensor | Sequence[float] | None = None,
    ) -> None:
        super().__init__(
            schedule,
            num_train_timesteps,
            beta_start,
            beta_end,
            betas,
            prediction,
            beta_schedule=beta_schedule,
            prediction_type=prediction_type,
            trained_betas=trained_betas,
        )
        self._init_sampling(clip_sample, clip_sample_range, timestep_spacing, steps_offset)
        self.eta = _check_eta(eta)
        self.rederive_noise = rederive_noise
        self.set_alpha_to_one = set_alpha_to_one
        self.final_alpha_cumprod = torch.tensor(1.0) if set_alpha_to_one else self.alphas_cumprod[0]

    def _own_config(self) -> dict[str, Any]:
        return {
            "set_alpha_to_one": self.set_alpha_to_one,
            "eta": self.eta,
            "rederive_noise": self.rederive_noise,
        }

    def step(
        self,
        model_output: Tensor,
        timestep: Tensor | int,
        sample: Tensor,
        eta: float | None = None,
        use_clipped_model_output: bool | None = None,
        generator: torch.Generator | None = None,
        variance_noise: Tensor | None = None,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[Tensor, Tensor]:
        """Move from x_t to x_{t - T//n} given the network's output at (x_t, t).

        The arguments are diffusers': ``eta`` and ``use_clipped_model_output`` default to the
        scheduler's ``eta`` and ``rederive_noise``; ``variance_noise`` replaces the random draw;
        ``return_dict=False`` gives the tuple ``(prev_sample, pred_original_sample)``.
        """
        eta = self.eta if eta is None else _check_eta(eta)
        rederive = (
            self.rederive_noise if use_clipped_model_output is None else use_clipped_model_output
        )
        if variance_noise is not None and generator is not None:
            raise GenlabError("give step() a generator or variance_noise, not both")
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
        if rederive:
            eps = (sample - alpha_prod_t**0.5 * x0) / beta_prod_t**0.5

        # DDIM eq. (12) with sigma from eq. (16)
        variance = (beta_prod_t_prev / beta_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev)
        std_dev_t = eta * variance**0.5
        direction = (1 - alpha_prod_t_prev - std_dev_t**2) ** 0.5 * eps
        prev_sample = alpha_prod_t_prev**0.5 * x0 + direction
        if eta > 0:
            noise = (
                variance_noise if variance_noise is not None else _randn(model_output, generator)
            )
            prev_sample = prev_sample + std_dev_t * noise
        return _output(prev_sample, x0, return_dict)


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
