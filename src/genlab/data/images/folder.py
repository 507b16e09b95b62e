"""Your own folder of images (with an optional ``captions.jsonl``), and writing one.

``ImageFolderDataset`` reads the format ``export_images`` writes (PNG files and one
``{"file", "caption", "attributes"}`` row per image), so a built-in data set can be looked at,
edited or replaced by your own images of the same shape.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes
from genlab.data.images.common import (
    ImageItem,
    check_size,
    from_uint8,
    pil_to_png,
    pixels_to_pil,
    to_uint8,
)

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
        check_size(size, 1)
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
            (out / file).write_bytes(pil_to_png(pixels_to_pil(hwc)))
            files.append(file)
            row = {"file": file, "caption": item.caption, "attributes": item.attributes}
            lines.append(json.dumps(row, sort_keys=True) + "\n")
    atomic_write_bytes(out / CAPTIONS_FILE, "".join(lines).encode())
    return files
