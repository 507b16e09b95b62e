"""``ShapesDataset``: captioned scenes drawn with 2D signed distance functions, all at once.

Each shape is a signed distance function (Inigo Quilez, "2D distance functions",
https://iquilezles.org/articles/distfunctions2d/) evaluated with numpy on the pixel grids of many
images at once; the coverage ``clip(0.5 - distance, 0, 1)`` anti-aliases each edge over one pixel,
so 10,000 images of 32x32 take about a second on a laptop CPU. What is drawn (and its caption)
comes from :mod:`genlab.data.images.scenes`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from genlab.data.images.common import ImageItem, check_size, from_uint8
from genlab.data.images.scenes import (
    COLORS,
    EXTENT,
    Scene,
    ShapesConfig,
    sample_scenes,
    scenes_for_captions,
)

# Signed distances: negative inside; x right, y up, in pixels.
_SQRT3 = math.sqrt(3.0)


def _sd_box(x: np.ndarray, y: np.ndarray, hx: np.ndarray, hy: np.ndarray) -> np.ndarray:
    dx, dy = np.abs(x) - hx, np.abs(y) - hy
    outside = np.hypot(np.maximum(dx, 0), np.maximum(dy, 0))
    return outside + np.minimum(np.maximum(dx, dy), 0)


def _sd_circle(x: np.ndarray, y: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.hypot(x, y) - r


def _sd_square(x: np.ndarray, y: np.ndarray, r: np.ndarray) -> np.ndarray:
    h = EXTENT["square"][0] * r
    return _sd_box(x, y, h, h)


def _sd_cross(x: np.ndarray, y: np.ndarray, r: np.ndarray) -> np.ndarray:
    arm, thick = EXTENT["cross"][0] * r, 0.32 * r
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
    bx, by = EXTENT["diamond"][0] * r, r
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
    check_size(size, 16)
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
                e = math.ceil(max(EXTENT[kind]) * float(r.max())) + 1
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
        self._draw(sample_scenes(n, size, seed, self.config))

    @classmethod
    def for_captions(
        cls,
        captions: Sequence[str],
        size: int = 32,
        seed: int = 0,
        config: ShapesConfig | None = None,
    ) -> ShapesDataset:
        """Fresh scenes showing exactly ``captions`` (image ``i``'s caption is ``captions[i]``;
        its centres and radii come from ``(seed, i)``): real images for the captions a model
        was asked for. ``config`` gives only the background."""
        ds = cls.__new__(cls)
        ds.size, ds.config = size, config or ShapesConfig()
        ds._draw(scenes_for_captions(captions, size, seed))
        return ds

    def _draw(self, scenes: list[Scene]) -> None:
        self.scenes = scenes
        pixels = render_scenes(scenes, self.size, self.config.background)
        self.pixels = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()  # N x 3 x H x W

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> ImageItem:
        scene = self.scenes[i]
        return ImageItem(from_uint8(self.pixels[i]), scene.caption, scene.to_dict())
