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

import torch

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes
from genlab.data.images.common import png_bytes


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
