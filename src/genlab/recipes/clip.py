"""Train genlab's small CLIP on captioned shapes scenes, and measure what it learnt.

The CLIP score of a text-to-image model needs a CLIP that reads its images. OpenAI's reads
photographs and needs a download; genlab trains a small one (``genlab.nets.clip``) contrastively
(``genlab.methods.contrastive``) on its own shapes scenes, half of them of two shapes, so that the
score sees colours, kinds, sizes, positions and which shape is where. The scenes are drawn with
seeds no other run draws (diffusion runs 0 and 1, the feature net 100 and 101, the FID reference
200 and 201), so a diffusion model is never scored by a CLIP trained on its own training images.

After training, held-out scenes measure it, written to ``accuracy.json`` as the feature net does:
top-1 retrieval within batches of 64 (each image's own caption among the batch's 64, and each
caption's own image), the CLIP score of matching captions against shuffled ones (each image with
another image's caption), and for two-shape scenes how often the true caption beats the same
words with the two shapes exchanged ("a red circle to the left of a blue star" against "a blue
star to the left of a red circle"), which only a model that reads the relation gets right.

With the defaults (600 steps of 128 pairs, image tower width 16, 20,000 scenes), one run took 95
CPU-seconds on one thread (2 min 53 s of wall-clock on a shared, busy 2-core machine) and measured
on 2,048 held-out scenes: image -> text top-1 0.954 within batches of 64 (0.923 for one-shape
scenes, 0.984 for two-shape ones), text -> image 0.954, the true caption above its swapped twin
for 0.892 of two-shape scenes, and a CLIP score of 94.4 with the right captions against 1.2 with
shuffled ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from genlab.core.batches import TensorBatchSource
from genlab.core.checkpoint import CONFIG_FILE
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_json, read_json
from genlab.core.rng import seed_everything
from genlab.core.train_config import TrainConfig
from genlab.core.trainer import Trainer
from genlab.data.captions import CaptionTokenizer
from genlab.data.images import ImageFolderDataset, Scene, ShapesConfig, ShapesDataset, from_uint8
from genlab.methods.contrastive import (
    CAPTION_TOKENIZER_FILE,
    KIND,
    ContrastiveStep,
)
from genlab.methods.diffusion.text_conditioned import generate_captions, load_diffusion
from genlab.metrics.clip_score import CaptionedCLIP, ImageTextEncoder, clip_score, pair_scores
from genlab.nets.clip import CLIP, CLIPConfig
from genlab.nets.text_encoder import TextEncoderConfig
from genlab.recipes.diffusion import held_out_captions, read_data_spec
from genlab.recipes.diffusion_eval import DDIM_STEPS, reference_set

DATASETS = ("shapes",)  # digits' ten captions repeat within a batch: no contrastive task
ACCURACY_FILE = "accuracy.json"
TRAIN_SEED, EVAL_SEED = 300, 301
RETRIEVAL_BATCH = 64


def default_clip_dir(data: str, size: int) -> Path:
    """Where ``genlab metrics train-clip`` puts a CLIP unless told otherwise:
    ``$GENLAB_HOME/clip/DATA-SIZE`` (``GENLAB_HOME`` defaults to ``~/.cache/genlab``)."""
    home = Path(os.environ.get("GENLAB_HOME", Path.home() / ".cache" / "genlab"))
    return home / "clip" / f"{data}-{size}"


def clip_training() -> TrainConfig:
    """The CLIP's trainer settings: 600 steps of 128 pairs, about 95 CPU-seconds on one core."""
    return TrainConfig(
        max_steps=600,
        batch_size=128,
        lr=2e-3,
        warmup_steps=50,
        weight_decay=0.01,
        eval_every=200,
        eval_batches=4,
        checkpoint_every=200,
    )


@dataclass
class CLIPTrainConfig:
    """What ``genlab metrics train-clip`` trains: the arguments of :func:`train_clip`."""

    data: str = "shapes"  # shapes (the only captioned set without repeated captions)
    out: str | None = None  # folder; default: $GENLAB_HOME/clip/DATA-SIZE
    size: int = 32  # image side in pixels
    n_images: int = 20_000  # shapes scenes to draw
    two_shape_fraction: float = 0.5  # share of two-shape scenes (captions with a relation)
    width: int = 16  # channels of the image tower's first stage (then 2x, 4x)
    text_dim: int = 64  # width of the caption Transformer
    text_layers: int = 2  # layers of the caption Transformer
    embed_dim: int = 64  # the shared embedding space
    pool: str = "mean"  # caption pooling: mean or last
    noise: float = 0.1  # largest sigma of the Gaussian noise added to training images
    eval_images: int = 2048  # held-out scenes measured after training (accuracy.json)
    train: TrainConfig = field(default_factory=clip_training)


def _scenes(cfg: CLIPTrainConfig, n: int, seed: int) -> ShapesDataset:
    return ShapesDataset(n, cfg.size, seed, ShapesConfig(two_shape_fraction=cfg.two_shape_fraction))


def train_clip(cfg: CLIPTrainConfig) -> dict[str, float]:
    """Train a CLIP into ``cfg.out`` (default :func:`default_clip_dir`); return its held-out
    figures (also written to ``out/accuracy.json``)."""
    if cfg.data not in DATASETS:
        raise GenlabError(f"--data must be one of {', '.join(DATASETS)}, got '{cfg.data}'")
    if cfg.eval_images < RETRIEVAL_BATCH:
        raise GenlabError(
            f"--eval-images must be at least {RETRIEVAL_BATCH} (one retrieval batch), got "
            f"{cfg.eval_images}"
        )
    out = Path(cfg.out) if cfg.out else default_clip_dir(cfg.data, cfg.size)
    train_set = _scenes(cfg, cfg.n_images, TRAIN_SEED)
    eval_set = _scenes(cfg, cfg.eval_images, EVAL_SEED)
    captions = [scene.caption for scene in train_set.scenes]
    tokenizer = CaptionTokenizer.from_captions(captions)
    config = CLIPConfig(
        text=TextEncoderConfig(
            vocab_size=tokenizer.vocab_size,
            max_length=tokenizer.max_length,
            dim=cfg.text_dim,
            num_layers=cfg.text_layers,
        ),
        image_channels=train_set.pixels.shape[1],
        image_size=cfg.size,
        width=cfg.width,
        image_dim=2 * cfg.embed_dim,
        embed_dim=cfg.embed_dim,
        pool=cfg.pool,
    )
    seed_everything(cfg.train.seed)
    model = CLIP(config)
    ids, mask = tokenizer.encode(captions)
    eval_ids, eval_mask = tokenizer.encode([scene.caption for scene in eval_set.scenes])
    trainer = Trainer(
        model,
        ContrastiveStep(cfg.noise),
        TensorBatchSource((train_set.pixels, ids, mask), seed=cfg.train.seed),
        cfg.train,
        out,
        eval_data=TensorBatchSource(
            (eval_set.pixels, eval_ids, eval_mask), seed=cfg.train.seed + 1
        ),
        model_kind=KIND,
        model_config=config.to_dict(),
        extra_files={CAPTION_TOKENIZER_FILE: tokenizer.to_json().encode()},
    )
    trainer.fit()
    figures = held_out_figures(
        CaptionedCLIP(model.cpu().eval(), tokenizer), eval_set.pixels, eval_set.scenes
    )
    atomic_write_json(out / ACCURACY_FILE, figures)
    return figures


def swapped(scene: Scene) -> str | None:
    """A two-shape scene's caption with its shapes exchanged (the same words, a false scene);
    ``None`` for one shape."""
    if scene.relation is None:
        return None
    return Scene(tuple(reversed(scene.shapes)), scene.relation).caption


@torch.no_grad()
def held_out_figures(
    model: CaptionedCLIP, pixels: torch.Tensor, scenes: list[Scene]
) -> dict[str, float]:
    """Retrieval within batches of 64, CLIP scores of matching and shuffled captions, and the
    relation test, on held-out scenes (see the module's docstring)."""
    images = from_uint8(pixels)
    captions = [scene.caption for scene in scenes]
    two = torch.tensor([scene.relation is not None for scene in scenes])
    hits_i2t, hits_t2i = [], []
    for start in range(0, len(captions) - RETRIEVAL_BATCH + 1, RETRIEVAL_BATCH):
        stop = start + RETRIEVAL_BATCH
        logits = (
            model.encode_image(images[start:stop]) @ model.encode_text(captions[start:stop]).t()
        )
        labels = torch.arange(RETRIEVAL_BATCH)
        hits_i2t.append(logits.argmax(1).cpu() == labels)
        hits_t2i.append(logits.argmax(0).cpu() == labels)
    if not hits_i2t:
        raise GenlabError(
            f"held-out retrieval needs at least {RETRIEVAL_BATCH} scenes, got {len(captions)}"
        )
    i2t, t2i = torch.cat(hits_i2t).float(), torch.cat(hits_t2i).float()
    scored = two[: len(i2t)]
    matched = pair_scores(model, images, captions)
    shuffled = pair_scores(model, images, captions[1:] + captions[:1])
    figures = {
        "acc_i2t": float(i2t.mean()),
        "acc_t2i": float(t2i.mean()),
        "clip_score_matched": max(float(matched.mean()), 0.0),
        "clip_score_shuffled": max(float(shuffled.mean()), 0.0),
        "retrieval_batch": float(RETRIEVAL_BATCH),
        "n": float(len(captions)),
    }
    if (~scored).any():
        figures["acc_i2t_one_shape"] = float(i2t[~scored].mean())
    if scored.any():
        figures["acc_i2t_two_shapes"] = float(i2t[scored].mean())
    if two.any():
        index = [i for i, scene in enumerate(scenes) if scene.relation is not None]
        exchanged = [swapped(scenes[i]) or "" for i in index]
        wrong = pair_scores(model, images[index], exchanged)
        figures["acc_relation"] = float((matched[index] > wrong).float().mean())
    return figures


# ---------------------------------------------------------------------------------------------
# The CLIP score of a diffusion run or of a folder of captioned images

RUN_KINDS = ("diffusion", "adapter")  # what load_diffusion opens (an adapter on a diffusion run)


def is_diffusion_run(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a run folder of a (possibly adapted) diffusion model."""
    try:
        return read_json(Path(path) / CONFIG_FILE, what="model config").get("kind") in RUN_KINDS
    except GenlabError:
        return False


@dataclass
class ScoreOptions:
    """How a run's images are sampled for its CLIP score."""

    n: int = 500  # captions (one image each)
    sampler: str = "ddim"  # ddpm or ddim
    steps: int | None = None  # sampling steps (default: the sampler's)
    eta: float = 0.0  # DDIM's eta
    guidance: float = 3.0  # classifier-free guidance scale
    seed: int = 0  # sampling seed (and which held-out captions)
    batch_size: int = 100  # images per batch
    precision: str = "fp32"  # fp32 or bf16


def score_target(
    target: str | os.PathLike,
    clip: ImageTextEncoder,
    options: ScoreOptions | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """The CLIP score of ``target``: a diffusion run's samples for ``n`` held-out captions
    (with, where its data has them, real images' score for captions of the same data as the
    ceiling), or a folder of captioned images (its first ``n``); and the score of the same
    images with shuffled captions (each image with another's caption) as the floor."""
    o = options or ScoreOptions()
    if o.n < 2:
        raise GenlabError(f"--n must be at least 2 (shuffled captions need two), got {o.n}")
    result: dict[str, float] = {}
    if is_diffusion_run(target):
        spec = read_data_spec(target)
        try:
            real, captions = reference_set(spec, o.n)
            result["clip_score_real"] = clip_score(clip, real, captions, o.batch_size)
        except GenlabError:  # a run trained on a folder: no built-in real images
            pool = held_out_captions(spec)
            order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(o.seed))
            captions = [pool[int(i)] for i in order[: o.n]]
        model, tokenizer = load_diffusion(target, device=device)
        scheduler = model.scheduler(o.sampler, eta=o.eta)
        default = model.config.num_train_timesteps if o.sampler == "ddpm" else DDIM_STEPS
        scheduler.set_timesteps(o.steps or default)
        images = generate_captions(
            model, tokenizer, captions, scheduler, o.guidance, o.seed, o.batch_size, o.precision
        )
    else:
        folder = ImageFolderDataset(target, channels=3)
        items = [folder[i] for i in range(min(o.n, len(folder)))]
        images = torch.stack([item.image for item in items])
        captions = [item.caption for item in items]
        if len(items) < 2 or not all(captions):
            raise GenlabError(f"{target} needs at least two images, each with a caption")
    result["clip_score"] = clip_score(clip, images, captions, o.batch_size)
    result["clip_score_shuffled"] = clip_score(
        clip, images, captions[1:] + captions[:1], o.batch_size
    )
    result["n"] = float(len(captions))
    return result
