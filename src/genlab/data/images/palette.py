"""iGPT's pixel tokens: each pixel of a small image is the index of its nearest palette colour.

Image GPT (Chen et al., 2020, "Generative Pretraining from Pixels") models images as sequences
of pixels, too long for attention at full size and with three numbers per pixel. It shrinks
both: images are downsampled (to 32x32 and lower), and every (R, G, B) pixel is replaced by the
nearest of 512 colours found by k-means on training pixels (their "9-bit palette"), so a pixel
is one token. :class:`PixelPalette` does the same at genlab's sizes: area downsampling to a
``grid`` x ``grid`` image, k-means (k-means++ seeding, Lloyd's iterations, all from one seed)
and nearest-colour coding. Colours are kept as 8-bit values, so an image made of palette colours
comes back exactly and the palette file holds integers.
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.data.images.common import from_uint8, to_uint8

MAX_FIT_PIXELS = 1 << 17  # k-means reads at most this many training pixels (drawn by the seed)
MAX_ITERATIONS = 100  # Lloyd's iterations, unless the assignment settles first


class PixelPalette:
    """``num_codes`` colours (uint8, (K, C)) and the ``grid`` images are coded at."""

    def __init__(self, colors: Tensor, grid: int) -> None:
        if colors.dtype != torch.uint8 or colors.ndim != 2 or len(colors) < 1:
            raise GenlabError("a palette is a non-empty uint8 tensor of colours (K, channels)")
        if grid < 1:
            raise GenlabError(f"the palette's grid must be positive, got {grid}")
        self.colors = colors
        self.grid = grid

    @property
    def num_codes(self) -> int:
        return len(self.colors)

    @property
    def channels(self) -> int:
        return self.colors.shape[1]

    @classmethod
    def fit(cls, images: Tensor, k: int, grid: int, seed: int = 0) -> PixelPalette:
        """The k-means palette of ``images`` (N, C, H, W) in [-1, 1] downsampled to ``grid``.

        Deterministic given ``seed``. With at most ``k`` distinct (downsampled) colours, those
        colours are the palette; either way it is sorted, so ``num_codes`` may be below ``k``
        when cluster centres round to the same 8-bit colour.
        """
        if k < 1 or grid < 1:
            raise GenlabError(f"a palette needs k >= 1 colours and grid >= 1, got {k} and {grid}")
        g = torch.Generator().manual_seed(seed)
        pixels = _pixels(_downsample(images, grid)).double()
        if len(pixels) > MAX_FIT_PIXELS:
            pixels = pixels[torch.randperm(len(pixels), generator=g)[:MAX_FIT_PIXELS]]
        distinct = pixels.unique(dim=0)
        centres = distinct if len(distinct) <= k else _kmeans(pixels, k, g)
        return cls(to_uint8(centres).unique(dim=0), grid)

    def encode(self, images: Tensor) -> Tensor:
        """Codes (B, grid, grid) int64 of ``images`` (B, C, H, W) in [-1, 1]."""
        if images.ndim != 4 or images.shape[1] != self.channels:
            raise GenlabError(
                f"images of shape {tuple(images.shape)} do not fit a {self.channels}-channel "
                "palette: give (B, C, H, W) with the channels it was fitted on"
            )
        pixels = _pixels(_downsample(images, self.grid))
        palette = from_uint8(self.colors).to(pixels.device)
        codes = _nearest(pixels, palette)
        return codes.view(len(images), self.grid, self.grid)

    def decode(self, codes: Tensor, size: int) -> Tensor:
        """Images (B, C, size, size) in [-1, 1] of ``codes`` (B, grid, grid), each pixel
        upsampled as a block (nearest)."""
        if codes.ndim != 3 or codes.shape[1:] != (self.grid, self.grid):
            raise GenlabError(
                f"codes of shape {tuple(codes.shape)} are not (B, {self.grid}, {self.grid})"
            )
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.num_codes):
            raise GenlabError(f"codes must lie in [0, {self.num_codes}) for this palette")
        colors = from_uint8(self.colors).to(codes.device)[codes]  # (B, g, g, C)
        return F.interpolate(colors.permute(0, 3, 1, 2), size=(size, size), mode="nearest")

    def to_json(self) -> str:
        return json.dumps({"grid": self.grid, "colors": self.colors.tolist()})

    @classmethod
    def from_json(cls, text: str) -> PixelPalette:
        data = json.loads(text)
        if not isinstance(data, dict) or set(data) != {"grid", "colors"}:
            raise GenlabError("not a genlab pixel palette (expected grid and colors)")
        colors = torch.tensor(data["colors"])
        if colors.ndim != 2 or colors.numel() == 0 or colors.min() < 0 or colors.max() > 255:
            raise GenlabError("a palette's colors must be rows of 8-bit values (0..255)")
        return cls(colors.to(torch.uint8), int(data["grid"]))


def _downsample(images: Tensor, grid: int) -> Tensor:
    return F.interpolate(images.float(), size=(grid, grid), mode="area")


def _pixels(images: Tensor) -> Tensor:
    """(B, C, H, W) -> (B * H * W, C), in raster order."""
    return images.permute(0, 2, 3, 1).reshape(-1, images.shape[1])


def _nearest(points: Tensor, centres: Tensor) -> Tensor:
    """Index of the nearest centre of each point (exact distances, ties to the lower index)."""
    distance = torch.cdist(points, centres, compute_mode="donot_use_mm_for_euclid_dist")
    return distance.argmin(dim=1)


def _kmeans(points: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k centres of ``points`` (N, C), N > k distinct: k-means++ seeding (Arthur &
    Vassilvitskii, 2007), then Lloyd's iterations; an empty cluster keeps its centre."""
    first = torch.randint(len(points), (1,), generator=generator)
    centres = [points[first]]
    d2 = (points - centres[0]).pow(2).sum(1)
    for _ in range(k - 1):
        pick = torch.multinomial(d2, 1, generator=generator)
        centres.append(points[pick])
        d2 = torch.minimum(d2, (points - centres[-1]).pow(2).sum(1))
    centre = torch.cat(centres)
    for _ in range(MAX_ITERATIONS):
        assign = _nearest(points, centre)
        sums = torch.zeros_like(centre).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=k)[:, None]
        moved = torch.where(counts > 0, sums / counts.clamp(min=1), centre)
        if torch.equal(moved, centre):
            break
        centre = moved
    return centre
