"""What every image data set yields, and the pixel conversions between its tensors and files.

One convention lets every data set feed every image model: an item is ``ImageItem(image,
caption, attributes)`` with ``image`` a float32 tensor C x H x W in [-1, 1] (-1 black, +1
white: the range diffusion models add Gaussian noise to), ``caption`` a string and
``attributes`` a JSON-serialisable dict (what the caption was made from). ``to_uint8`` and
``from_uint8`` convert exactly to and from 8-bit pixels, so PNG files keep every value.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from genlab.core.errors import GenlabError


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


def pixels_to_pil(pixels: np.ndarray) -> Image.Image:
    """H x W x C uint8 pixels (C = 1 or 3) as a Pillow image ("L" or "RGB")."""
    return Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)


def pil_to_png(image: Image.Image) -> bytes:
    """The PNG file of a Pillow image, as bytes."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def to_pil(image: torch.Tensor) -> Image.Image:
    """One C x H x W image in [-1, 1] (C = 1 or 3) as a Pillow image ("L" or "RGB")."""
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise GenlabError(f"expected an image C x H x W with C = 1 or 3, got {tuple(image.shape)}")
    return pixels_to_pil(to_uint8(image.cpu()).permute(1, 2, 0).numpy())


def png_bytes(image: torch.Tensor) -> bytes:
    """Encode one C x H x W image in [-1, 1] as PNG (lossless, so ``to_uint8`` pixels survive)."""
    return pil_to_png(to_pil(image))


def check_size(size: int, smallest: int) -> None:
    """Refuse an image side outside ``[smallest, 256]`` pixels with a one-line error."""
    if not smallest <= size <= 256:
        raise GenlabError(f"image size must be between {smallest} and 256 pixels, got {size}")
