"""Built-in images: captioned shapes, scikit-learn's handwritten digits, and your own image folders.

Whether a text-to-image model follows its caption can be scored exactly only when the caption was
generated from known attributes. ``ShapesDataset`` draws scenes of one or two coloured shapes and
writes the caption from templates over the attributes it drew ("a small red circle on the left",
"a large blue star above a small green square"); every item carries those attributes (kind,
colour, size, position, centre, bounding box), so a later metric can check a generated image
against them. The shapes are 2D signed distance functions (Inigo Quilez, "2D distance functions",
https://iquilezles.org/articles/distfunctions2d/) evaluated on the pixel grid of many images at
once with numpy; the coverage ``clip(0.5 - distance, 0, 1)`` anti-aliases each edge over one pixel,
so 10,000 images of 32x32 take about a second on a laptop CPU.

Conventions shared by the three data sets (and relied on by the vision models):

- an item is ``ImageItem(image, caption, attributes)``: ``image`` is a float32 tensor C x H x W in
  [-1, 1] (-1 black, +1 white: the range diffusion models add Gaussian noise to), ``caption`` a
  string, ``attributes`` a JSON-serialisable dict (what the caption was made from);
- ``collate_images`` batches items for a ``DataLoader`` (images stacked, the rest as lists);
- ``to_uint8``, ``from_uint8`` and ``to_pil`` convert to and from 8-bit pixels for saving;
- ``export_images`` writes PNGs and a ``captions.jsonl`` that ``ImageFolderDataset`` reads back.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes

# ---------------------------------------------------------------------------------------------
# Items, batches and pixel conversions


class ImageItem(NamedTuple):
    """One example: ``image`` float32 C x H x W in [-1, 1], its ``caption`` and ``attributes``."""

    image: torch.Tensor
    caption: str
    attributes: dict[str, Any]


class ImageBatch(NamedTuple):
    """A batch: ``images`` B x C x H x W in [-1, 1]; captions and attributes as lists."""

    images: torch.Tensor
    captions: list[str]
    attributes: list[dict[str, Any]]


def collate_images(items: Sequence[ImageItem]) -> ImageBatch:
    """``collate_fn`` for a DataLoader (the default one cannot batch variable attribute lists)."""
    return ImageBatch(
        torch.stack([it.image for it in items]),
        [it.caption for it in items],
        [it.attributes for it in items],
    )


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats to uint8 pixels 0..255, same layout (values outside the range are clipped)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def from_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels 0..255 to float32 in [-1, 1], same layout; exact inverse of ``to_uint8``."""
    return pixels.float() / 127.5 - 1


def _pil(pixels: np.ndarray) -> Image.Image:
    """H x W x C uint8 pixels (C = 1 or 3) as a Pillow image ("L" or "RGB")."""
    return Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def to_pil(image: torch.Tensor) -> Image.Image:
    """One C x H x W image in [-1, 1] (C = 1 or 3) as a Pillow image ("L" or "RGB")."""
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise GenlabError(f"expected an image C x H x W with C = 1 or 3, got {tuple(image.shape)}")
    return _pil(to_uint8(image.cpu()).permute(1, 2, 0).numpy())


def png_bytes(image: torch.Tensor) -> bytes:
    """Encode one C x H x W image in [-1, 1] as PNG (lossless, so ``to_uint8`` pixels survive)."""
    return _png(to_pil(image))


# ---------------------------------------------------------------------------------------------
# Shapes: attributes, captions and placement

KINDS: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "star")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 135, 20),
    "yellow": (235, 200, 0),
    "green": (30, 160, 50),
    "cyan": (0, 185, 205),
    "blue": (30, 70, 220),
    "purple": (140, 50, 190),
}
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "center")

# Radius ranges as fractions of the image side, for scenes of one shape and of two. Small and
# large never overlap: a large shape has at least 1.7 times the area of a small one.
_RADIUS = {
    1: {"small": (0.11, 0.14), "large": (0.20, 0.24)},
    2: {"small": (0.10, 0.12), "large": (0.16, 0.19)},
}
_SQRT3 = math.sqrt(3.0)
# Extent of each kind around its centre of mass, in radii: (half width, above, below).
_EXTENT = {
    "circle": (1.0, 1.0, 1.0),
    "square": (0.85, 0.85, 0.85),
    "triangle": (1.0, 2 / _SQRT3, 1 / _SQRT3),  # equilateral, side 2r, apex up
    "diamond": (0.8, 1.0, 1.0),
    "cross": (0.95, 0.95, 0.95),
    "star": (math.sin(math.radians(72)), 1.0, math.cos(math.radians(36))),  # five points
}
_WHERE = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
_RELATION_WORDS = {
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above",
    "below": "below",
}


@dataclass(frozen=True)
class Shape:
    """One drawn shape; ``center`` is its centre of mass in pixels (x right, y down)."""

    kind: str
    color: str
    size: str  # "small" | "large"
    position: str  # the image region (one shape) or half (two shapes) it was placed in
    center: tuple[float, float]
    radius: float  # pixels; the scale every kind is drawn at (see _EXTENT)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in pixel coordinates (pixel i covers [i, i + 1])."""
        half, up, down = (e * self.radius for e in _EXTENT[self.kind])
        x, y = self.center
        return (x - half, y - up, x + half, y + down)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "color": self.color,
            "size": self.size,
            "position": self.position,
            "center": [round(v, 3) for v in self.center],
            "radius": round(self.radius, 3),
            "bbox": [round(v, 3) for v in self.bbox],
        }


@dataclass(frozen=True)
class Scene:
    """One image: its shapes in caption order and, for two, how the first relates to the second."""

    shapes: tuple[Shape, ...]
    relation: str | None = None  # "left of" | "right of" | "above" | "below" (two shapes)

    @property
    def caption(self) -> str:
        """The caption, from one template per layout, stating every attribute but the centre."""

        def phrase(s: Shape) -> str:
            return f"a {s.size} {s.color} {s.kind}"

        if self.relation is None:
            (s,) = self.shapes
            return f"{phrase(s)} {_WHERE[s.position]}"
        a, b = self.shapes
        return f"{phrase(a)} {_RELATION_WORDS[self.relation]} {phrase(b)}"

    def to_dict(self) -> dict[str, Any]:
        return {"shapes": [s.to_dict() for s in self.shapes], "relation": self.relation}


@dataclass(frozen=True)
class ShapesConfig:
    """What scenes may contain: restrict ``kinds``/``colors`` to hold combinations out."""

    kinds: tuple[str, ...] = KINDS
    colors: tuple[str, ...] = tuple(COLORS)
    two_shape_fraction: float = 0.5
    background: tuple[int, int, int] = (255, 255, 255)

    def __post_init__(self) -> None:
        if not self.kinds or set(self.kinds) - set(KINDS):
            raise GenlabError(f"shape kinds must be a non-empty subset of {', '.join(KINDS)}")
        if len(self.colors) < 2 or set(self.colors) - set(COLORS):
            raise GenlabError(f"colors must be at least two of {', '.join(COLORS)}")
        if not 0.0 <= self.two_shape_fraction <= 1.0:
            raise GenlabError(
                f"two_shape_fraction must be in [0, 1], got {self.two_shape_fraction}"
            )


def _check_size(size: int, smallest: int) -> None:
    if not smallest <= size <= 256:
        raise GenlabError(f"image size must be between {smallest} and 256 pixels, got {size}")


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _axis(rng: np.random.Generator, size: int, region: str, before: float, after: float) -> float:
    """A centre coordinate on one axis, inside ``region``'s third of the image, the whole shape
    (``before``/``after`` pixels on either side of its centre) inside the frame."""
    third, slack, margin = size / 3, 0.25, 0.03 * size
    lo, hi = {
        "low": (0.0, third - slack),
        "mid": (third + slack, 2 * third - slack),
        "high": (2 * third + slack, float(size)),
    }[region]
    return _uniform(rng, max(lo, before + margin), min(hi, size - after - margin))


def _one_shape(rng: np.random.Generator, size: int, cfg: ShapesConfig) -> Scene:
    kind = str(rng.choice(cfg.kinds))
    color = str(rng.choice(cfg.colors))
    big = str(rng.choice(SIZES))
    position = str(rng.choice(POSITIONS))
    r = _uniform(rng, *_RADIUS[1][big]) * size
    half, up, down = (e * r for e in _EXTENT[kind])
    x_region, y_region = {
        "left": ("low", "mid"),
        "right": ("high", "mid"),
        "top": ("mid", "low"),
        "bottom": ("mid", "high"),
        "center": ("mid", "mid"),
    }[position]
    x = _axis(rng, size, x_region, half, half)
    y = _axis(rng, size, y_region, up, down)
    return Scene((Shape(kind, color, big, position, (x, y), r),))


def _two_shapes(rng: np.random.Generator, size: int, cfg: ShapesConfig) -> Scene:
    horizontal = bool(rng.random() < 0.5)
    colors = [str(c) for c in rng.choice(cfg.colors, size=2, replace=False)]
    gap, margin = 0.02 * size, 0.03 * size
    shapes = []
    for i, color in enumerate(colors):  # i = 0: left/top half, i = 1: right/bottom half
        kind = str(rng.choice(cfg.kinds))
        big = str(rng.choice(SIZES))
        r = _uniform(rng, *_RADIUS[2][big]) * size
        half, up, down = (e * r for e in _EXTENT[kind])
        before, after = (half, half) if horizontal else (up, down)
        if i == 0:
            main = _uniform(rng, before + margin, size / 2 - gap / 2 - after)
        else:
            main = _uniform(rng, size / 2 + gap / 2 + before, size - after - margin)
        cross = _axis(rng, size, "mid", *((up, down) if horizontal else (half, half)))
        position = ("left", "right")[i] if horizontal else ("top", "bottom")[i]
        center = (main, cross) if horizontal else (cross, main)
        shapes.append(Shape(kind, color, big, position, center, r))
    if rng.random() < 0.5:  # which of the two the caption names first
        return Scene(tuple(shapes), "left of" if horizontal else "above")
    return Scene(tuple(reversed(shapes)), "right of" if horizontal else "below")


def sample_scenes(
    n: int, size: int = 32, seed: int = 0, config: ShapesConfig | None = None
) -> list[Scene]:
    """``n`` random scenes; scene ``i`` depends only on ``(seed, i)``, so a longer run extends a
    shorter one instead of reshuffling it."""
    _check_size(size, 16)
    if n < 0:
        raise GenlabError(f"the number of images must be >= 0, got {n}")
    cfg = config or ShapesConfig()
    scenes = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        two = rng.random() < cfg.two_shape_fraction
        scenes.append(_two_shapes(rng, size, cfg) if two else _one_shape(rng, size, cfg))
    return scenes


# ---------------------------------------------------------------------------------------------
# Shapes: rendering with signed distances (negative inside; x right, y up, in pixels)


def _sd_box(x: np.ndarray, y: np.ndarray, hx: np.ndarray, hy: np.ndarray) -> np.ndarray:
    dx, dy = np.abs(x) - hx, np.abs(y) - hy
    outside = np.hypot(np.maximum(dx, 0), np.maximum(dy, 0))
    return outside + np.minimum(np.maximum(dx, dy), 0)


def _sd_circle(x: np.ndarray, y: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.hypot(x, y) - r


def _sd_square(x: np.ndarray, y: np.ndarray, r: np.ndarray) -> np.ndarray:
    h = _EXTENT["square"][0] * r
    return _sd_box(x, y, h, h)


def _sd_cross(x: np.ndarray, y: np.ndarray, r: np.ndarray) -> np.ndarray:
    arm, thick = _EXTENT["cross"][0] * r, 0.32 * r
    return np.minimum(_sd_box(x, y, arm, thick), _sd_box(x, y, thick, arm))


def _sd_triangle(x: np.ndarray, y: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Equilateral triangle of side 2r, centroid at the origin, apex up (Quilez's sdEquilateral
    Triangle: fold into one sixth by symmetry, then the distance to one edge)."""
    k = _SQRT3
    x = np.abs(x) - r
    y = y + r / k
    fold = x + k * y > 0
    x, y = np.where(fold, (x - k * y) / 2, x), np.where(fold, (-k * x - y) / 2, y)
    x = x - np.clip(x, -2 * r, 0)
    return -np.hypot(x, y) * np.sign(y)


def _sd_diamond(x: np.ndarray, y: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Rhombus with half diagonals (bx, by) (Quilez's sdRhombus)."""
    bx, by = _EXTENT["diamond"][0] * r, r
    x, y = np.abs(x), np.abs(y)
    h = np.clip(((bx - 2 * x) * bx - (by - 2 * y) * by) / (bx * bx + by * by), -1, 1)
    d = np.hypot(x - 0.5 * bx * (1 - h), y - 0.5 * by * (1 + h))
    return d * np.sign(x * by + y * bx - bx * by)


_STAR_INNER = 0.45  # inner radius over outer; 0.38 is the pentagram, rounder reads better small


def _sd_star(x: np.ndarray, y: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Five-pointed star of outer radius r, one point up (Quilez's sdStar5: reflect into one
    tenth of the star, then the distance to the segment from a tip to an inner corner)."""
    k1x, k1y = 0.809016994375, -0.587785252292
    k2x, k2y = -k1x, k1y
    x = np.abs(x)
    d = 2 * np.maximum(k1x * x + k1y * y, 0)
    x, y = x - d * k1x, y - d * k1y
    d = 2 * np.maximum(k2x * x + k2y * y, 0)
    x, y = x - d * k2x, y - d * k2y
    x = np.abs(x)
    y = y - r
    bax, bay = -_STAR_INNER * k1y, _STAR_INNER * k1x - 1.0
    h = np.clip((x * bax + y * bay) / (bax * bax + bay * bay), 0, r)
    return np.hypot(x - bax * h, y - bay * h) * np.sign(y * bax - x * bay)


_SDF: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "circle": _sd_circle,
    "square": _sd_square,
    "triangle": _sd_triangle,
    "diamond": _sd_diamond,
    "cross": _sd_cross,
    "star": _sd_star,
}


def render_scenes(
    scenes: Sequence[Scene],
    size: int = 32,
    background: tuple[int, int, int] = (255, 255, 255),
    chunk: int = 2048,
) -> np.ndarray:
    """Draw scenes as uint8 pixels N x H x W x 3: per chunk of scenes, all shapes of one kind at
    once, each in a square window just big enough for the largest of them and its soft edge."""
    _check_size(size, 16)
    out = np.empty((len(scenes), size, size, 3), dtype=np.uint8)
    for start in range(0, len(scenes), chunk):
        part = scenes[start : start + chunk]
        canvas = np.empty((len(part), size, size, 3), dtype=np.float32)
        canvas[:] = np.asarray(background, dtype=np.float32)
        # A scene holds at most one shape per slot, so a slot's shapes index distinct images.
        for slot in range(max((len(s.shapes) for s in part), default=0)):
            for kind, sdf in _SDF.items():
                idx = [i for i, s in enumerate(part) if len(s.shapes) > slot]
                idx = [i for i in idx if part[i].shapes[slot].kind == kind]
                if not idx:
                    continue
                shapes = [part[i].shapes[slot] for i in idx]
                cx = np.array([s.center[0] for s in shapes], dtype=np.float32)
                cy = np.array([s.center[1] for s in shapes], dtype=np.float32)
                r = np.array([s.radius for s in shapes], dtype=np.float32)
                # window: e pixels either side of the centre's pixel, e >= extent + 1
                e = math.ceil(max(_EXTENT[kind]) * float(r.max())) + 1
                w = min(2 * e + 1, size)
                x0 = np.clip(np.floor(cx).astype(np.int64) - e, 0, size - w)
                y0 = np.clip(np.floor(cy).astype(np.int64) - e, 0, size - w)
                cols = x0[:, None] + np.arange(w)  # m x w pixel indices
                rows = y0[:, None] + np.arange(w)
                x = (cols + 0.5 - cx[:, None])[:, None, :]
                y = (cy[:, None] - rows - 0.5)[:, :, None]  # flip: distance functions have y up
                x, y = np.broadcast_arrays(x.astype(np.float32), y.astype(np.float32))
                coverage = np.clip(0.5 - sdf(x, y, r[:, None, None]), 0, 1)[..., None]
                rgb = np.array([COLORS[s.color] for s in shapes], dtype=np.float32)
                at = (np.asarray(idx)[:, None, None], rows[:, :, None], cols[:, None, :])
                canvas[at] += coverage * (rgb[:, None, None, :] - canvas[at])
        out[start : start + len(part)] = np.rint(canvas)
    return out


class ShapesDataset(Dataset):
    """``n`` seeded images of one or two coloured shapes with captions and attributes.

    All images are drawn at construction (10k at 32x32: about a second, 30 MB) and kept as
    uint8; attributes are ``Scene.to_dict()``: ``{"shapes": [{kind, color, size, position,
    center, radius, bbox}, ...], "relation": None | "left of" | "right of" | "above" | "below"}``
    with the shapes in the order the caption names them.
    """

    def __init__(
        self, n: int, size: int = 32, seed: int = 0, config: ShapesConfig | None = None
    ) -> None:
        self.size = size
        self.config = config or ShapesConfig()
        self.scenes = sample_scenes(n, size, seed, self.config)
        pixels = render_scenes(self.scenes, size, self.config.background)
        self.pixels = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()  # N x 3 x H x W

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> ImageItem:
        scene = self.scenes[i]
        return ImageItem(from_uint8(self.pixels[i]), scene.caption, scene.to_dict())


# ---------------------------------------------------------------------------------------------
# Digits

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 8x8 digits (values 0..16) bundled inside scikit-learn: read from the installed
    package, never downloaded."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise GenlabError(
            "the digits data set comes with scikit-learn, which is not installed: "
            "pip install 'genlab[digits]' (or scikit-learn)"
        ) from e
    bunch = load_digits()
    return np.asarray(bunch.images, dtype=np.float32), np.asarray(bunch.target, dtype=np.int64)


class DigitsDataset(Dataset):
    """scikit-learn's handwritten digits (UCI optical digits: 8x8, 17 grey levels), upsampled
    bilinearly to ``size``; white ink (+1) on black (-1); caption "a handwritten seven".

    ``split``: "all" (1,797), or a fixed "train"/"test" split (every fifth image is test), so
    metrics can compare samples with digits a model never saw. Attributes:
    ``{"label": 7, "index": row in scikit-learn's array}``.
    """

    def __init__(
        self,
        size: int = 32,
        split: Literal["all", "train", "test"] = "all",
        channels: Literal[1, 3] = 1,
    ) -> None:
        _check_size(size, 8)
        if split not in ("all", "train", "test"):
            raise GenlabError(f"digits split must be all, train or test, got {split!r}")
        if channels not in (1, 3):
            raise GenlabError(f"digits channels must be 1 or 3, got {channels}")
        images, labels = _load_sklearn_digits()
        index = np.arange(len(labels))
        if split != "all":
            index = index[(index % 5 == 4) == (split == "test")]
        x = torch.from_numpy(images[index])[:, None] / 8.0 - 1.0  # 0..16 -> [-1, 1]
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        self.images = x.clamp(-1, 1).expand(-1, channels, -1, -1).contiguous()
        self.labels = torch.from_numpy(labels[index])
        self.index = index

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> ImageItem:
        label = int(self.labels[i])
        attributes = {"label": label, "index": int(self.index[i])}
        return ImageItem(self.images[i], f"a handwritten {NUMBER_WORDS[label]}", attributes)


# ---------------------------------------------------------------------------------------------
# Your own folder of images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
CAPTIONS_FILE = "captions.jsonl"


def _read_captions(root: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """``(file, caption, attributes)`` per row of ``root/captions.jsonl``, in file order."""
    path = root / CAPTIONS_FILE
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise GenlabError(f"{where} is not valid JSON ({e.msg}); fix or remove it") from e
        if not isinstance(row, dict) or not isinstance(row.get("file"), str):
            raise GenlabError(f'{where}: expected {{"file": ..., "caption": ...}}')
        if not isinstance(row.get("caption"), str):
            raise GenlabError(f"{where}: the caption of {row['file']} must be a string")
        if not isinstance(row.get("attributes", {}), dict):
            raise GenlabError(f"{where}: attributes of {row['file']} must be a JSON object")
        file = Path(row["file"])
        if file.is_absolute() or ".." in file.parts or not (root / file).is_file():
            raise GenlabError(f"{where} names {file}, which is not a file in {root}")
        rows.append((file.as_posix(), row["caption"], row.get("attributes", {})))
    if not rows:
        raise GenlabError(f"{path} lists no images: add rows or delete it to use every image")
    return rows


class ImageFolderDataset(Dataset):
    """Your images, scaled so the shorter side is ``size`` and centre-cropped to a square.

    With a ``root/captions.jsonl`` (``{"file": "cats/1.png", "caption": "a cat"}`` per line,
    optionally ``"attributes": {...}``; paths relative to ``root``), the data set is exactly its
    rows, in order (an image may appear in several rows, one per caption; files it does not list,
    such as a contact sheet, are left out). Without one, it is every png, jpg, bmp, gif and webp
    under ``root`` (sub-folders included, sorted by path), each captioned "". Attributes are
    ``{"file": ..., **attributes}``, so a folder written by ``export_images`` reads back with the
    attributes it was made from. Transparent pixels are laid on white.
    """

    def __init__(self, root: str | os.PathLike, size: int = 32, channels: Literal[1, 3] = 3):
        self.root = Path(root)
        if not self.root.is_dir():
            raise GenlabError(f"image folder not found: {self.root}")
        _check_size(size, 1)
        if channels not in (1, 3):
            raise GenlabError(f"channels must be 1 or 3, got {channels}")
        self.size, self.channels = size, channels
        if (self.root / CAPTIONS_FILE).is_file():
            self.rows = _read_captions(self.root)
        else:
            self.rows = [
                (p.relative_to(self.root).as_posix(), "", {})
                for p in sorted(self.root.rglob("*"))
                if p.is_file()
                and p.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(self.root).parts)
            ]
        if not self.rows:
            raise GenlabError(
                f"no images in {self.root} (looked for {', '.join(IMAGE_SUFFIXES)}, sub-folders "
                "included): put image files there or point to another folder"
            )
        for file in {file for file, _, _ in self.rows}:  # headers only: fail before training
            self._open(file).close()

    def _open(self, file: str) -> Image.Image:
        try:
            return Image.open(self.root / file)
        except (UnidentifiedImageError, OSError) as e:
            raise GenlabError(f"cannot read image {self.root / file}: {e}") from e

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> ImageItem:
        file, caption, attributes = self.rows[i]
        with self._open(file) as img:
            try:
                img.load()
            except OSError as e:
                raise GenlabError(f"cannot decode image {self.root / file}: {e}") from e
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                rgba = img.convert("RGBA")
                img = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
            img = img.convert("RGB" if self.channels == 3 else "L")
        img = ImageOps.fit(img, (self.size, self.size), Image.Resampling.BICUBIC)
        pixels = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
        pixels = pixels[None] if pixels.dim() == 2 else pixels.permute(2, 0, 1)
        return ImageItem(from_uint8(pixels), caption, {"file": file, **attributes})


# ---------------------------------------------------------------------------------------------
# Writing a data set to disk


def export_images(dataset: Dataset, out: str | os.PathLike, n: int | None = None) -> list[str]:
    """Write the first ``n`` items as ``out/images/000000.png ...`` and ``out/captions.jsonl``
    (``{"file", "caption", "attributes"}`` per line, readable by ``ImageFolderDataset``); return
    the image paths relative to ``out``.

    The PNGs are plain writes (thousands of fsyncs would take minutes); ``captions.jsonl`` is
    written last and atomically, so its presence means the folder is complete.
    """
    out = Path(out)
    count = len(dataset) if n is None else min(n, len(dataset))  # type: ignore[arg-type]
    (out / "images").mkdir(parents=True, exist_ok=True)
    files, lines = [], []
    for start in range(0, count, 256):  # convert in batches: one tensor op per 256 images
        items = [dataset[i] for i in range(start, min(start + 256, count))]
        pixels = to_uint8(torch.stack([it.image for it in items])).permute(0, 2, 3, 1).numpy()
        for i, (item, hwc) in enumerate(zip(items, pixels, strict=True), start=start):
            file = f"images/{i:06d}.png"
            (out / file).write_bytes(_png(_pil(hwc)))
            files.append(file)
            row = {"file": file, "caption": item.caption, "attributes": item.attributes}
            lines.append(json.dumps(row, sort_keys=True) + "\n")
    atomic_write_bytes(out / CAPTIONS_FILE, "".join(lines).encode())
    return files
