"""A text-conditioned diffusion model: a UNet that cross-attends to a caption encoder trained
with it, as in latent diffusion (Rombach et al., 2022) without the latent space, or to a frozen
pretrained one (``text_encoder``: minilm or a genlab GPT run), as Imagen reads T5 (Saharia et
al., 2022).

Training is the denoising loss of ``genlab.methods.diffusion.loss``; captions are dropped (the
null condition) with probability ``cond_drop`` so the same network learns the unconditional model
that classifier-free guidance needs (Ho & Salimans, 2022). Sampling runs any sampler of
``genlab.methods.diffusion.samplers`` with guidance. Everything random about a training example
is a function of ``(seed, step)`` (:class:`DiffusionBatchSource`), so a resumed or distributed
run sees exactly the examples of one uninterrupted process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from genlab.core.batches import TensorBatchSource
from genlab.core.checkpoint import MODEL_FILE
from genlab.core.device import autocast
from genlab.core.ema import EMA_FILE
from genlab.core.errors import GenlabError
from genlab.core.registry import ExtraFile, Kind, Loaded, kind, load, register
from genlab.data.captions import CaptionTokenizer
from genlab.data.images import from_uint8
from genlab.methods.diffusion.guidance import condition_dropout, guided_model_output
from genlab.methods.diffusion.latent import LatentConfig, LatentSpace
from genlab.methods.diffusion.samplers import DDIMScheduler, DDPMScheduler, sample_loop
from genlab.methods.diffusion.schedule import PREDICTIONS, SCHEDULES, NoiseSchedule, check_choice
from genlab.methods.diffusion.text_encoders import build_text_encoder
from genlab.nets.frozen_text_encoder import SMALL, check_text_encoder
from genlab.nets.text_encoder import TextEncoderConfig
from genlab.nets.unet import UNet, UNetConfig

SAMPLERS = ("ddpm", "ddim")


@dataclass(frozen=True)
class DiffusionConfig:
    """The denoiser, the caption encoder and the forward process they were trained for."""

    unet: UNetConfig
    text: TextEncoderConfig
    image_size: int = 32
    schedule: str = "linear"
    num_train_timesteps: int = 1000
    prediction: str = "eps"
    latent: LatentConfig | None = None  # denoise this frozen autoencoder's latents, not pixels
    # the caption encoder: small (trained with the UNet) | minilm | gpt:RUN (frozen; then
    # ``text`` records the caption ids' vocabulary size and length and the encoder's width)
    text_encoder: str = SMALL
    caption_vocab: tuple[str, ...] = ()  # a frozen encoder reads caption ids back into words

    def __post_init__(self) -> None:
        check_choice(self.schedule, SCHEDULES, "noise schedule")
        check_choice(self.prediction, PREDICTIONS, "prediction type")
        if self.unet.context_dim != self.text.dim:
            raise GenlabError(
                f"the UNet cross-attends to {self.unet.context_dim}-d context but the text "
                f"encoder makes {self.text.dim}-d embeddings"
            )
        if check_text_encoder(self.text_encoder) != SMALL and (
            len(self.caption_vocab) != self.text.vocab_size
        ):
            raise GenlabError(
                f"the frozen text encoder {self.text_encoder} needs the caption vocabulary of "
                f"{self.text.vocab_size} words in the config, got {len(self.caption_vocab)}"
            )
        if self.latent is not None:
            ae = self.latent.vae
            if self.unet.image_channels != ae.latent_channels or ae.image_size != self.image_size:
                raise GenlabError(
                    f"the UNet denoises {self.unet.image_channels}-channel samples of "
                    f"{self.image_size}-pixel images but the autoencoder has "
                    f"{ae.latent_channels} latent channels for {ae.image_size}-pixel images"
                )
        side, factor = self.sample_shape[-1], 2 ** (len(self.unet.channel_mults) - 1)
        if side < factor or side % factor:
            raise GenlabError(
                f"a {side}-pixel side is not a multiple of {factor}, which a UNet of "
                f"{len(self.unet.channel_mults)} levels needs"
            )

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """What the UNet denoises: an image, or the autoencoder's latent of one."""
        if self.latent is not None:
            return (self.latent.vae.latent_channels, *(2 * (self.latent.vae.latent_size,)))
        return (self.unet.image_channels, self.image_size, self.image_size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "unet": self.unet.to_dict(),
            "text": self.text.to_dict(),
            "image_size": self.image_size,
            "schedule": self.schedule,
            "num_train_timesteps": self.num_train_timesteps,
            "prediction": self.prediction,
            "latent": None if self.latent is None else self.latent.to_dict(),
            "text_encoder": self.text_encoder,
            **({"caption_vocab": list(self.caption_vocab)} if self.caption_vocab else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiffusionConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown or "unet" not in d or "text" not in d:
            raise GenlabError("not a genlab diffusion config (expected unet, text, schedule, ...)")
        return cls(
            **{
                **d,
                "unet": UNetConfig.from_dict(d["unet"]),
                "text": TextEncoderConfig.from_dict(d["text"]),
                "latent": None if d.get("latent") is None else LatentConfig.from_dict(d["latent"]),
                "caption_vocab": tuple(d.get("caption_vocab", ())),
            }
        )


class DiffusionModel(nn.Module):
    """UNet + caption encoder: ``model(x_t, t, tokens, token_mask, drop_cond)`` predicts the
    target of ``config.prediction``. ``text_encoder`` may be any module mapping ``(ids, mask)``
    to ``(B, L, config.text.dim)`` (or to that and its own mask); by default it is the one
    ``config.text_encoder`` names (``genlab.methods.diffusion.text_encoders``)."""

    def __init__(self, config: DiffusionConfig, text_encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.unet = UNet(config.unet)
        if text_encoder is None:
            text_encoder = build_text_encoder(
                config.text_encoder, config.text, config.caption_vocab
            )
        self.text_encoder = text_encoder
        self.latent = LatentSpace(config.latent) if config.latent is not None else None

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def noise_schedule(self) -> NoiseSchedule:
        c = self.config
        return NoiseSchedule(c.schedule, c.num_train_timesteps, prediction=c.prediction)

    def scheduler(
        self, sampler: str = "ddim", eta: float = 0.0, spacing: str | None = None
    ) -> DDPMScheduler | DDIMScheduler:
        """A sampler for the schedule this model was trained on (``set_timesteps`` still to do).

        DDIM defaults to ``trailing`` spacing, whose first step starts from pure noise (Lin et
        al., 2024); DDPM to ``leading``, the same as trailing when it visits all T steps.

        DDPM clips its x_0 estimate to [-1, 1] (its step reads only x_0 and x_t). DDIM's step
        also reuses the noise estimate, which diffusers does not re-derive from a clipped x_0;
        under strong guidance the two then disagree so much that the step moves the sample
        *against* the guidance (a "left" prompt drew its shape on the right at s = 5 in our
        runs). So v- and x0-models, whose x_0 estimate is bounded, sample unclipped, as in
        Stable Diffusion's configuration; an eps-model's estimate divides by sqrt(abar_t),
        about 0.007 at the first trailing step, so unclipped its errors grow 150-fold and the
        image stays noise (FID 7,297 against 1,576 for x0-prediction in one run): it is
        clipped, with the noise re-derived from the clipped x_0 (``rederive_noise``).

        [-1, 1] is the range of pixels, not of latents: a latent model's x_0 is a scaled latent
        of unit variance (a third of a unit Gaussian lies outside [-1, 1]), so neither sampler
        clips there (as Stable Diffusion's configuration; clipped, DDPM's 1000 steps drew no shape at
        all: adherence 0.01 where DDIM reached 0.99)."""
        check_choice(sampler, SAMPLERS, "sampler")
        c = self.config
        pixels = c.latent is None
        common = dict(
            schedule=c.schedule, num_train_timesteps=c.num_train_timesteps, prediction=c.prediction
        )
        if sampler == "ddpm":
            return DDPMScheduler(
                **common, clip_sample=pixels, timestep_spacing=spacing or "leading"
            )
        return DDIMScheduler(
            **common,
            eta=eta,
            clip_sample=pixels and c.prediction == "eps",
            rederive_noise=True,
            timestep_spacing=spacing or "trailing",
        )

    def encode(self, tokens: Tensor, token_mask: Tensor) -> tuple[Tensor, Tensor]:
        """The caption as a sequence of embeddings (B, L, D) for cross-attention, and its mask
        (B, L). An encoder with its own tokenizer (a frozen pretrained one) returns both; one
        over the caption ids returns the embeddings, whose mask is the ids' own."""
        out = self.text_encoder(tokens, token_mask)
        return out if isinstance(out, tuple) else (out, token_mask)

    def forward(
        self,
        x: Tensor,
        t: Tensor | int,
        tokens: Tensor,
        token_mask: Tensor,
        drop_cond: Tensor | None = None,
    ) -> Tensor:
        """Predict from noisy images ``x`` at steps ``t`` given captions as token ids; the rows
        of ``drop_cond`` get the null caption (classifier-free guidance training)."""
        context, mask = self.encode(tokens, token_mask)
        return self.unet(x, t, context=context, context_mask=mask, drop_cond=drop_cond)


class DiffusionBatchSource:
    """Training examples for :class:`DiffusionModel`: images with their caption tokens, plus the
    timestep, noise and condition-dropout mask of every row, all a function of ``(seed, step)``.

    ``pixels`` is uint8 (N, C, H, W) (a quarter of the memory of floats), or float latents of
    an autoencoder (latent diffusion), used as they are. A batch is what
    :class:`~genlab.methods.diffusion.loss.DiffusionLoss` reads: ``sample`` (float images in
    [-1, 1]), ``noise``, ``t``, and the model's conditions by their argument names, ``tokens``,
    ``token_mask`` and ``drop_cond``.
    """

    def __init__(
        self,
        pixels: Tensor,
        tokens: Tensor,
        token_mask: Tensor,
        num_train_timesteps: int,
        cond_drop: float = 0.1,
        seed: int = 0,
    ) -> None:
        if pixels.dtype not in (torch.uint8, torch.float32) or pixels.ndim != 4:
            raise GenlabError(
                f"pixels must be uint8 or float32 latents (N, C, H, W), got {pixels.dtype} "
                f"{pixels.ndim}-d"
            )
        if not 0.0 <= cond_drop <= 1.0:
            raise GenlabError(f"condition dropout must lie in [0, 1], got {cond_drop}")
        self.rows = TensorBatchSource((pixels, tokens, token_mask), seed=seed)
        self.num_train_timesteps = num_train_timesteps
        self.cond_drop = cond_drop
        self.seed = seed
        self.image_shape = tuple(pixels.shape[1:])

    def get_batch(self, step: int, start: int, stop: int, batch_size: int) -> dict[str, Tensor]:
        pixels, tokens, mask = self.rows.get_batch(step, start, stop, batch_size)
        # the whole global batch's draws, then this slice: independent of how rows are split
        seed = int(np.random.SeedSequence([self.seed, step]).generate_state(1)[0])
        g = torch.Generator().manual_seed(seed)
        t = torch.randint(0, self.num_train_timesteps, (batch_size,), generator=g)
        drop = condition_dropout(batch_size, self.cond_drop, generator=g)
        noise = torch.randn((batch_size, *self.image_shape), generator=g)
        return {
            "sample": from_uint8(pixels) if pixels.dtype == torch.uint8 else pixels,
            "noise": noise[start:stop],
            "t": t[start:stop],
            "tokens": tokens,
            "token_mask": mask,
            "drop_cond": drop[start:stop],
        }


@torch.no_grad()
def generate(
    model: DiffusionModel,
    tokens: Tensor,
    token_mask: Tensor,
    scheduler: DDPMScheduler | DDIMScheduler,
    guidance: float = 1.0,
    generator: torch.Generator | None = None,
    precision: str = "fp32",
) -> Tensor:
    """Images (B, C, H, W) in [-1, 1] for the captions ``tokens`` by the reverse process (over
    the autoencoder's latents, decoded at the end, for a latent diffusion model).

    The caption is encoded once; each step runs the conditional and unconditional predictions
    as one batch (``guidance`` s: 1 is the plain conditional model, 0 the unconditional one).
    All randomness is drawn from ``generator`` (on the CPU if it is a CPU generator), so a seed
    fixes the images on any device for a given batch.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        tokens, token_mask = tokens.to(device), token_mask.to(device)
        shape = (tokens.shape[0], *model.config.sample_shape)
        gen_device = generator.device if generator is not None else device
        noise = torch.randn(shape, generator=generator, device=gen_device).to(device)
        with autocast(device, precision):
            context, mask = model.encode(tokens, token_mask)
            cond = {"context": context, "context_mask": mask}

            def model_fn(x: Tensor, t: Tensor) -> Tensor:
                return guided_model_output(model.unet, x, t, cond, guidance).float()

            images = sample_loop(model_fn, scheduler, noise, generator=generator)
            if model.latent is not None:
                images = model.latent.decode(images).float()
    finally:
        model.train(was_training)
    return images.clamp(-1, 1)


def generate_captions(
    model: DiffusionModel,
    tokenizer: CaptionTokenizer,
    captions: Sequence[str],
    scheduler: DDPMScheduler | DDIMScheduler,
    guidance: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
    precision: str = "fp32",
) -> Tensor:
    """One image per caption, in batches of ``batch_size`` drawn in turn from one generator
    seeded with ``seed`` (the same seed and batch size give the same images)."""
    if not captions:
        raise GenlabError("no captions to generate images for")
    generator = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, len(captions), batch_size):
        tokens, mask = tokenizer.encode(captions[start : start + batch_size])
        out.append(generate(model, tokens, mask, scheduler, guidance, generator, precision).cpu())
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------
# Run folders: what the sampler, the metrics and the server open

KIND = "diffusion"
ADAPTER_KIND = "adapter"  # genlab.adapt's kind, which may wrap a diffusion model (registered there)
CAPTION_TOKENIZER_FILE = "caption_tokenizer.json"


def _read_caption_tokenizer(path: Path) -> CaptionTokenizer:
    return CaptionTokenizer.from_json(path.read_text())


def _check_vocabulary(loaded: Loaded) -> None:
    tokenizer, config = loaded.files["tokenizer"], loaded.config
    if tokenizer.vocab_size != config.text.vocab_size:
        raise GenlabError(
            f"{loaded.path}: the caption tokenizer has {tokenizer.vocab_size} words but the "
            f"model {config.text.vocab_size}"
        )
    if config.caption_vocab and tuple(tokenizer.vocab) != config.caption_vocab:
        raise GenlabError(
            f"{loaded.path}: the caption tokenizer's words are not those the text encoder reads"
        )


CAPTIONS = ExtraFile(
    CAPTION_TOKENIZER_FILE, "tokenizer", _read_caption_tokenizer, "it is needed to read captions"
)
register(Kind(KIND, DiffusionConfig, DiffusionModel, (CAPTIONS,), _check_vocabulary))


def load_diffusion(
    folder: str | os.PathLike, use_ema: bool = True, device: str | torch.device = "cpu"
) -> tuple[DiffusionModel, CaptionTokenizer]:
    """Open a diffusion run folder, or an adapter run on one (the base with its LoRA), in eval
    mode: its config, caption tokenizer and weights (the EMA weights ``ema.safetensors`` by
    default, the raw ``model.safetensors`` otherwise)."""
    loaded = load(folder, (KIND, ADAPTER_KIND), device, EMA_FILE if use_ema else MODEL_FILE)
    model = loaded.model.get_submodule(kind(loaded.kind).generator or "")
    if not isinstance(model, DiffusionModel):
        raise GenlabError(f"{folder} is an adapter of a text model, not of a diffusion model")
    return model, loaded.files["tokenizer"]
