"""Text-to-image arms trained on one budget and measured alike: the shared part of the
``pixel-vs-latent`` and ``text-encoder-size`` experiments.

Every arm trains on the built-in shapes with the held-out compositions kept out
(``DataSpec(holdout="compositions")``: colour x kind x position combinations no part of the arm
ever saw, the autoencoder included) for the same minutes of training (``TimeBudget``), and is
measured by :func:`genlab.recipes.diffusion_eval.evaluation_groups`'s protocol: ``n`` captions
of the seen and ``n`` of the unseen compositions, one image each, FID with genlab features
against a real image drawn for each of the same captions, the real-vs-real floor drawn alike,
caption adherence with its 95% bootstrap interval, and CLIP score (Hessel et al., 2021, as
torchmetrics computes it) under genlab's small CLIP, with real images' score beside it. The
feature net and the CLIP are instruments trained on every composition, as Inception and CLIP
were trained on data beyond any benchmark's; only the generators never see the held-out ones. Model choices read the validation
captions; ``--split test`` is asked once, for the page.

An arm's run folder is reused once trained (``DONE_FILE``) and its measured row once measured
with the same settings (``ROW_FILE``), so a rerun re-measures only what changed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch

from genlab.core.errors import refuse_invalid
from genlab.core.io import atomic_save_tensors, atomic_write_json, load_tensors, read_json
from genlab.core.train_config import TrainConfig
from genlab.methods.diffusion.text_conditioned import generate_captions, load_diffusion
from genlab.metrics.bootstrap import bootstrap_mean
from genlab.metrics.clip_score import CaptionedCLIP, clip_score, load_clip
from genlab.metrics.features import FeatureNet, default_features_dir, load_feature_net
from genlab.metrics.features import train_feature_net as fit_feature_net
from genlab.recipes.clip import CLIPTrainConfig, default_clip_dir, train_clip
from genlab.recipes.diffusion import DataSpec, ImageTrainConfig, train_diffusion
from genlab.recipes.diffusion_eval import (
    FID_IMAGES,
    MEASURE_PRESETS,
    EvalGroup,
    measure_group,
    preset_images,
)
from genlab.recipes.experiments.report import training_seconds
from genlab.recipes.image_family import train_family
from genlab.recipes.image_settings import FamilySettings

DONE_FILE = "experiment_done.json"  # an arm's run finished training: its seconds, steps, size
ROW_FILE = "experiment_row.json"  # its measured row, with the settings it was measured with
STRIP_FILE = "experiment_samples.safetensors"  # its first STRIP unseen samples, for the page
STRIP = 8  # samples an arm shows on its page: a row of the page's samples grid
Draw = Callable[[list[str], int], torch.Tensor]  # (captions, seed) -> one image per caption


@dataclass
class ArmsConfig:
    """The budget every arm trains on and how each is measured."""

    minutes: float = 10.0  # training minutes of every diffusion model (the same for each arm)
    max_steps: int = 100_000  # a cap on every run's steps (the minutes end training first)
    vae_minutes: float = 5.0  # the latent arms' autoencoder (trained once, on images alone)
    kl_weight: float = 0.001  # that autoencoder's KL weight (small, as latent diffusion's)
    vae_downsample: int = 2  # its latent grid is the image side / this (validation: 2 beat 4)
    size: int = 32  # image side
    n_images: int = 20_000  # training scenes (of the training compositions)
    n: int = FID_IMAGES  # captions per group (seen, unseen), one generated and one real image each
    preset: Literal["cpu", "gpu"] = "cpu"  # gpu: at least GPU_FID_IMAGES captions a group
    split: Literal["validation", "test"] = "validation"  # tune on validation, report test once
    steps: int = 50  # DDIM steps of every sampler
    guidance: float = 3.0  # classifier-free guidance scale
    batch_size: int = 100  # images per forward while sampling
    seed: int = 0  # training and sampling seed
    features: str | None = None  # feature net folder; none: genlab's cache (trained if absent)
    clip: str | None = None  # CLIP folder (genlab metrics train-clip); none: the cache's
    runs_dir: str = "runs/t2i"  # a run folder per arm, reused once trained
    out_dir: str = "docs/experiments"  # where the page, JSON and figures go

    def __post_init__(self) -> None:
        self.n = preset_images(self.n, self.preset)

    def validate(self) -> None:
        checks = {
            "minutes": self.minutes > 0,
            "max_steps": self.max_steps >= 1,
            "vae_minutes": self.vae_minutes > 0,
            "kl_weight": self.kl_weight >= 0,
            "vae_downsample": self.vae_downsample in (1, 2, 4, 8),
            "size": self.size >= 8 and self.size % 8 == 0,
            "n": self.n >= 100,
            "preset": self.preset in MEASURE_PRESETS,
            "n_images": self.n_images >= 64,
            "steps": self.steps >= 1,
            "guidance": self.guidance >= 0,
            "batch_size": self.batch_size >= 1,
        }
        refuse_invalid(self, checks, "experiment setting")


def trainer(cfg: ArmsConfig, batch_size: int = 64) -> TrainConfig:
    """Every arm's trainer: a step budget the time budget lowers, grids every 500 steps."""
    return TrainConfig(
        max_steps=cfg.max_steps,
        batch_size=batch_size,
        lr=1e-3,
        warmup_steps=100,
        weight_decay=0.0,
        eval_every=500,
        eval_batches=4,
        checkpoint_every=500,
        seed=cfg.seed,
        progress=False,
    )


def data(cfg: ArmsConfig, size: int | None = None) -> DataSpec:
    return DataSpec(
        data="shapes", size=size or cfg.size, n_images=cfg.n_images, holdout="compositions"
    )


def diffusion_arm(cfg: ArmsConfig, run: Path, **changes: Any) -> ImageTrainConfig:
    """A diffusion run of the budget, on the held-out-compositions shapes, with ``changes``."""
    base = ImageTrainConfig(
        out=str(run),
        data=data(cfg),
        time_budget=cfg.minutes,
        grid_sampler_steps=cfg.steps,
        grid_guidance=cfg.guidance,
        train=trainer(cfg),
    )
    return replace(base, **changes)


def trained(
    image: ImageTrainConfig, train: Callable[..., dict[str, float]] | None = None
) -> dict[str, float]:
    """Train ``image`` unless its folder says it is done, with ``train`` (default: diffusion's
    or another family's recipe, by ``image.model``); its training seconds, steps and trainable
    parameters."""
    run = Path(image.out)
    if (run / DONE_FILE).is_file():
        return read_json(run / DONE_FILE)
    if train is None:
        train = train_diffusion if image.model in ("diffusion", "ddpm") else train_family
    metrics = train(image, resume=True)
    seconds, steps = training_seconds(run)
    done = {"seconds": seconds, "steps": float(steps), "params": metrics["params"]}
    atomic_write_json(run / DONE_FILE, done)
    return done


def autoencoder(cfg: ArmsConfig) -> Path:
    """The latent arms' VAE (4 latent channels, no captions), trained once."""
    run = Path(cfg.runs_dir) / "autoencoder"
    settings = FamilySettings(
        width=32,
        latent_channels=4,
        downsample=cfg.vae_downsample,
        kl_weight=cfg.kl_weight,
        captions=False,
    )
    image = ImageTrainConfig(
        out=str(run),
        model="vae",
        data=data(cfg),
        time_budget=cfg.vae_minutes,
        family=settings,
        train=trainer(cfg),
    )
    trained(image)
    return run


def feature_net(cfg: ArmsConfig) -> tuple[FeatureNet, Path]:
    """The feature network that measures every arm (trained into genlab's cache if absent)."""
    folder = Path(cfg.features) if cfg.features else default_features_dir("shapes", cfg.size)
    if not (folder / "model.safetensors").is_file():
        fit_feature_net(folder, "shapes", cfg.size)
    return load_feature_net(folder), folder


def clip_model(cfg: ArmsConfig) -> tuple[CaptionedCLIP, Path]:
    """The CLIP that scores every arm (trained into genlab's cache if absent)."""
    folder = Path(cfg.clip) if cfg.clip else default_clip_dir("shapes", cfg.size)
    if not (folder / "model.safetensors").is_file():
        train_clip(CLIPTrainConfig(out=str(folder), size=cfg.size))
    return load_clip(folder), folder


class Instruments:
    """What measures an arm: the feature net (FID, KID, adherence) and the CLIP."""

    def __init__(self, cfg: ArmsConfig) -> None:
        self.net, self.features = feature_net(cfg)
        self.clip, self.clip_folder = clip_model(cfg)

    def real_clip_scores(self, groups: dict[str, EvalGroup]) -> dict[str, float]:
        """Each group's real images' CLIP score with their captions: what a perfect generator
        would score."""
        return {name: clip_score(self.clip, g.reference, g.captions) for name, g in groups.items()}


def diffusion_draw(run: Path, cfg: ArmsConfig) -> Draw:
    """How a diffusion run (pixel or latent) draws: DDIM at ``cfg.steps`` with guidance."""
    model, tokenizer = load_diffusion(run)
    scheduler = model.scheduler("ddim")
    scheduler.set_timesteps(cfg.steps)
    return lambda captions, seed: generate_captions(
        model, tokenizer, captions, scheduler, cfg.guidance, seed, cfg.batch_size
    )


def measurement_key(cfg: ArmsConfig, tools: Instruments, run: Path, extra: str = "") -> str:
    """What a measured row depends on: the sampling settings, the feature net's and the run's
    weights (a retrained run or net is measured anew)."""

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "-"

    settings = [cfg.n, cfg.split, cfg.steps, cfg.guidance, cfg.seed, extra]
    weights = [
        digest(tools.features / "model.safetensors"),
        digest(tools.clip_folder / "model.safetensors"),
        digest(run / "ema.safetensors"),
    ]
    return json.dumps([settings, weights])


def adherence_interval(result: dict[str, float], seed: int) -> dict[str, float]:
    """A 95% bootstrap interval of an adherence share over its scored images."""
    scored, share = int(result["scored"]), result["adherence"]
    hits = round(share * scored)
    interval = bootstrap_mean([1.0] * hits + [0.0] * (scored - hits), seed=seed)
    return {"adherence_low": interval.low, "adherence_high": interval.high}


def measure_arm(
    run: Path,
    draw: Draw,
    tools: Instruments,
    groups: dict[str, EvalGroup],
    cfg: ArmsConfig,
    key: str,
) -> dict[str, Any]:
    """An arm's row: per group (seen, unseen) FID and KID with their floors, adherence with its
    interval, CLIP score, and seconds per image. Each group is kept in ``run/ROW_FILE`` as it
    is measured, so a rerun with the same ``key`` measures only the groups still missing (an
    interrupted measurement of 2,000 images a group loses at most one group)."""
    cache = run / ROW_FILE
    saved = read_json(cache) if cache.is_file() else {}
    row: dict[str, Any] = saved["row"] if saved.get("key") == key else {}
    for name, group in groups.items():
        if name in row:
            continue
        tic = time.perf_counter()
        images = draw(group.captions, cfg.seed)
        seconds = (time.perf_counter() - tic) / len(images)
        result = measure_group(tools.net, images, group)
        row[name] = {
            **result,
            **adherence_interval(result, cfg.seed),
            "clip_score": clip_score(tools.clip, images, group.captions),
            "seconds_per_image": seconds,
        }
        if name == "unseen" or len(groups) == 1:
            atomic_save_tensors(run / STRIP_FILE, {"images": images[:STRIP].contiguous()})
        atomic_write_json(cache, {"key": key, "row": row})
    return {name: row[name] for name in groups}


def strip(run: Path) -> torch.Tensor:
    """The first 8 unseen samples an arm's measurement kept."""
    return load_tensors(run / STRIP_FILE)["images"]
