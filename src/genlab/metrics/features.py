"""A small feature network trained on genlab's built-in images: offline FID and attribute reading.

FID (Heusel et al., 2017) compares feature statistics under Inception-v3, a network trained on
ImageNet; its features know nothing of 32x32 coloured shapes, and loading its weights needs a
download. genlab instead trains a small CNN on its own data sets, with one classification head per
attribute the captions are made from (shapes: kind, colour, size, position; digits: the digit).
Its penultimate layer is the feature space of "FID with genlab shapes features" (a different
figure from Inception FID: name it so), and its heads read the attributes of a generated image
for caption adherence (``genlab.metrics.adherence``). Learning attributes makes the features
sensitive to exactly what a text-to-image model must get right.

The network sees images with small Gaussian noise added (sigma up to 0.1), so that it reads the
attributes of generated images, which are rarely as clean as rendered ones, as it reads real
ones. It is trained on one-shape scenes, whose attributes are unambiguous; two-shape scenes still
have features, but adherence is defined for one-shape captions only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.batches import TensorBatchSource
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_json
from genlab.core.registry import Kind, load, register
from genlab.core.rng import seed_everything
from genlab.core.train_config import TrainConfig
from genlab.core.trainer import Trainer
from genlab.data.images import (
    COLORS,
    KINDS,
    NUMBER_WORDS,
    POSITIONS,
    SIZES,
    DigitsDataset,
    ShapesConfig,
    ShapesDataset,
    from_uint8,
    to_uint8,
)
from genlab.metrics.fid import feature_statistics, frechet_distance

KIND = "feature-net"
DATASETS = ("shapes", "digits")
ACCURACY_FILE = "accuracy.json"
# Seeds of the shapes scenes each use draws, apart from the diffusion runs' own (0 and 1).
TRAIN_SEED, EVAL_SEED, REFERENCE_SEED = 100, 101, 200
MAX_NOISE = 0.1


def data_attributes(data: str) -> dict[str, list[str]]:
    """The attributes a data set's captions are made from, and their values."""
    if data == "shapes":
        return {
            "kind": list(KINDS),
            "color": list(COLORS),
            "size": list(SIZES),
            "position": list(POSITIONS),
        }
    if data == "digits":
        return {"digit": list(NUMBER_WORDS)}
    raise GenlabError(f"no attributes for data '{data}': choose one of {', '.join(DATASETS)}")


@dataclass
class LabelledImages:
    """uint8 pixels (N, C, H, W), their captions, and labels (N, attributes) as value indices."""

    pixels: Tensor
    captions: list[str]
    labels: Tensor
    attributes: dict[str, list[str]]


def labelled_images(
    data: str, size: int = 32, n: int = 2000, seed: int = TRAIN_SEED, split: str = "train"
) -> LabelledImages:
    """One-shape scenes drawn with ``seed`` (shapes), or a digits split, with their labels."""
    attrs = data_attributes(data)
    if data == "shapes":
        ds = ShapesDataset(n, size, seed, ShapesConfig(two_shape_fraction=0.0))
        rows = [
            [attrs[a].index(scene.shapes[0].to_dict()[a]) for a in attrs] for scene in ds.scenes
        ]
        captions = [scene.caption for scene in ds.scenes]
        return LabelledImages(ds.pixels, captions, torch.tensor(rows), attrs)
    digits = DigitsDataset(size, split=split)  # type: ignore[arg-type]
    captions = [f"a handwritten {NUMBER_WORDS[int(y)]}" for y in digits.labels]
    return LabelledImages(to_uint8(digits.images), captions, digits.labels[:, None], attrs)


@dataclass
class FeatureNetConfig:
    data: str = "shapes"
    image_channels: int = 3
    image_size: int = 32
    width: int = 32
    feature_dim: int = 64
    attributes: dict[str, list[str]] = field(default_factory=lambda: data_attributes("shapes"))

    def __post_init__(self) -> None:
        if self.image_size < 8 or self.image_size % 8:
            raise GenlabError(
                f"the feature net needs a multiple of 8 pixels, got {self.image_size}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureNetConfig:
        return cls(**d)


class FeatureNet(nn.Module):
    """Three stages of two 3x3 convolutions (the second of stride 2), a linear layer to the
    feature vector, and one linear head per attribute on top of it.

    The last feature map (size/8 pixels a side) is flattened rather than pooled, so the features
    keep where things are, which position captions are about."""

    def __init__(self, config: FeatureNetConfig) -> None:
        super().__init__()
        self.config = config
        w, layers, ch = config.width, [], config.image_channels
        for out in (w, 2 * w, 4 * w):
            layers += [nn.Conv2d(ch, out, 3, padding=1), nn.GroupNorm(8, out), nn.SiLU()]
            layers += [nn.Conv2d(out, out, 3, stride=2, padding=1), nn.GroupNorm(8, out), nn.SiLU()]
            ch = out
        self.convs = nn.Sequential(*layers)
        side = config.image_size // 8
        self.embed = nn.Linear(4 * w * side * side, config.feature_dim)
        self.heads = nn.ModuleDict(
            {
                name: nn.Linear(config.feature_dim, len(values))
                for name, values in config.attributes.items()
            }
        )

    def _fit(self, images: Tensor) -> Tensor:
        c = self.config
        if images.shape[1] != c.image_channels:
            if images.shape[1] == 1 and c.image_channels == 3:
                images = images.expand(-1, 3, -1, -1)
            else:
                raise GenlabError(
                    f"the feature net reads {c.image_channels}-channel images, got "
                    f"{images.shape[1]}"
                )
        if images.shape[-1] != c.image_size or images.shape[-2] != c.image_size:
            images = F.interpolate(
                images, size=(c.image_size, c.image_size), mode="bilinear", antialias=True
            )
        return images

    def features(self, images: Tensor) -> Tensor:
        """Images (B, C, H, W) in [-1, 1] to feature vectors (B, feature_dim)."""
        return self.embed(self.convs(self._fit(images)).flatten(1))

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """Logits per attribute."""
        h = F.silu(self.features(images))
        return {name: head(h) for name, head in self.heads.items()}

    @torch.no_grad()
    def read(self, images: Tensor, batch_size: int = 256) -> dict[str, Tensor]:
        """The most likely value index of each attribute, (B,) per attribute."""
        was = self.training
        self.eval()
        device = next(self.parameters()).device
        out: dict[str, list[Tensor]] = {name: [] for name in self.heads}
        for start in range(0, len(images), batch_size):
            logits = self(images[start : start + batch_size].to(device).float())
            for name, value in logits.items():
                out[name].append(value.argmax(-1).cpu())
        self.train(was)
        return {name: torch.cat(v) for name, v in out.items()}

    @torch.no_grad()
    def extract(self, images: Tensor, batch_size: int = 256) -> Tensor:
        """Feature vectors (B, feature_dim) of many images, in batches."""
        was = self.training
        self.eval()
        device = next(self.parameters()).device
        feats = [
            self.features(images[s : s + batch_size].to(device).float()).cpu()
            for s in range(0, len(images), batch_size)
        ]
        self.train(was)
        return torch.cat(feats)


def attribute_step(model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict]:
    """Summed cross-entropy over the attribute heads, on images with a little noise."""
    pixels, labels = batch
    images = from_uint8(pixels)
    sigma = torch.rand(images.shape[0], 1, 1, 1, device=images.device) * MAX_NOISE
    logits = model(images + sigma * torch.randn_like(images))
    loss = images.new_zeros(())
    metrics: dict[str, Any] = {"samples": images.shape[0]}
    correct = torch.ones(images.shape[0], dtype=torch.bool, device=images.device)
    for i, (name, value) in enumerate(logits.items()):
        loss = loss + F.cross_entropy(value.float(), labels[:, i])
        hit = value.argmax(-1) == labels[:, i]
        metrics[f"acc_{name}"] = hit.float().mean()
        correct &= hit
    metrics["acc_all"] = correct.float().mean()
    return loss, metrics


def default_features_dir(data: str, size: int) -> Path:
    """Where ``genlab metrics train-features`` puts a feature net unless told otherwise:
    ``$GENLAB_HOME/features/DATA-SIZE`` (``GENLAB_HOME`` defaults to ``~/.cache/genlab``)."""
    home = Path(os.environ.get("GENLAB_HOME", Path.home() / ".cache" / "genlab"))
    return home / "features" / f"{data}-{size}"


def feature_training() -> TrainConfig:
    """The feature net's trainer settings: 1,500 steps of 128 images, about a minute on a CPU."""
    return TrainConfig(
        max_steps=1500,
        batch_size=128,
        lr=2e-3,
        warmup_steps=50,
        weight_decay=0.01,
        eval_every=500,
        eval_batches=4,
        checkpoint_every=500,
    )


@dataclass
class FeatureTrainConfig:
    """What ``genlab metrics train-features`` trains: the arguments of ``train_feature_net``."""

    data: str = "shapes"  # shapes or digits
    out: str | None = None  # folder; default: $GENLAB_HOME/features/DATA-SIZE
    size: int = 32  # image side in pixels
    n_images: int = 20_000  # shapes scenes to draw
    train: TrainConfig = field(default_factory=feature_training)


def train_feature_net(
    out: str | os.PathLike,
    data: str = "shapes",
    size: int = 32,
    n_images: int = 20_000,
    train: TrainConfig | None = None,
    width: int = 32,
    feature_dim: int = 64,
) -> dict[str, float]:
    """Train the feature net into the run folder ``out``; return its held-out accuracies (also
    written to ``out/accuracy.json``)."""
    train = train or feature_training()
    train_set = labelled_images(data, size, n_images, TRAIN_SEED, "train")
    eval_set = labelled_images(data, size, 2000, EVAL_SEED, "test")
    config = FeatureNetConfig(
        data=data,
        image_channels=train_set.pixels.shape[1],
        image_size=size,
        width=width,
        feature_dim=feature_dim,
        attributes=train_set.attributes,
    )
    seed_everything(train.seed)
    model = FeatureNet(config)
    trainer = Trainer(
        model,
        attribute_step,
        TensorBatchSource((train_set.pixels, train_set.labels), seed=train.seed),
        train,
        out,
        eval_data=TensorBatchSource((eval_set.pixels, eval_set.labels), seed=train.seed + 1),
        model_kind=KIND,
        model_config=config.to_dict(),
    )
    trainer.fit()
    accuracy = attribute_accuracy(model.cpu(), eval_set)
    atomic_write_json(Path(out) / ACCURACY_FILE, accuracy)
    return accuracy


def attribute_accuracy(model: FeatureNet, images: LabelledImages) -> dict[str, float]:
    """Share of clean held-out images each head reads right, and all of them at once."""
    read = model.read(from_uint8(images.pixels))
    hits = torch.stack([read[name] == images.labels[:, i] for i, name in enumerate(read)], 1)
    out = {f"acc_{name}": float(hits[:, i].float().mean()) for i, name in enumerate(read)}
    out["acc_all"] = float(hits.all(1).float().mean())
    out["n"] = float(len(hits))
    return out


register(Kind(KIND, FeatureNetConfig, FeatureNet))


def load_feature_net(folder: str | os.PathLike, device: str | torch.device = "cpu") -> FeatureNet:
    """Open a feature net written by :func:`train_feature_net` (in eval mode)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GenlabError(
            f"no feature network in {folder}: train one with 'genlab metrics train-features "
            f"--out {folder}'"
        )
    return load(folder, KIND, device).model  # type: ignore[return-value]


def feature_fid(net: FeatureNet, images: Tensor, reference: Tensor) -> float:
    """The Fréchet distance between two sets of images (B, C, H, W) in [-1, 1] under the net's
    features ("FID with genlab DATA features")."""
    mu1, sigma1 = feature_statistics(net.extract(images))
    mu2, sigma2 = feature_statistics(net.extract(reference))
    return frechet_distance(mu1, sigma1, mu2, sigma2)
