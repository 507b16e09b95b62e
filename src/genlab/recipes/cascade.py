"""Cascaded text-to-image runs: train a diffusion upsampler, sample a base run through it.

``genlab image train --method upsampler --size 32 --low-res 16`` trains
:class:`~genlab.methods.diffusion.upsampler.Upsampler` on the run's images at ``--size`` and
their area-downsampled copies at ``--low-res``, with the diffusion recipe's data, caption
vocabulary, network settings (preset, UNet options, caption encoder, prediction, schedule,
Min-SNR weighting, caption dropout), weight average, time budget and ``--resume``. Its grids in
``RUN/samples/`` show held-out images three times per column: the low-res input (enlarged by
repeating pixels), the upsampler's sample (``--grid-sampler-steps`` DDIM steps, at the
upsampler's default guidance 1, the plain conditional model: ``--grid-guidance`` is a base
model's), the original.

``genlab image sample UPSAMPLER_RUN --base BASE_RUN --prompt ...`` draws the cascade (Ho et
al., 2021; Imagen): the base run (a diffusion run trained at ``--size`` = the upsampler's
``--low-res``) draws the small image, the upsampler enlarges it. Without ``--base`` it enlarges
held-out real images instead, which shows the upsampler alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from genlab.core.callbacks import Callback
from genlab.core.checkpoint import read_model_config
from genlab.core.distributed import dist_info
from genlab.core.ema import EMACallback
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes, read_json
from genlab.core.rng import seed_everything
from genlab.core.train_config import TrainConfig
from genlab.core.trainer import Trainer
from genlab.data.captions import CaptionTokenizer
from genlab.data.images import from_uint8, save_grid
from genlab.methods.diffusion.cascade import (
    DEFAULT_AUG_LEVEL,
    DEFAULT_UP_GUIDANCE,
    generate_cascade,
)
from genlab.methods.diffusion.loss import DiffusionLoss
from genlab.methods.diffusion.text_conditioned import CAPTION_TOKENIZER_FILE, load_diffusion
from genlab.methods.diffusion.upsampler import (
    KIND,
    Upsampler,
    UpsamplerBatchSource,
    UpsamplerConfig,
    downsample,
    load_upsampler,
    resize_up,
    upsample,
)
from genlab.recipes.diffusion import (
    RECIPE_FILE,
    SAMPLES_DIR,
    DataSpec,
    ImageTrainConfig,
    build_model_config,
    held_out_captions,
    load_images,
    read_data_spec,
    recipe_record,
    time_budget,
)
from genlab.recipes.diffusion_eval import _scheduler

UPSAMPLER = "upsampler"  # the method's name (--method upsampler)
GRID_IMAGES = 8  # columns of the training grids


@dataclass
class UpsamplerSettings:
    """What an upsampler run adds to the image recipe's settings."""

    low_res: int | None = None  # side of the image it enlarges; None: half of --size
    aug_max: float = 0.5  # training corrupts the low-res image at noise levels in [0, this]

    @classmethod
    def given(cls, **options: Any) -> UpsamplerSettings:
        """The settings with each option that is not None (the command line's) replaced."""
        return cls(**{k: v for k, v in options.items() if v is not None})


def build_upsampler_config(
    cfg: ImageTrainConfig, settings: UpsamplerSettings, tokenizer: CaptionTokenizer, channels: int
) -> UpsamplerConfig:
    """The diffusion recipe's model for ``cfg`` with the UNet reading the low-res image too."""
    base = build_model_config(cfg, tokenizer, channels)
    same = {f.name: getattr(base, f.name) for f in fields(base)}
    low_res = settings.low_res or cfg.data.size // 2
    return UpsamplerConfig(
        **{**same, "unet": replace(base.unet, cond_channels=channels)},
        low_res=low_res,
        aug_max=settings.aug_max,
    )


def is_upsampler_run(run: str | os.PathLike) -> bool:
    """Whether ``run`` holds an upsampler (``config.json`` of kind ``upsampler``)."""
    try:
        return read_model_config(run)["kind"] == KIND
    except GenlabError:
        return False


def upsampler_config_from_run(run: str | os.PathLike) -> tuple[ImageTrainConfig, UpsamplerSettings]:
    """The settings an upsampler run was trained with (to resume it)."""
    run = Path(run)
    meta = read_model_config(run, KIND)
    recipe = dict(read_json(run / RECIPE_FILE, what="recipe settings"))
    settings = UpsamplerSettings(**recipe.pop(UPSAMPLER))
    data = DataSpec(**recipe.pop("data"))
    train = TrainConfig.from_dict(meta["train"])
    return ImageTrainConfig(out=str(run), data=data, train=train, **recipe), settings


def held_out_images(spec: DataSpec) -> tuple[torch.Tensor, list[str]]:
    """uint8 pixels and captions of ``spec``'s held-out images (its training images for a
    folder, which has none held out)."""
    try:
        return load_images(spec, "eval")
    except GenlabError:
        return load_images(spec, "train")


def comparison(low: torch.Tensor, images: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Three rows of a grid: the low-res images enlarged by repeating pixels, the upsampled
    ones and the originals."""
    return torch.cat([resize_up(low, images.shape[-1], "nearest"), images, real])


class UpsampleGrid(Callback):
    """At each evaluation, upsample the grid's low-res images with the weight average into
    ``folder/step_NNNNNN.png`` (rank 0): low-res input, sample and original, one per column."""

    def __init__(
        self,
        ema: EMACallback,
        model: Upsampler,
        tokenizer: CaptionTokenizer,
        real: torch.Tensor,
        captions: list[str],
        folder: Path,
        cfg: ImageTrainConfig,
    ) -> None:
        self.ema, self.model, self.tokenizer, self.folder, self.cfg = (
            ema,
            model,
            tokenizer,
            folder,
            cfg,
        )
        self.real, self.captions = real, captions
        self.low = downsample(real, model.config.low_res)

    def on_evaluate(self, trainer: Trainer) -> dict[str, float]:
        if dist_info().is_main and self.ema.ema is not None:
            with self.ema.ema.applied(trainer.model):
                scheduler = self.model.scheduler("ddim")
                scheduler.set_timesteps(self.cfg.grid_sampler_steps)
                images = upsample(
                    self.model,
                    self.tokenizer,
                    self.low,
                    self.captions,
                    scheduler,
                    DEFAULT_UP_GUIDANCE,
                )
            save_grid(
                comparison(self.low, images, self.real),
                self.folder / f"step_{trainer.step:06d}.png",
                nrow=len(self.captions),
                scale=4,
            )
            text = "\n".join(self.captions).encode() + b"\n"
            atomic_write_bytes(self.folder / "prompts.txt", text)
        return {}


def train_upsampler(
    cfg: ImageTrainConfig,
    settings: UpsamplerSettings | None = None,
    resume: bool = False,
    until: int | None = None,
) -> dict[str, float]:
    """Train an upsampler into ``cfg.out`` on ``cfg.data`` at ``cfg.data.size`` from
    ``settings.low_res``; return the final metrics. ``until`` stops after that step with a
    checkpoint (``resume`` continues, with the run's own model and data settings)."""
    if cfg.model != UPSAMPLER:
        raise GenlabError(f"--low-res and --aug-max are for --method upsampler, not {cfg.model}")
    if cfg.init_from is not None or cfg.adapter.config(()) is not None:
        raise GenlabError("--init-from and --adapter are for diffusion runs only")
    if cfg.latent_vae is not None:
        raise GenlabError("an upsampler denoises pixels: drop --latent-vae")
    settings = settings or UpsamplerSettings()
    out = Path(cfg.out)
    resuming = resume and (out / RECIPE_FILE).is_file()
    if resuming:  # the run keeps its own model, data and vocabulary; only training settings change
        run_cfg, settings = upsampler_config_from_run(out)
        cfg = replace(run_cfg, out=cfg.out, train=cfg.train)
    pixels, captions = load_images(cfg.data)
    if resuming:
        model_config = UpsamplerConfig.from_dict(read_model_config(out, KIND)["config"])
        tokenizer = CaptionTokenizer.from_json((out / CAPTION_TOKENIZER_FILE).read_text())
    else:
        tokenizer = CaptionTokenizer.from_captions(captions)
        model_config = build_upsampler_config(cfg, settings, tokenizer, pixels.shape[1])
    settings = replace(settings, low_res=model_config.low_res)
    tokens, mask = tokenizer.encode(captions)
    seed_everything(cfg.train.seed)
    model = Upsampler(model_config)
    seed = cfg.train.seed
    train_data = UpsamplerBatchSource(pixels, tokens, mask, model_config, cfg.cond_drop, seed)
    eval_data = None
    grid_pixels, grid_captions = pixels, captions  # a folder's: it has no held-out images
    if cfg.data.data in ("shapes", "digits"):
        grid_pixels, grid_captions = load_images(cfg.data, "eval")
        eval_tokens, eval_mask = tokenizer.encode(grid_captions)
        eval_data = UpsamplerBatchSource(
            grid_pixels, eval_tokens, eval_mask, model_config, cfg.cond_drop, seed + 1
        )
    real, grid_captions = from_uint8(grid_pixels[:GRID_IMAGES]), grid_captions[:GRID_IMAGES]
    ema = EMACallback(decay=cfg.ema_decay)
    grid = UpsampleGrid(ema, model, tokenizer, real, grid_captions, out / SAMPLES_DIR, cfg)
    record = {**recipe_record(cfg), UPSAMPLER: asdict(settings)}
    trainer = Trainer(
        model,
        DiffusionLoss(model.noise_schedule(), cfg.snr_gamma, cfg.snr_floor),
        train_data,
        cfg.train,
        out,
        eval_data=eval_data,
        model_kind=KIND,
        model_config=model_config.to_dict(),
        extra_files={
            CAPTION_TOKENIZER_FILE: tokenizer.to_json().encode(),
            RECIPE_FILE: json.dumps(record, indent=2).encode(),
        },
        callbacks=[ema, grid, *time_budget(cfg)],
        resume=resume,
    )
    metrics = trainer.fit(until=until)
    metrics["params"] = float(model.num_params())
    return metrics


def _check_prompts(prompts: list[str], tokenizer: CaptionTokenizer, run: str | os.PathLike) -> None:
    for p in prompts:
        unknown = tokenizer.unknown_words(p)
        if unknown:
            raise GenlabError(
                f"the prompt '{p}' uses words {run} never saw ({', '.join(unknown)}); it knows: "
                f"{', '.join(tokenizer.vocab[3:])}"
            )


def sample_cascade(
    run: str | os.PathLike,
    out: str | os.PathLike,
    base: str | os.PathLike | None = None,
    prompts: list[str] | None = None,
    n: int = 16,
    sampler: str = "ddim",
    steps: int | None = None,
    eta: float = 0.0,
    guidance: float = 3.0,
    up_guidance: float = DEFAULT_UP_GUIDANCE,
    aug_level: float | None = None,
    seed: int = 0,
    use_ema: bool = True,
    precision: str = "fp32",
    device: str = "cpu",
    batch_size: int = 64,
) -> tuple[torch.Tensor, list[str]]:
    """Write a grid of the upsampler run ``run``'s samples to ``out`` and its low-res inputs
    (enlarged by repeating pixels) beside it as ``<out>_low.png``; return the images and the
    caption of each.

    With ``base`` (a diffusion run at the upsampler's low-res size): the cascade, ``n`` images
    per prompt (or ``n`` held-out captions of the base run's data), the base guided by
    ``guidance``, its samples corrupted at ``aug_level`` (default ``DEFAULT_AUG_LEVEL``).
    Without: ``n`` held-out real images downsampled and enlarged again (``aug_level`` default
    0). Both stages sample with ``sampler`` and ``steps``; the upsampler is guided by
    ``up_guidance``."""
    if n < 1:
        raise GenlabError(f"--n must be at least 1, got {n}")
    if not is_upsampler_run(run):
        raise GenlabError(f"--base is for an upsampler run (--method upsampler); {run} is not one")
    upsampler, up_tokenizer = load_upsampler(run, use_ema=use_ema, device=device)
    up_scheduler = _scheduler(upsampler, sampler, steps, eta)
    if base is None:
        if prompts:
            raise GenlabError(
                "an upsampler alone enlarges held-out images; to draw prompts, give the base "
                "run that draws the small images: --base BASE_RUN"
            )
        level = 0.0 if aug_level is None else aug_level
        pixels, captions = held_out_images(read_data_spec(run))
        order = torch.randperm(len(pixels), generator=torch.Generator().manual_seed(seed))[:n]
        real = from_uint8(pixels[order])
        captions = [captions[int(i)] for i in order]
        low = downsample(real, upsampler.config.low_res)
        images = upsample(
            upsampler,
            up_tokenizer,
            low,
            captions,
            up_scheduler,
            up_guidance,
            seed,
            level,
            batch_size,
            precision,
        )
    else:
        base_model, base_tokenizer = load_diffusion(base, use_ema=use_ema, device=device)
        if prompts:
            for tokenizer, source in ((base_tokenizer, base), (up_tokenizer, run)):
                _check_prompts(prompts, tokenizer, source)
            captions = [p for p in prompts for _ in range(n)]
        else:
            pool = held_out_captions(read_data_spec(base))
            order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))
            captions = [pool[int(i)] for i in order[:n]]
        images, low = generate_cascade(
            base_model,
            base_tokenizer,
            upsampler,
            up_tokenizer,
            captions,
            _scheduler(base_model, sampler, steps, eta),
            up_scheduler,
            guidance,
            up_guidance,
            DEFAULT_AUG_LEVEL if aug_level is None else aug_level,
            seed,
            batch_size,
            precision,
        )
    out = Path(out)
    nrow = min(n, 8)
    save_grid(images, out, nrow=nrow, scale=4)
    enlarged = resize_up(low, images.shape[-1], "nearest")
    save_grid(enlarged, out.with_name(f"{out.stem}_low{out.suffix or '.png'}"), nrow, scale=4)
    return images, captions
