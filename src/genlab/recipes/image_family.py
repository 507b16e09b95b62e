"""Train any image family on genlab's images: VAE, VQ-VAE, flow, GAN, image GPT, MaskGIT.

The lecture's ways to generate an image, behind the diffusion recipe's interface
(``genlab image train --method ...``): the same data (``DataSpec``), captions, run folder,
weight average (EMA), sample grids while training, resume and time budget. Each family's
network and loss live in ``genlab.methods``; this module only builds them from the settings
(``FamilySettings``) and hands them to the shared trainer (a GAN as two phases with two
optimizers).

Image GPT and MaskGIT model discrete tokens, not pixels: their images are first turned into a
grid of codes by an image tokenizer, either iGPT's colour palette (Chen et al., 2020: k-means
colours, one token per pixel of a downsampled grid) or a trained VQ-VAE run (van den Oord et
al., 2017; MaskGIT's setting). The tokenizer is copied into ``RUN/tokenizer/`` so the run
samples on its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from genlab.core.batches import TensorBatchSource
from genlab.core.callbacks import Callback
from genlab.core.checkpoint import read_model_config
from genlab.core.distributed import dist_info
from genlab.core.ema import EMACallback
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes, read_json
from genlab.core.phases import OptimizerGroup, Phase, StepFn
from genlab.core.registry import load, save
from genlab.core.rng import seed_everything
from genlab.core.train_config import TrainConfig
from genlab.core.trainer import Trainer
from genlab.data.captions import CaptionTokenizer
from genlab.data.images import from_uint8, save_grid
from genlab.data.images.palette import PixelPalette
from genlab.methods.autoregressive import image_gpt
from genlab.methods.diffusion.guidance import condition_dropout
from genlab.methods.flow import flow
from genlab.methods.gan import gan
from genlab.methods.masked import maskgit
from genlab.methods.vae import vae, vq
from genlab.recipes.diffusion import (
    RECIPE_FILE,
    SAMPLES_DIR,
    DataSpec,
    ImageTrainConfig,
    grid_prompts,
    load_images,
    time_budget,
)
from genlab.recipes.image_settings import FamilySettings

FAMILIES = ("vae", "vq", "flow", "gan", "igpt", "maskgit")
TOKEN_FAMILIES = ("igpt", "maskgit")
CAPTIONS_FILE = "caption_tokenizer.json"
TOKENIZER_DIR = "tokenizer"  # a token model's image tokenizer, inside its run
PALETTE_FILE = "palette.json"


class ImageTokenizer(Protocol):
    """Images to a grid of codes and back: iGPT's palette or a VQ-VAE."""

    num_codes: int
    grid: tuple[int, int]

    def encode(self, images: Tensor) -> Tensor: ...

    def decode(self, codes: Tensor) -> Tensor: ...


class VQTokenizer:
    """A trained VQ-VAE as an image tokenizer (its final weights: a codec, not a sampler)."""

    def __init__(self, model: vq.VQVAE, batch_size: int = 256) -> None:
        self.model, self.batch_size = model.eval(), batch_size
        self.num_codes = model.config.num_codes
        self.grid = tuple(model.grid)

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        return torch.cat([vq.encode(self.model, b) for b in images.split(self.batch_size)])

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        return torch.cat([vq.decode(self.model, c) for c in codes.split(self.batch_size)])


class PaletteTokenizer:
    """iGPT's palette, decoding to the run's image size."""

    def __init__(self, palette: PixelPalette, size: int) -> None:
        self.palette, self.size = palette, size
        self.num_codes, self.grid = palette.num_codes, (palette.grid, palette.grid)

    def encode(self, images: Tensor) -> Tensor:
        return self.palette.encode(images)

    def decode(self, codes: Tensor) -> Tensor:
        return self.palette.decode(codes, self.size)


def open_tokenizer(folder: str | os.PathLike, size: int) -> ImageTokenizer:
    """The image tokenizer saved in ``folder`` (a run's ``tokenizer/``, or a VQ run)."""
    folder = Path(folder)
    if (folder / PALETTE_FILE).is_file():
        return PaletteTokenizer(PixelPalette.from_json((folder / PALETTE_FILE).read_text()), size)
    return VQTokenizer(load(folder, vq.KIND).model)  # type: ignore[arg-type]


def build_tokenizer(
    settings: FamilySettings, pixels: Tensor, size: int, seed: int
) -> ImageTokenizer:
    """Fit the palette on the training images, or open the VQ run ``settings.tokenizer``."""
    if settings.tokenizer == "palette":
        palette = PixelPalette.fit(
            from_uint8(pixels), settings.palette_colors, settings.palette_grid, seed
        )
        return PaletteTokenizer(palette, size)
    loaded = load(settings.tokenizer, vq.KIND)
    if loaded.config.image_size != size:
        raise GenlabError(
            f"the VQ run {settings.tokenizer} codes {loaded.config.image_size}-pixel images, "
            f"these are {size}: train the tokenizer on the same --size"
        )
    return VQTokenizer(loaded.model)  # type: ignore[arg-type]


def save_tokenizer(tokens: ImageTokenizer, folder: Path) -> None:
    """Write the tokenizer into ``folder`` (a run's ``tokenizer/``): the run then samples alone."""
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(tokens, PaletteTokenizer):
        atomic_write_bytes(folder / PALETTE_FILE, tokens.palette.to_json().encode())
    else:
        assert isinstance(tokens, VQTokenizer)
        save(folder, tokens.model, vq.KIND, tokens.model.config)


class CaptionedSource:
    """Rows of images (uint8, given as floats in [-1, 1]) or token grids with their caption ids;
    a ``cond_drop`` share of the captions is blanked (all padding: "no caption") for
    classifier-free guidance. Everything is a function of ``(seed, step)``."""

    def __init__(self, data: Tensor, captions: Tensor, cond_drop: float, seed: int) -> None:
        self.rows = TensorBatchSource((data, captions), seed=seed)
        self.cond_drop, self.seed = cond_drop, seed
        self.pixels = data.dtype == torch.uint8

    def get_batch(self, step: int, start: int, stop: int, batch_size: int) -> tuple[Tensor, Tensor]:
        data, captions = self.rows.get_batch(step, start, stop, batch_size)
        seed = int(np.random.SeedSequence([self.seed, step]).generate_state(1)[0])
        drop = condition_dropout(batch_size, self.cond_drop, torch.Generator().manual_seed(seed))
        captions = captions.masked_fill(drop[start:stop, None], 0)
        return (from_uint8(data) if self.pixels else data), captions


@dataclass
class Built:
    """What the trainer needs of one family: the model, its config, the step function (or
    phases) and optimizer groups, and the kind its folder is saved as."""

    kind: str
    config: Any
    model: nn.Module
    step: StepFn | list[Phase]
    optimizers: dict[str, OptimizerGroup] | None = None
    evaluates: bool = True  # False: no held-out loss (a GAN's has no meaning)


def build_family(
    cfg: ImageTrainConfig, channels: int, cond_vocab: int, cond_length: int, tokens: Any
) -> Built:
    """The network and loss of ``cfg.model`` (``tokens``: the image tokenizer of a token
    model)."""
    s, net = cfg.family, cfg.family.net
    common = {"image_channels": channels, "image_size": cfg.data.size, "cond_vocab": cond_vocab}
    if cfg.model in ("vae", "vq"):
        levels = _levels(s.downsample)
        auto = {
            "base_channels": s.width,
            "channel_mults": levels,
            "latent_channels": s.latent_channels,
        }
        if cfg.model == "vae":
            reads = common if s.captions else {**common, "cond_vocab": 0}
            config = vae.VAEConfig(**{**reads, **auto, **net})
            return Built(vae.KIND, config, vae.VAE(config), vae.VAELoss(s.kl_weight, s.free_bits))
        unconditional = {**common, "cond_vocab": 0}  # a tokenizer codes images, not captions
        config = vq.VQConfig(**{**unconditional, **auto, "num_codes": s.num_codes, **net})
        return Built(vq.KIND, config, vq.VQVAE(config), vq.VQLoss(s.commitment))
    if cfg.model == "flow":
        config = flow.FlowConfig(
            **{**common, "hidden_channels": s.width * 2, "steps_per_scale": s.depth, **net}
        )
        return Built(flow.KIND, config, flow.Glow(config), flow.FlowLoss())
    if cfg.model == "gan":
        shape = {"base_channels": s.width, "z_dim": s.z_dim, "output": s.gan_output}
        config = gan.GANConfig(**{**common, **shape, **net})
        phases, optimizers = gan.gan_phases(s.gan_loss, s.r1_gamma, instance_noise=s.instance_noise)
        return Built(gan.KIND, config, gan.GAN(config), phases, optimizers, evaluates=False)
    shape = {
        "num_codes": tokens.num_codes,
        "grid": tuple(tokens.grid),
        "cond_vocab": cond_vocab,
        "cond_length": cond_length if cond_vocab else 0,
        "n_embd": s.width * 2,
        "n_layer": s.depth,
    }
    if cfg.model == "igpt":
        config = image_gpt.ImageGPTConfig(**{**shape, **net})
        return Built(image_gpt.KIND, config, image_gpt.ImageGPT(config), image_gpt.ImageGPTLoss())
    config = maskgit.MaskGITConfig(**{**shape, **net})
    return Built(maskgit.KIND, config, maskgit.MaskGIT(config), maskgit.MaskGITLoss())


def _levels(downsample: int) -> tuple[int, ...]:
    """Channel multipliers of an autoencoder that divides the side by ``downsample``."""
    if downsample < 1 or downsample & (downsample - 1):
        raise GenlabError(f"--downsample must be a power of 2, got {downsample}")
    return (1, *[2] * (downsample.bit_length() - 1))


Sampler = Callable[[nn.Module, Tensor, int], Tensor]


class FamilyGrid(Callback):
    """At each evaluation, draw two samples of each grid prompt from the weight average into
    ``folder/step_NNNNNN.png``: the run's progress, seen."""

    def __init__(self, ema: EMACallback, draw: Sampler, captions: Tensor, folder: Path) -> None:
        self.ema, self.draw, self.captions, self.folder = ema, draw, captions, folder

    def on_evaluate(self, trainer: Trainer) -> dict[str, float]:
        if dist_info().is_main and self.ema.ema is not None:
            with self.ema.ema.applied(trainer.model):
                trainer.model.eval()
                images = self.draw(trainer.model, self.captions.repeat(2, 1), 0)
                trainer.model.train()
            save_grid(
                images, self.folder / f"step_{trainer.step:06d}.png", len(self.captions), scale=4
            )
        return {}


def recipe_record(cfg: ImageTrainConfig) -> dict[str, Any]:
    """What ``RUN/recipe.json`` keeps of a family run: the method, data, settings."""
    return {
        "model": cfg.model,
        "data": cfg.data.to_dict(),
        "family": vars(cfg.family),
        "cond_drop": cfg.cond_drop,
        "ema_decay": cfg.ema_decay,
        "time_budget": cfg.time_budget,
    }


def family_config(run: str | os.PathLike) -> ImageTrainConfig:
    """The configuration a family run was trained with."""
    run = Path(run)
    recipe = dict(read_json(run / RECIPE_FILE, what="recipe settings"))
    meta = read_model_config(run)
    return ImageTrainConfig(
        out=str(run),
        model=recipe["model"],
        data=DataSpec(**recipe["data"]),
        family=FamilySettings(**recipe["family"]),
        cond_drop=recipe["cond_drop"],
        ema_decay=recipe["ema_decay"],
        time_budget=recipe["time_budget"],
        train=TrainConfig.from_dict(meta["train"]),
    )


def train_family(
    cfg: ImageTrainConfig, resume: bool = False, until: int | None = None
) -> dict[str, float]:
    """Train ``cfg.model`` (one of ``FAMILIES``) into ``cfg.out``; return the final metrics."""
    if cfg.model not in FAMILIES:
        raise GenlabError(
            f"unknown image method '{cfg.model}'; choose diffusion or one of {', '.join(FAMILIES)}"
        )
    if cfg.init_from is not None or cfg.adapter.config(()) is not None:
        raise GenlabError("--init-from and --adapter are for diffusion runs only")
    out = Path(cfg.out)
    resuming = resume and (out / RECIPE_FILE).is_file()
    if resuming:  # the run keeps its own method, data and settings; training settings may change
        cfg = replace(family_config(out), out=cfg.out, train=cfg.train)
    pixels, captions = load_images(cfg.data)
    if resuming:
        caption_tokens = CaptionTokenizer.from_json((out / CAPTIONS_FILE).read_text())
    else:
        caption_tokens = CaptionTokenizer.from_captions(captions)
    ids, _ = caption_tokens.encode(captions)
    tokens: ImageTokenizer | None = None
    data = pixels
    if cfg.model in TOKEN_FAMILIES:
        if resuming:
            tokens = open_tokenizer(out / TOKENIZER_DIR, cfg.data.size)
        else:
            tokens = build_tokenizer(cfg.family, pixels, cfg.data.size, cfg.train.seed)
        data = tokens.encode(from_uint8(pixels))
    seed_everything(cfg.train.seed)
    built = build_family(
        cfg, pixels.shape[1], caption_tokens.vocab_size, caption_tokens.max_length, tokens
    )
    source = CaptionedSource(data, ids, cfg.cond_drop, cfg.train.seed)
    eval_source = None
    if built.evaluates and cfg.data.data in ("shapes", "digits"):
        eval_pixels, eval_captions = load_images(cfg.data, "eval")
        eval_data = eval_pixels if tokens is None else tokens.encode(from_uint8(eval_pixels))
        eval_ids, _ = caption_tokens.encode(eval_captions)
        eval_source = CaptionedSource(eval_data, eval_ids, 0.0, cfg.train.seed + 1)
    prompts, _ = caption_tokens.encode(grid_prompts(cfg.data, caption_tokens))
    ema = EMACallback(decay=cfg.ema_decay)
    draw = grid_sampler(cfg.model, tokens, from_uint8(pixels[: 2 * len(prompts)]))
    grid = FamilyGrid(ema, draw, prompts, out / SAMPLES_DIR)
    trainer = Trainer(
        built.model,
        built.step,
        source,
        cfg.train,
        out,
        eval_data=eval_source,
        model_kind=built.kind,
        model_config=built.config.to_dict(),
        extra_files={
            CAPTIONS_FILE: caption_tokens.to_json().encode(),
            RECIPE_FILE: json.dumps(recipe_record(cfg), indent=2).encode(),
        },
        optimizers=built.optimizers,
        callbacks=[ema, grid, *time_budget(cfg)],
        resume=resume,
    )
    if tokens is not None and not resuming:
        save_tokenizer(tokens, out / TOKENIZER_DIR)
    metrics = trainer.fit(until=until)
    metrics["params"] = float(sum(p.numel() for p in built.model.parameters()))
    return metrics


def grid_sampler(method: str, tokens: ImageTokenizer | None, images: Tensor) -> Sampler:
    """How the training grids draw images of ``method`` (defaults of ``genlab image sample``);
    a VQ-VAE, which does not sample, shows ``images`` (a row) over their reconstructions."""

    def draw(model: nn.Module, captions: Tensor, seed: int) -> Tensor:
        if method == "vq":
            real = images[: len(captions) // 2]
            return torch.cat([real, vq.decode(model, vq.encode(model, real)).clamp(-1, 1)])
        g = torch.Generator().manual_seed(seed)
        return sample_images(method, model, tokens, captions, g)

    return draw


@torch.no_grad()
def sample_images(
    method: str,
    model: nn.Module,
    tokens: ImageTokenizer | None,
    captions: Tensor,
    generator: torch.Generator,
    steps: int = 8,
    guidance: float = 0.0,
    temperature: float | None = None,
) -> Tensor:
    """One image in [-1, 1] per caption row of ``captions`` from a family model (a token
    model's codes decoded by ``tokens``); ``steps`` is MaskGIT's, ``guidance`` the token
    models' classifier-free guidance, ``temperature`` each family's own default if None."""
    n = len(captions)
    extra = {} if temperature is None else {"temperature": temperature}
    if method == "vae":
        return vae.sample(model, n, captions, generator, **extra)
    if method == "flow":
        return flow.sample(model, n, captions, generator, **extra)
    if method == "gan":
        return gan.sample(model, n, captions, generator)
    if method == "vq":
        raise GenlabError(
            "a VQ-VAE is a tokenizer, not a sampler: sample its codes with igpt or maskgit"
        )
    assert tokens is not None
    if method == "igpt":
        codes = image_gpt.sample(model, n, captions, generator, guidance=guidance, **extra)
    else:
        codes = maskgit.decode(
            model, n, captions, generator, steps=steps, guidance=guidance, **extra
        )
    return tokens.decode(codes).clamp(-1, 1)
