"""Sample grids (contact sheets): many images in one PNG, the way every image model shows samples.

Images follow genlab's convention (float C x H x W in [-1, 1], see
:mod:`genlab.data.images.common`); the grid is laid out row by row like torchvision's
``make_grid`` and can be enlarged by an integer factor with nearest-neighbour sampling, so 32x32
samples stay crisp when viewed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes
from genlab.data.images.common import from_uint8, png_bytes


def make_grid(
    images: torch.Tensor | Sequence[torch.Tensor],
    nrow: int = 8,
    padding: int = 2,
    pad_value: float = 0.0,
) -> torch.Tensor:
    """Tile B images (B x C x H x W, or a list of C x H x W) into one C x H' x W' image with
    ``nrow`` images per row and ``padding`` pixels of ``pad_value`` around each (the default 0.0
    is mid-grey, visible on white and on black backgrounds)."""
    batch = torch.stack(list(images)) if not isinstance(images, torch.Tensor) else images
    if batch.dim() != 4 or batch.shape[0] == 0:
        raise GenlabError(f"expected a non-empty batch B x C x H x W, got {tuple(batch.shape)}")
    if nrow < 1 or padding < 0:
        raise GenlabError(f"nrow must be >= 1 and padding >= 0, got {nrow} and {padding}")
    b, c, h, w = batch.shape
    cols = min(nrow, b)
    rows = math.ceil(b / cols)
    cell_h, cell_w = h + padding, w + padding
    grid = batch.new_full((c, rows * cell_h + padding, cols * cell_w + padding), pad_value)
    for i in range(b):
        y, x = padding + (i // cols) * cell_h, padding + (i % cols) * cell_w
        grid[:, y : y + h, x : x + w] = batch[i]
    return grid


def save_grid(
    images: torch.Tensor | Sequence[torch.Tensor],
    path: str | os.PathLike,
    nrow: int = 8,
    padding: int = 2,
    pad_value: float = 0.0,
    scale: int = 1,
) -> torch.Tensor:
    """Write ``make_grid(images, ...)`` as a PNG (atomically), enlarged ``scale`` times; return
    the grid (before enlarging)."""
    if scale < 1:
        raise GenlabError(f"scale must be an integer >= 1, got {scale}")
    grid = make_grid(images, nrow, padding, pad_value).detach().cpu().float()
    big = grid.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    atomic_write_bytes(path, png_bytes(big))
    return grid


def read_grid(
    path: str | os.PathLike, side: int, nrow: int = 8, padding: int = 2, scale: int = 1
) -> torch.Tensor:
    """The images of a grid ``save_grid`` wrote (square, ``side`` pixels, same ``nrow``,
    ``padding`` and ``scale``), B x C x side x side in [-1, 1]; a page that keeps rows of an
    earlier run keeps their samples this way. B counts whole cells, empty ones included."""
    try:
        with Image.open(path) as img:
            pixels = np.asarray(img)
    except (OSError, UnidentifiedImageError) as err:
        raise GenlabError(f"cannot read the grid {path}: {err}; write it again") from err
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    grid = torch.from_numpy(pixels[::scale, ::scale].copy()).permute(2, 0, 1)
    cell = side + padding
    rows, extra_h = divmod(grid.shape[1] - padding, cell)
    cols, extra_w = divmod(grid.shape[2] - padding, cell)
    if extra_h or extra_w or cols > nrow:
        raise GenlabError(
            f"{path} is not a grid of {side}-pixel images, {nrow} a row, padding {padding}, "
            f"scale {scale} (got {grid.shape[1]}x{grid.shape[2]} pixels after unscaling)"
        )
    cells = [
        grid[:, padding + r * cell : r * cell + cell, padding + c * cell : c * cell + cell]
        for r in range(rows)
        for c in range(cols)
    ]
    return from_uint8(torch.stack(cells))
