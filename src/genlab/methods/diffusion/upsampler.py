"""A text-conditioned diffusion upsampler: the second stage of a cascade.

Cascaded diffusion (Ho et al., 2021, "Cascaded Diffusion Models for High Fidelity Image
Generation"; Saharia et al., 2022, "Photorealistic Text-to-Image Diffusion Models with Deep
Language Understanding", Imagen) draws a small image with one model and enlarges it with
others: each upsampler is a diffusion model of the high-resolution image conditioned on the
low-resolution one, which it reads upsampled to its own size and concatenated to its input on
channels (SR3: Saharia et al., 2022, "Image Super-Resolution via Iterative Refinement"), and, in
Imagen, on the caption too (here as in the base model: cross-attention to its caption encoder,
trained with it or frozen, and the pooled caption added to the step embedding).

The stages are trained apart, the upsampler on real images and their downsampled copies, but at
sampling time it reads the base model's samples, which differ from real low-resolution images.
Both papers close that gap with **noise conditioning augmentation**: training corrupts the
low-resolution image with Gaussian noise at a random level and gives the network the level, so
it learns to trust a noisier input less, and sampling corrupts the base's sample at one fixed
level (Imagen sweeps it; 0.1-0.2 on its scale). The corruption here is Imagen's, variance
preserving like the forward process, on the model's own noise schedule: a level ``a`` in
[0, 1] is the fraction ``a`` of the forward process,
``sqrt(abar(aT)) x + sqrt(1 - abar(aT)) noise`` (``abar`` interpolated between training steps,
``abar(0) = 1``: level 0 is the clean image). The level reaches the network as Imagen's does, as
an embedding (sinusoidal, as the step's, then an MLP) added to the step embedding of every
residual block. Training draws it uniformly in ``[0, aug_max]`` per row
(:class:`UpsamplerBatchSource`); the model never corrupts its input itself, so sampling uses the
level it is given: none (0) by default in :func:`upsample`, and a fixed level for a base
model's samples in :func:`genlab.methods.diffusion.cascade.generate_cascade`.

The upsampler is a :class:`~genlab.methods.diffusion.text_conditioned.DiffusionModel` with one
more condition: the schedule, samplers, guidance (of the caption only: the low-resolution image
is never dropped), loss (:class:`~genlab.methods.diffusion.loss.DiffusionLoss`, whose batch
passes ``low_res`` and ``aug_level`` by name) and run-folder conventions are the base model's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.checkpoint import MODEL_FILE
from genlab.core.device import autocast
from genlab.core.ema import EMA_FILE
from genlab.core.errors import GenlabError
from genlab.core.registry import Kind, load, register
from genlab.data.captions import CaptionTokenizer
from genlab.methods.diffusion.guidance import guided_model_output
from genlab.methods.diffusion.samplers import DDIMScheduler, DDPMScheduler, sample_loop
from genlab.methods.diffusion.schedule import NoiseSchedule, check_choice
from genlab.methods.diffusion.text_conditioned import (
    CAPTIONS,
    DiffusionBatchSource,
    DiffusionConfig,
    DiffusionModel,
    _check_vocabulary,
)
from genlab.nets.unet_blocks import timestep_embedding

RESIZES = ("bilinear", "nearest")
KIND = "upsampler"


@dataclass(frozen=True)
class UpsamplerConfig(DiffusionConfig):
    """A diffusion model of ``image_size`` images given ``low_res`` ones: its UNet reads
    ``unet.image_channels`` more channels (``unet.cond_channels``), the low-res image."""

    low_res: int = 16  # side of the image it upsamples
    resize: str = "bilinear"  # how the low-res image is brought to image_size: bilinear | nearest
    aug_max: float = 0.5  # training corrupts the low-res image at levels uniform in [0, aug_max]

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self.resize, RESIZES, "resize mode")
        if self.latent is not None:
            raise GenlabError("an upsampler denoises pixels: it takes no latent space")
        if self.unet.cond_channels != self.unet.image_channels:
            raise GenlabError(
                f"an upsampler's UNet must read the {self.unet.image_channels}-channel low-res "
                f"image: set cond_channels={self.unet.image_channels}, not "
                f"{self.unet.cond_channels}"
            )
        if not 1 <= self.low_res < self.image_size:
            raise GenlabError(
                f"an upsampler to {self.image_size} pixels takes a smaller low-res image, got "
                f"low_res={self.low_res}"
            )
        if not 0.0 <= self.aug_max <= 1.0:
            raise GenlabError(f"aug_max is a level in [0, 1], got {self.aug_max}")

    def to_dict(self) -> dict:
        return {
            **super().to_dict(),
            "low_res": self.low_res,
            "resize": self.resize,
            "aug_max": self.aug_max,
        }


def downsample(images: Tensor, size: int) -> Tensor:
    """``images`` (B, C, H, W) averaged down to ``size`` x ``size`` (area interpolation: each
    low-res pixel the mean of the pixels it covers, no aliasing)."""
    return F.interpolate(images.float(), size=(size, size), mode="area")


def resize_up(images: Tensor, size: int, mode: str = "bilinear") -> Tensor:
    """``images`` (B, C, h, w) enlarged to ``size`` x ``size`` (``bilinear`` or ``nearest``)."""
    check_choice(mode, RESIZES, "resize mode")
    extra = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(images, size=(size, size), mode=mode, **extra)


def aug_alpha_bar(schedule: NoiseSchedule, level: Tensor) -> Tensor:
    """``abar`` at the fraction ``level`` (B,) in [0, 1] of the forward process: linear
    between the points ``[1, abar_0, ..., abar_{T-1}]`` at ``level * T`` (1 at level 0)."""
    points = torch.cat([torch.ones(1), schedule.alphas_cumprod.float()]).to(level.device)
    pos = level.float().clamp(0.0, 1.0) * (len(points) - 1)
    low = pos.floor().long().clamp(max=len(points) - 2)
    frac = pos - low
    return points[low] + frac * (points[low + 1] - points[low])


def noise_augment(low_res: Tensor, level: Tensor, noise: Tensor, schedule: NoiseSchedule) -> Tensor:
    """Imagen's noise conditioning augmentation: ``low_res`` (B, ...) corrupted at ``level``
    (B,) by ``noise``, variance preserving (the forward process at ``level * T``)."""
    abar = aug_alpha_bar(schedule, level).reshape(-1, *([1] * (low_res.ndim - 1)))
    return abar.sqrt() * low_res + (1 - abar).sqrt() * noise.to(low_res.dtype)


class Upsampler(DiffusionModel):
    """UNet + caption encoder + noise-level embedding: ``model(x_t, t, tokens, token_mask,
    low_res, aug_level, drop_cond)`` predicts the target of ``config.prediction`` for the
    ``image_size`` image, given the ``low_res`` image (B, C, low_res, low_res), already
    corrupted at ``aug_level`` (B,) (or one level for all rows)."""

    config: UpsamplerConfig

    def __init__(self, config: UpsamplerConfig, text_encoder: nn.Module | None = None) -> None:
        super().__init__(config, text_encoder)
        emb = config.unet.time_embed_dim
        self.aug_embed = nn.Sequential(
            nn.Linear(config.unet.base_channels, emb), nn.SiLU(), nn.Linear(emb, emb)
        )
        # a fresh model ignores the level (its embedding is 0) until training finds it useful
        nn.init.zeros_(self.aug_embed[2].weight)
        nn.init.zeros_(self.aug_embed[2].bias)

    def image_condition(self, low_res: Tensor, aug_level: Tensor | float) -> dict[str, Tensor]:
        """The UNet's image conditions: ``cond_image`` (the low-res image resized to
        ``image_size``) and ``extra_embedding`` (the embedded level)."""
        c = self.config
        expected = (c.unet.image_channels, c.low_res, c.low_res)
        if low_res.ndim != 4 or tuple(low_res.shape[1:]) != expected:
            raise GenlabError(
                f"the low-res images have shape {tuple(low_res.shape)}, this upsampler takes "
                f"(B, {', '.join(map(str, expected))})"
            )
        B = low_res.shape[0]
        level = torch.as_tensor(aug_level, dtype=torch.float32, device=low_res.device)
        level = level.expand(B) if level.ndim == 0 else level
        steps = level * c.num_train_timesteps  # on the scale of the step index
        dtype = next(self.aug_embed.parameters()).dtype
        return {
            "cond_image": resize_up(low_res, c.image_size, c.resize),
            "extra_embedding": self.aug_embed(
                timestep_embedding(steps, c.unet.base_channels).to(dtype)
            ),
        }

    def forward(  # type: ignore[override]
        self,
        x: Tensor,
        t: Tensor | int,
        tokens: Tensor,
        token_mask: Tensor,
        low_res: Tensor,
        aug_level: Tensor | float,
        drop_cond: Tensor | None = None,
    ) -> Tensor:
        """Predict from noisy high-res images ``x`` at steps ``t`` given captions and the
        (corrupted) low-res images; the rows of ``drop_cond`` get the null caption only."""
        context, mask = self.encode(tokens, token_mask)
        return self.unet(
            x,
            t,
            context=context,
            context_mask=mask,
            drop_cond=drop_cond,
            **self.image_condition(low_res, aug_level),
        )


class UpsamplerBatchSource:
    """Training examples for :class:`Upsampler`: a :class:`DiffusionBatchSource` batch of the
    high-res images (``sample``, ``noise``, ``t``, caption ``tokens``, ``token_mask``,
    ``drop_cond``) plus ``low_res``, each image area-downsampled and corrupted at ``aug_level``,
    a level uniform in ``[0, aug_max]``. All draws are a function of ``(seed, step)``."""

    def __init__(
        self,
        pixels: Tensor,
        tokens: Tensor,
        token_mask: Tensor,
        config: UpsamplerConfig,
        cond_drop: float = 0.1,
        seed: int = 0,
    ) -> None:
        if pixels.ndim != 4 or pixels.shape[-1] != config.image_size:
            raise GenlabError(
                f"the upsampler trains on {config.image_size}-pixel images, got shape "
                f"{tuple(pixels.shape)}"
            )
        self.images = DiffusionBatchSource(
            pixels, tokens, token_mask, config.num_train_timesteps, cond_drop, seed
        )
        self.config, self.seed = config, seed
        self.schedule = NoiseSchedule(config.schedule, config.num_train_timesteps)

    def get_batch(self, step: int, start: int, stop: int, batch_size: int) -> dict[str, Tensor]:
        batch = self.images.get_batch(step, start, stop, batch_size)
        c = self.config
        # the whole global batch's draws (apart from the images' own), then this slice
        seed = int(np.random.SeedSequence([self.seed, step, 1]).generate_state(1)[0])
        g = torch.Generator().manual_seed(seed)
        level = torch.rand(batch_size, generator=g) * c.aug_max
        shape = (batch_size, c.unet.image_channels, c.low_res, c.low_res)
        noise = torch.randn(shape, generator=g)
        low = downsample(batch["sample"], c.low_res)
        level = level[start:stop]
        batch["low_res"] = noise_augment(low, level, noise[start:stop], self.schedule)
        batch["aug_level"] = level
        return batch


def _check_level(model: Upsampler, aug_level: float) -> None:
    if not 0.0 <= aug_level <= model.config.aug_max:
        raise GenlabError(
            f"aug level {aug_level} is outside the levels this upsampler was trained on "
            f"[0, {model.config.aug_max}]"
        )


@torch.no_grad()
def upsample_batch(
    model: Upsampler,
    tokens: Tensor,
    token_mask: Tensor,
    low_res: Tensor,
    scheduler: DDPMScheduler | DDIMScheduler,
    guidance: float = 1.0,
    aug_level: float = 0.0,
    generator: torch.Generator | None = None,
    precision: str = "fp32",
) -> Tensor:
    """High-res images (B, C, H, W) in [-1, 1] of the low-res images ``low_res`` (B, C, h, w)
    in [-1, 1] and captions ``tokens`` by the reverse process.

    The low-res images are corrupted at ``aug_level`` (0: used as given), then resized and
    the level embedded once; each step runs the conditional and unconditional predictions as
    one batch (``guidance`` weighs the caption). The corruption's noise is drawn from
    ``generator`` before the initial noise, at every level, so one seed starts from the same
    noise whatever the level."""
    _check_level(model, aug_level)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        c = model.config
        gen_device = generator.device if generator is not None else device
        aug_noise = torch.randn(low_res.shape, generator=generator, device=gen_device)
        shape = (len(low_res), c.unet.image_channels, c.image_size, c.image_size)
        noise = torch.randn(shape, generator=generator, device=gen_device).to(device)
        level = torch.full((len(low_res),), float(aug_level), device=device)
        schedule = model.noise_schedule()
        low = noise_augment(low_res.to(device).float(), level, aug_noise.to(device), schedule)
        tokens, token_mask = tokens.to(device), token_mask.to(device)
        with autocast(device, precision):
            context, mask = model.encode(tokens, token_mask)
            cond = {
                "context": context,
                "context_mask": mask,
                **model.image_condition(low, level),
            }

            def model_fn(x: Tensor, t: Tensor) -> Tensor:
                return guided_model_output(model.unet, x, t, cond, guidance).float()

            images = sample_loop(model_fn, scheduler, noise, generator=generator)
    finally:
        model.train(was_training)
    return images.clamp(-1, 1)


def upsample(
    model: Upsampler,
    tokenizer: CaptionTokenizer,
    low_res: Tensor,
    captions: Sequence[str],
    scheduler: DDPMScheduler | DDIMScheduler,
    guidance: float = 1.0,
    seed: int = 0,
    aug_level: float = 0.0,
    batch_size: int = 64,
    precision: str = "fp32",
) -> Tensor:
    """One high-res image per low-res image (N, C, h, w) in [-1, 1] and its caption, in
    batches of ``batch_size`` drawn in turn from one generator seeded with ``seed``.

    ``aug_level`` 0 (the default) conditions on the low-res images as given, right for real
    downsampled images; a base model's samples are better corrupted at a small level first
    (see :func:`genlab.methods.diffusion.cascade.generate_cascade`)."""
    if len(captions) != len(low_res):
        raise GenlabError(f"{len(low_res)} low-res images but {len(captions)} captions")
    if not captions:
        raise GenlabError("no images to upsample")
    generator = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, len(captions), batch_size):
        tokens, mask = tokenizer.encode(list(captions[start : start + batch_size]))
        low = low_res[start : start + batch_size]
        out.append(
            upsample_batch(
                model, tokens, mask, low, scheduler, guidance, aug_level, generator, precision
            ).cpu()
        )
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------
# Run folders

register(Kind(KIND, UpsamplerConfig, Upsampler, (CAPTIONS,), _check_vocabulary))


def load_upsampler(
    folder: str | os.PathLike, use_ema: bool = True, device: str | torch.device = "cpu"
) -> tuple[Upsampler, CaptionTokenizer]:
    """Open an upsampler run folder in eval mode: the model (its EMA weights by default, the
    raw ``model.safetensors`` otherwise) and its caption tokenizer."""
    loaded = load(folder, KIND, device, EMA_FILE if use_ema else MODEL_FILE)
    return loaded.model, loaded.files["tokenizer"]  # type: ignore[return-value]
