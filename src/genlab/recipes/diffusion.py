"""Text-to-image diffusion on genlab's built-in images: train a caption-conditioned DDPM.

The recipe wires the text-conditioned model (``genlab.methods.diffusion.text_conditioned``) to
the shared trainer: it loads the images (captioned shapes, scikit-learn's digits or a folder),
builds the caption vocabulary and trains on the DDPM objective (Ho et al., 2020) with 10% of the
captions dropped for classifier-free guidance (Ho & Salimans, 2022). The weights are averaged as
training goes (DDPM samples from that average, ``genlab.core.ema``), and every ``eval_every``
steps the average draws a grid of fixed prompts into ``RUN/samples/``, so the run can be watched
learning. Sampling and measuring a finished run: ``genlab.recipes.diffusion_eval``.

``init_from`` starts from a trained run instead (its network, caption vocabulary and image size,
its weight average as the starting weights): all weights train, or with ``adapter`` only a LoRA
(Hu et al., 2021) on the UNet, frozen otherwise, as LoRA fine-tunes Stable Diffusion. The LoRA's
default layers (``UNET_LORA_TARGETS``) are every attention projection (self- and cross-attention:
``to_q``, ``to_k``, ``to_v``, ``to_out``) and both convolutions of every residual block (``conv1``,
``conv2``), as LoCon adds convolutions to LoRA's attention layers; the run folder is then an
adapter run of that base, which ``genlab image sample`` opens like any run.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genlab.adapt.adapted import KIND as ADAPTER_KIND
from genlab.adapt.adapted import Adapted
from genlab.adapt.config import AdapterConfig, AdapterOptions
from genlab.core.callbacks import Callback, TimeBudget
from genlab.core.checkpoint import read_model_config
from genlab.core.distributed import dist_info
from genlab.core.ema import EMA_FILE, EMACallback
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes, read_json
from genlab.core.registry import load
from genlab.core.rng import seed_everything
from genlab.core.train_config import TrainConfig
from genlab.core.trainer import Trainer
from genlab.data.captions import CaptionTokenizer
from genlab.data.images import (
    DigitsDataset,
    ImageFolderDataset,
    ShapesConfig,
    ShapesDataset,
    composition_split,
    save_grid,
    to_uint8,
)
from genlab.methods.diffusion.latent import (
    LatentConfig,
    encode_pixels,
    open_autoencoder,
    unit_variance_scale,
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
from genlab.methods.diffusion.text_encoders import resolve_text_encoder, text_encoder_width
from genlab.nets.frozen_text_encoder import SMALL
from genlab.nets.text_encoder import TextEncoderConfig
from genlab.nets.unet import UNetConfig
from genlab.recipes.image_settings import FamilySettings

RECIPE_FILE = "recipe.json"  # the recipe settings besides the trainer's (data, sizes, CFG)
SAMPLES_DIR = "samples"
DIFFUSION = ("diffusion", "ddpm")  # the names of this recipe's method
GRID_PROMPTS = 8  # columns of the training grids, each prompt drawn twice (two rows)
EVAL_IMAGES = 512
HOLDOUTS = ("none", "compositions")  # what a shapes run holds out of training (DataSpec.holdout)
# load_images's splits of the shapes, and the offset of each one's seed from the run's; "eval"
# (the older name) is "validation"
SPLIT_SEEDS = {"train": 0, "validation": 1, "test": 2, "seen": 3}
SCALE_IMAGES = 2048  # training images the latent scale is measured on
# a LoRA's default layers in the UNet: attention projections and residual-block convolutions
UNET_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out", "conv1", "conv2")
# the settings a run started from another takes from it: the network and its training target
MODEL_SETTINGS = (
    "model",
    "preset",
    "unet_overrides",
    "text_dim",
    "text_layers",
    "text_encoder",
    "prediction",
    "schedule",
    "num_train_timesteps",
    "latent_vae",
)


@dataclass
class DataSpec:
    """Which images a run trains on; saved in ``RUN/recipe.json`` so samplers and metrics know."""

    data: str = "shapes"  # "shapes", "digits" or a folder of images
    size: int = 32  # image side in pixels
    n_images: int = 20_000  # shapes only (digits has 1,437 training images, a folder its own)
    two_shape_fraction: float = 0.0  # shapes only: share of two-shape scenes and captions
    seed: int = 0  # shapes only: the scenes drawn
    holdout: str = "none"  # shapes only: none, or compositions (train without held-out ones)

    def __post_init__(self) -> None:
        if self.holdout not in HOLDOUTS:
            raise GenlabError(f"unknown holdout '{self.holdout}': choose {', '.join(HOLDOUTS)}")
        if self.holdout != "none" and self.data != "shapes":
            raise GenlabError(f"--holdout {self.holdout} needs --data shapes, not {self.data}")

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def shapes(self, n: int, seed: int, split: str = "train") -> tuple[torch.Tensor, list[str]]:
        """uint8 pixels (n, C, H, W) and captions of ``n`` scenes of this run's shapes
        distribution, drawn with ``seed``; with ``holdout="compositions"`` only scenes of the
        compositions of ``split`` ("train", "validation" or "test"; see
        ``genlab.data.images.compositions``), else ``split`` changes nothing."""
        held = self.holdout == "compositions"
        config = ShapesConfig(
            two_shape_fraction=self.two_shape_fraction,
            compositions=composition_split() if held else None,
            split=split if held else "train",
        )
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
    model: str = "diffusion"  # the family: diffusion | vae | vq | flow | gan | igpt | maskgit
    data: DataSpec = field(default_factory=DataSpec)
    preset: str = "tiny"  # UNet size preset
    unet_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. base_channels=32
    text_dim: int = 64  # caption encoder width
    text_layers: int = 2  # caption encoder depth
    text_encoder: str = "small"  # small (trained with the UNet) | minilm | gpt:RUN (frozen)
    prediction: str = "v"  # trains fastest on a CPU budget: see docs/diffusion.md
    schedule: str = "linear"  # noise schedule: linear | cosine | scaled_linear
    num_train_timesteps: int = 1000  # diffusion steps T
    latent_vae: str | None = None  # latent diffusion over a VAE run (one trained --no-captions)
    cond_drop: float = 0.1  # caption dropout for classifier-free guidance
    snr_gamma: float | None = 1.0  # Min-SNR-gamma loss weighting; None: the plain MSE
    snr_floor: float = 0.1  # the weight the noisiest steps keep (with snr_gamma)
    ema_decay: float = 0.999  # weight average decay
    grid_sampler_steps: int = 50  # DDIM steps of the sample grids written while training
    grid_guidance: float = 3.0  # guidance scale of the sample grids
    init_from: str | None = None  # a trained image run to start from (its network and vocabulary)
    adapter: AdapterOptions = field(default_factory=AdapterOptions)  # with init_from: lora only
    time_budget: float | None = None  # minutes of training (steps fitted to it); none: max_steps
    family: FamilySettings = field(default_factory=FamilySettings)  # the other families' settings
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


def load_images(
    spec: DataSpec, split: str = "train", n: int | None = None
) -> tuple[torch.Tensor, list[str]]:
    """uint8 pixels (N, C, H, W) and captions of ``spec``'s images of ``split``.

    Shapes: "train" is the run's training scenes; "validation" (or "eval") and "test" are
    ``n`` (default ``EVAL_IMAGES``) fresh scenes of the held-out compositions with
    ``holdout="compositions"``, and "seen" fresh scenes of the training compositions; without
    a holdout all three are fresh draws (other seeds) of the training distribution. Digits:
    every split but "train" is the digits test split. A folder has only "train"."""
    split = "validation" if split == "eval" else split
    if split not in SPLIT_SEEDS:
        raise GenlabError(f"unknown split '{split}': choose {', '.join(SPLIT_SEEDS)}")
    if spec.data == "shapes":
        if split == "train":
            return spec.shapes(spec.n_images, spec.seed)
        drawn = "train" if split == "seen" else split
        return spec.shapes(n or EVAL_IMAGES, spec.seed + SPLIT_SEEDS[split], drawn)
    if spec.data == "digits":
        images, captions = spec.digits("train" if split == "train" else "test")
        return to_uint8(images), captions
    if split != "train":
        raise GenlabError("an image folder has no held-out split")
    folder = ImageFolderDataset(spec.data, spec.size, channels=3)
    items = [folder[i] for i in range(len(folder))]
    return to_uint8(torch.stack([it.image for it in items])), [it.caption for it in items]


def held_out_captions(spec: DataSpec, split: str = "validation") -> list[str]:
    """The captions of ``spec``'s held-out images of ``split`` (tune on "validation", report
    "test" once), or of its training images for a folder (which has no held-out split)."""
    if spec.data not in ("shapes", "digits"):
        return load_images(spec, "train")[1]
    return load_images(spec, split)[1]


def grid_prompts(spec: DataSpec, tokenizer: CaptionTokenizer) -> list[str]:
    """The fixed prompts of the training grids: the first distinct captions of held-out data
    (the training data for a folder), only words the tokenizer knows."""
    captions = held_out_captions(spec)
    distinct = [c for c in dict.fromkeys(captions) if not tokenizer.unknown_words(c)]
    return distinct[:GRID_PROMPTS] or [""]


def build_model_config(
    cfg: ImageTrainConfig,
    tokenizer: CaptionTokenizer,
    channels: int,
    latent: LatentConfig | None = None,
) -> DiffusionConfig:
    """The network ``cfg`` asks for, over images of ``channels`` channels or over ``latent``."""
    if latent is not None:
        channels = latent.vae.latent_channels
    encoder = resolve_text_encoder(cfg.text_encoder)
    frozen = encoder != SMALL  # a frozen encoder's width is its own, text_dim/layers unused
    width = text_encoder_width(encoder) if frozen else cfg.text_dim
    unet = UNetConfig.preset(
        cfg.preset, image_channels=channels, context_dim=width, **cfg.unet_overrides
    )
    text = TextEncoderConfig(
        vocab_size=tokenizer.vocab_size,
        max_length=tokenizer.max_length,
        dim=width,
        num_layers=cfg.text_layers,
        **({"num_heads": 1} if frozen else {}),  # records the width: no heads to split it into
    )
    return DiffusionConfig(
        unet=unet,
        text=text,
        image_size=cfg.data.size,
        schedule=cfg.schedule,
        num_train_timesteps=cfg.num_train_timesteps,
        prediction=cfg.prediction,
        latent=latent,
        text_encoder=encoder,
        caption_vocab=tuple(tokenizer.vocab) if frozen else (),
    )


def recipe_record(cfg: ImageTrainConfig) -> dict[str, Any]:
    """Every setting of ``cfg`` but the output folder and the trainer's (``config.json`` has
    those), as JSON; where it started and how only for a run started from another."""
    skip = ("out", "train", "data", "init_from", "adapter", "family")
    record = {k: v for k, v in vars(cfg).items() if k not in skip}
    if cfg.init_from is not None:
        record |= {"init_from": cfg.init_from, "adapter": asdict(cfg.adapter)}
    return {**record, "data": cfg.data.to_dict()}


def config_from_run(run: str | os.PathLike) -> ImageTrainConfig:
    """The full configuration a run was trained with (to resume it, or to train a variant)."""
    run = Path(run)
    meta = read_model_config(run, (KIND, ADAPTER_KIND))
    recipe = dict(read_json(run / RECIPE_FILE, what="recipe settings"))
    data = DataSpec(**recipe.pop("data"))
    adapter = recipe.pop("adapter", {})
    if adapter.get("lora_targets") is not None:  # JSON has lists, the config tuples
        adapter["lora_targets"] = tuple(adapter["lora_targets"])
    return ImageTrainConfig(
        out=str(run),
        data=data,
        adapter=AdapterOptions(**adapter),
        train=TrainConfig.from_dict(meta["train"]),
        **recipe,
    )


def started_from(cfg: ImageTrainConfig) -> ImageTrainConfig:
    """``cfg`` with the network settings and image size of the run it starts from."""
    if cfg.unet_overrides:
        raise GenlabError(
            f"a run started from {cfg.init_from} keeps its network: drop the UNet options"
        )
    base = config_from_run(str(cfg.init_from))
    kept = {name: getattr(base, name) for name in MODEL_SETTINGS}
    return replace(cfg, **kept, data=replace(cfg.data, size=base.data.size))


def image_adapter(cfg: ImageTrainConfig) -> AdapterConfig | None:
    """The LoRA to train on ``cfg.init_from``'s UNet, or ``None`` to train every weight."""
    config = cfg.adapter.config(UNET_LORA_TARGETS)
    if config is None:
        return None
    if config.method != "lora":
        raise GenlabError(
            f"an image model takes --adapter lora, not {config.method} (a GPT's adapter)"
        )
    if cfg.init_from is None:
        raise GenlabError("--adapter trains on a trained model: give --init-from RUN")
    return config


def read_data_spec(run: str | os.PathLike) -> DataSpec:
    """The data a run was trained on (from ``RUN/recipe.json``)."""
    return DataSpec(**read_json(Path(run) / RECIPE_FILE, what="recipe settings")["data"])


def start_model(run: str, captions: list[str]) -> tuple[DiffusionModel, CaptionTokenizer]:
    """The trained model of ``run`` (its weight average: what it samples from) and its caption
    vocabulary, which must know every word of ``captions``."""
    base = load(run, KIND, weights=EMA_FILE)
    tokenizer = base.files["tokenizer"]
    unknown = sorted({w for c in captions for w in tokenizer.unknown_words(c)})
    if unknown:
        raise GenlabError(
            f"the captions use words {run} never saw ({', '.join(unknown[:5])}); a run started "
            "from it keeps its vocabulary"
        )
    return base.model, tokenizer  # type: ignore[return-value]


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
        model: DiffusionModel,
        tokenizer: CaptionTokenizer,
        prompts: list[str],
        folder: Path,
        cfg: ImageTrainConfig,
    ) -> None:
        """``model`` draws: the trained module itself, or the base inside an adapter run."""
        self.ema, self.model, self.tokenizer, self.prompts, self.folder, self.cfg = (
            ema,
            model,
            tokenizer,
            prompts,
            folder,
            cfg,
        )

    def on_evaluate(self, trainer: Trainer) -> dict[str, float]:
        if dist_info().is_main and self.ema.ema is not None:
            with self.ema.ema.applied(trainer.model):
                write_grid(
                    self.model,
                    self.tokenizer,
                    self.prompts,
                    self.folder / f"step_{trainer.step:06d}.png",
                    self.cfg.grid_sampler_steps,
                    self.cfg.grid_guidance,
                )
            text = "\n".join(self.prompts).encode() + b"\n"
            atomic_write_bytes(self.folder / "prompts.txt", text)
        return {}


def latent_config(vae_run: str, pixels: torch.Tensor) -> LatentConfig:
    """The latent space of the VAE run ``vae_run`` for these uint8 images, its scale measured
    on (up to) the first ``SCALE_IMAGES`` of them."""
    autoencoder = open_autoencoder(vae_run)
    ae = autoencoder.config
    if (ae.image_channels, ae.image_size) != (pixels.shape[1], pixels.shape[-1]):
        raise GenlabError(
            f"{vae_run} codes {ae.image_channels}-channel {ae.image_size}-pixel images but the "
            f"data has {pixels.shape[1]}-channel {pixels.shape[-1]}-pixel ones: pass the same "
            "--data and --size it was trained with"
        )
    scale = unit_variance_scale(encode_pixels(autoencoder, pixels[:SCALE_IMAGES]))
    return LatentConfig(ae, scale)


def denoised(model: DiffusionModel, pixels: torch.Tensor) -> torch.Tensor:
    """What the model learns to denoise: the uint8 images, or their latents (float)."""
    if model.latent is None:
        return pixels
    return encode_pixels(model.latent.vae, pixels, model.latent.config.scale)


def time_budget(cfg: ImageTrainConfig) -> list[TimeBudget]:
    """The callback that fits the run into ``cfg.time_budget`` minutes, if one is set."""
    return [] if cfg.time_budget is None else [TimeBudget(60 * cfg.time_budget)]


def train_diffusion(
    cfg: ImageTrainConfig, resume: bool = False, until: int | None = None
) -> dict[str, float]:
    """Train into ``cfg.out``; return the final metrics. ``until`` stops after that step with a
    checkpoint (``resume`` continues, with the run's own model and data settings)."""
    if cfg.model not in DIFFUSION:
        raise GenlabError(f"'{cfg.model}' is not diffusion: train it with train_family")
    out = Path(cfg.out)
    resuming = resume and (out / RECIPE_FILE).is_file()
    if resuming:  # the run keeps its own model, data and vocabulary; only training settings change
        cfg = replace(config_from_run(out), out=cfg.out, train=cfg.train)
    adapter = image_adapter(cfg)
    if cfg.init_from is not None and not resuming:
        cfg = started_from(cfg)
    pixels, captions = load_images(cfg.data)
    if cfg.init_from is not None:
        model, tokenizer = start_model(cfg.init_from, captions)
    elif resuming:
        model_config = DiffusionConfig.from_dict(read_model_config(out, KIND)["config"])
        tokenizer = CaptionTokenizer.from_json((out / CAPTION_TOKENIZER_FILE).read_text())
    else:
        tokenizer = CaptionTokenizer.from_captions(captions)
        latent = None if cfg.latent_vae is None else latent_config(cfg.latent_vae, pixels)
        model_config = build_model_config(cfg, tokenizer, pixels.shape[1], latent)
    tokens, mask = tokenizer.encode(captions)
    seed_everything(cfg.train.seed)  # a new model's initial weights, or a LoRA's, follow it
    if cfg.init_from is None:
        model = DiffusionModel(model_config)
        if model.latent is not None:
            model.latent.vae.load_state_dict(open_autoencoder(str(cfg.latent_vae)).state_dict())
    trained: nn.Module = model
    if adapter is not None:
        trained = Adapted.around(model, cfg.init_from, adapter, base_weights=EMA_FILE)
    T = model.config.num_train_timesteps
    train_data = DiffusionBatchSource(
        denoised(model, pixels), tokens, mask, T, cfg.cond_drop, cfg.train.seed
    )
    eval_data = None
    if cfg.data.data in ("shapes", "digits"):
        eval_pixels, eval_captions = load_images(cfg.data, "eval")
        eval_tokens, eval_mask = tokenizer.encode(eval_captions)
        eval_data = DiffusionBatchSource(
            denoised(model, eval_pixels),
            eval_tokens,
            eval_mask,
            T,
            cfg.cond_drop,
            cfg.train.seed + 1,
        )
    prompts = grid_prompts(cfg.data, tokenizer)
    ema = EMACallback(decay=cfg.ema_decay)
    grid = SampleGrid(ema, model, tokenizer, prompts, out / SAMPLES_DIR, cfg)
    trainer = Trainer(
        trained,
        DiffusionLoss(model.noise_schedule(), cfg.snr_gamma, cfg.snr_floor),
        train_data,
        cfg.train,
        out,
        eval_data=eval_data,
        model_kind=KIND if adapter is None else ADAPTER_KIND,
        model_config=trained.config.to_dict(),  # type: ignore[operator]
        extra_files={
            CAPTION_TOKENIZER_FILE: tokenizer.to_json().encode(),
            RECIPE_FILE: json.dumps(recipe_record(cfg), indent=2).encode(),
        },
        callbacks=[ema, grid, *time_budget(cfg)],
        resume=resume,
    )
    metrics = trainer.fit(until=until)
    metrics["params"] = float(sum(p.numel() for p in trained.parameters() if p.requires_grad))
    return metrics
