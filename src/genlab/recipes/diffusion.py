"""Text-to-image diffusion on genlab's built-in images: train a caption-conditioned DDPM.

The recipe wires the text-conditioned model (``genlab.methods.diffusion.text_conditioned``) to
the shared trainer: it loads the images (captioned shapes, scikit-learn's digits or a folder),
builds the caption vocabulary and trains on the DDPM objective (Ho et al., 2020) with 10% of the
captions dropped for classifier-free guidance (Ho & Salimans, 2022). The weights are averaged as
training goes (DDPM samples from that average, ``genlab.core.ema``), and every ``eval_every``
steps the average draws a grid of fixed prompts into ``RUN/samples/``, so the run can be watched
learning. Sampling and measuring a finished run: ``genlab.recipes.diffusion_eval``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
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
from genlab.data.images import (
    DigitsDataset,
    ImageFolderDataset,
    ShapesConfig,
    ShapesDataset,
    save_grid,
    to_uint8,
)
from genlab.methods.diffusion.loss import DiffusionLoss
from genlab.methods.diffusion.text_conditioned import (
    CAPTION_TOKENIZER_FILE,
    KIND,
    DiffusionBatchSource,
    DiffusionConfig,
    DiffusionModel,
    generate_captions,
)
from genlab.nets.text_encoder import TextEncoderConfig
from genlab.nets.unet import UNetConfig

RECIPE_FILE = "recipe.json"  # the recipe settings besides the trainer's (data, sizes, CFG)
SAMPLES_DIR = "samples"
IMAGE_MODELS = ("ddpm",)
GRID_PROMPTS = 8  # columns of the training grids, each prompt drawn twice (two rows)
EVAL_IMAGES = 512


@dataclass
class DataSpec:
    """Which images a run trains on; saved in ``RUN/recipe.json`` so samplers and metrics know."""

    data: str = "shapes"  # "shapes", "digits" or a folder of images
    size: int = 32  # image side in pixels
    n_images: int = 20_000  # shapes only (digits has 1,437 training images, a folder its own)
    two_shape_fraction: float = 0.0  # shapes only: share of two-shape scenes and captions
    seed: int = 0  # shapes only: the scenes drawn

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def shapes(self, n: int, seed: int) -> tuple[torch.Tensor, list[str]]:
        """uint8 pixels (n, C, H, W) and captions of ``n`` scenes of this run's shapes
        distribution, drawn with ``seed``."""
        config = ShapesConfig(two_shape_fraction=self.two_shape_fraction)
        ds = ShapesDataset(n, self.size, seed, config)
        return ds.pixels, [scene.caption for scene in ds.scenes]

    def digits(self, split: str, n: int | None = None) -> tuple[torch.Tensor, list[str]]:
        """Float images in [-1, 1] and captions of the first ``n`` (default: all) digits of
        ``split`` ("train" or "test")."""
        digits = DigitsDataset(self.size, split=split)
        m = len(digits) if n is None else min(n, len(digits))
        return digits.images[:m], [digits[i].caption for i in range(m)]


@dataclass
class ImageTrainConfig:
    """A diffusion run: data, network, forward process and trainer settings."""

    out: str = "runs/ddpm"  # run folder to write
    model: str = "ddpm"  # the image model family
    data: DataSpec = field(default_factory=DataSpec)
    preset: str = "tiny"  # UNet size preset
    unet_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. base_channels=32
    text_dim: int = 64  # caption encoder width
    text_layers: int = 2  # caption encoder depth
    prediction: str = "v"  # trains fastest on a CPU budget: see docs/diffusion.md
    schedule: str = "linear"  # noise schedule: linear | cosine | scaled_linear
    num_train_timesteps: int = 1000  # diffusion steps T
    cond_drop: float = 0.1  # caption dropout for classifier-free guidance
    snr_gamma: float | None = 1.0  # Min-SNR-gamma loss weighting; None: the plain MSE
    snr_floor: float = 0.1  # the weight the noisiest steps keep (with snr_gamma)
    ema_decay: float = 0.999  # weight average decay
    grid_sampler_steps: int = 50  # DDIM steps of the sample grids written while training
    grid_guidance: float = 3.0  # guidance scale of the sample grids
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            max_steps=2000,
            batch_size=64,
            lr=1e-3,
            warmup_steps=100,
            weight_decay=0.0,
            eval_every=200,
            eval_batches=4,
            checkpoint_every=200,
        )
    )


def load_images(spec: DataSpec, split: str = "train") -> tuple[torch.Tensor, list[str]]:
    """uint8 pixels (N, C, H, W) and captions of ``spec``'s images; ``split="eval"`` gives
    held-out images (other shapes scenes, the digits test split) or raises for a folder."""
    if spec.data == "shapes":
        if split == "train":
            return spec.shapes(spec.n_images, spec.seed)
        return spec.shapes(EVAL_IMAGES, spec.seed + 1)
    if spec.data == "digits":
        images, captions = spec.digits("train" if split == "train" else "test")
        return to_uint8(images), captions
    if split != "train":
        raise GenlabError("an image folder has no held-out split")
    folder = ImageFolderDataset(spec.data, spec.size, channels=3)
    items = [folder[i] for i in range(len(folder))]
    return to_uint8(torch.stack([it.image for it in items])), [it.caption for it in items]


def held_out_captions(spec: DataSpec) -> list[str]:
    """The captions of ``spec``'s held-out images, or of its training images for a folder
    (which has no held-out split)."""
    try:
        return load_images(spec, "eval")[1]
    except GenlabError:
        return load_images(spec, "train")[1]


def grid_prompts(spec: DataSpec, tokenizer: CaptionTokenizer) -> list[str]:
    """The fixed prompts of the training grids: the first distinct captions of held-out data
    (the training data for a folder), only words the tokenizer knows."""
    captions = held_out_captions(spec)
    distinct = [c for c in dict.fromkeys(captions) if not tokenizer.unknown_words(c)]
    return distinct[:GRID_PROMPTS] or [""]


def build_model_config(
    cfg: ImageTrainConfig, tokenizer: CaptionTokenizer, channels: int
) -> DiffusionConfig:
    unet = UNetConfig.preset(
        cfg.preset, image_channels=channels, context_dim=cfg.text_dim, **cfg.unet_overrides
    )
    text = TextEncoderConfig(
        vocab_size=tokenizer.vocab_size,
        max_length=tokenizer.max_length,
        dim=cfg.text_dim,
        num_layers=cfg.text_layers,
    )
    return DiffusionConfig(
        unet=unet,
        text=text,
        image_size=cfg.data.size,
        schedule=cfg.schedule,
        num_train_timesteps=cfg.num_train_timesteps,
        prediction=cfg.prediction,
    )


def recipe_record(cfg: ImageTrainConfig) -> dict[str, Any]:
    """Every setting of ``cfg`` but the output folder and the trainer's (``config.json`` has
    those), as JSON."""
    record = {k: v for k, v in vars(cfg).items() if k not in ("out", "train", "data")}
    return {**record, "data": cfg.data.to_dict()}


def config_from_run(run: str | os.PathLike) -> ImageTrainConfig:
    """The full configuration a run was trained with (to resume it, or to train a variant)."""
    run = Path(run)
    meta = read_model_config(run, KIND)
    recipe = dict(read_json(run / RECIPE_FILE, what="recipe settings"))
    data = DataSpec(**recipe.pop("data"))
    return ImageTrainConfig(
        out=str(run), data=data, train=TrainConfig.from_dict(meta["train"]), **recipe
    )


def read_data_spec(run: str | os.PathLike) -> DataSpec:
    """The data a run was trained on (from ``RUN/recipe.json``)."""
    return DataSpec(**read_json(Path(run) / RECIPE_FILE, what="recipe settings")["data"])


def write_grid(
    model: DiffusionModel,
    tokenizer: CaptionTokenizer,
    prompts: list[str],
    path: str | os.PathLike,
    steps: int,
    guidance: float,
    seed: int = 0,
) -> torch.Tensor:
    """Two DDIM samples of each prompt, one prompt per column, as a PNG."""
    scheduler = model.scheduler("ddim")
    scheduler.set_timesteps(steps)
    images = generate_captions(model, tokenizer, prompts * 2, scheduler, guidance, seed=seed)
    save_grid(images, path, nrow=len(prompts), scale=4)
    return images


class SampleGrid(Callback):
    """At each evaluation, draw the grid of ``prompts`` from the weight average into
    ``folder/step_NNNNNN.png`` (rank 0): the run's progress, seen."""

    def __init__(
        self,
        ema: EMACallback,
        tokenizer: CaptionTokenizer,
        prompts: list[str],
        folder: Path,
        cfg: ImageTrainConfig,
    ) -> None:
        self.ema, self.tokenizer, self.prompts, self.folder, self.cfg = (
            ema,
            tokenizer,
            prompts,
            folder,
            cfg,
        )

    def on_evaluate(self, trainer: Trainer) -> dict[str, float]:
        if dist_info().is_main and self.ema.ema is not None:
            net = trainer.model
            with self.ema.ema.applied(net):
                write_grid(
                    net,  # type: ignore[arg-type]
                    self.tokenizer,
                    self.prompts,
                    self.folder / f"step_{trainer.step:06d}.png",
                    self.cfg.grid_sampler_steps,
                    self.cfg.grid_guidance,
                )
            text = "\n".join(self.prompts).encode() + b"\n"
            atomic_write_bytes(self.folder / "prompts.txt", text)
        return {}


def train_diffusion(
    cfg: ImageTrainConfig, resume: bool = False, until: int | None = None
) -> dict[str, float]:
    """Train into ``cfg.out``; return the final metrics. ``until`` stops after that step with a
    checkpoint (``resume`` continues, with the run's own model and data settings)."""
    if cfg.model not in IMAGE_MODELS:
        raise GenlabError(
            f"unknown image model '{cfg.model}'; choose one of {', '.join(IMAGE_MODELS)}"
        )
    out = Path(cfg.out)
    resuming = resume and (out / RECIPE_FILE).is_file()
    if resuming:  # the run keeps its own model, data and vocabulary; only training settings change
        cfg = replace(config_from_run(out), out=cfg.out, train=cfg.train)
    pixels, captions = load_images(cfg.data)
    if resuming:
        model_config = DiffusionConfig.from_dict(read_model_config(out, KIND)["config"])
        tokenizer = CaptionTokenizer.from_json((out / CAPTION_TOKENIZER_FILE).read_text())
    else:
        tokenizer = CaptionTokenizer.from_captions(captions)
        model_config = build_model_config(cfg, tokenizer, channels=pixels.shape[1])
    tokens, mask = tokenizer.encode(captions)
    seed_everything(cfg.train.seed)  # the initial weights follow the seed
    model = DiffusionModel(model_config)
    T = model_config.num_train_timesteps
    train_data = DiffusionBatchSource(pixels, tokens, mask, T, cfg.cond_drop, cfg.train.seed)
    eval_data = None
    if cfg.data.data in ("shapes", "digits"):
        eval_pixels, eval_captions = load_images(cfg.data, "eval")
        eval_tokens, eval_mask = tokenizer.encode(eval_captions)
        eval_data = DiffusionBatchSource(
            eval_pixels, eval_tokens, eval_mask, T, cfg.cond_drop, cfg.train.seed + 1
        )
    prompts = grid_prompts(cfg.data, tokenizer)
    ema = EMACallback(decay=cfg.ema_decay)
    grid = SampleGrid(ema, tokenizer, prompts, out / SAMPLES_DIR, cfg)
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
            RECIPE_FILE: json.dumps(recipe_record(cfg), indent=2).encode(),
        },
        callbacks=[ema, grid],
        resume=resume,
    )
    metrics = trainer.fit(until=until)
    metrics["params"] = float(model.num_params())
    return metrics
