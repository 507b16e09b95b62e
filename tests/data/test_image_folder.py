"""Image folders: resize and crop, captions.jsonl as the index, one-line errors, export and back."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.core.errors import GenlabError
from genlab.data.images import ImageFolderDataset, ShapesDataset, export_images, to_uint8


def _stripes(path, colors, size=(60, 20)) -> None:
    """An image of vertical stripes, one per colour, left to right."""
    w, h = size
    img = np.zeros((h, w, 3), dtype=np.uint8)
    for k, c in enumerate(colors):
        img[:, k * w // len(colors) : (k + 1) * w // len(colors)] = c
    Image.fromarray(img).save(path)


def test_folder_resizes_and_crops_every_image(tmp_path) -> None:
    _stripes(tmp_path / "wide.png", [(0, 0, 255), (255, 0, 0), (0, 255, 0)])  # 60 x 20
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (30, 50), (10, 200, 30)).save(tmp_path / "sub" / "tall.jpg", quality=95)
    Image.new("RGBA", (16, 16), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    (tmp_path / "notes.txt").write_text("not an image")

    ds = ImageFolderDataset(tmp_path, size=16)
    assert [ds[i].attributes for i in range(3)] == [
        {"file": "clear.png"},
        {"file": "sub/tall.jpg"},
        {"file": "wide.png"},
    ]
    clear, tall, wide = ds[0], ds[1], ds[2]
    assert {clear.caption, tall.caption, wide.caption} == {""}
    assert wide.image.shape == (3, 16, 16)
    red = to_uint8(wide.image)  # the centre crop of blue|red|green keeps the red middle
    assert (red[0] > 240).all() and (red[1] < 15).all() and (red[2] < 15).all()
    assert (to_uint8(tall.image)[1] > 190).all()
    assert torch.equal(clear.image, torch.ones(3, 16, 16))  # transparent becomes white
    gray = ImageFolderDataset(tmp_path, size=8, channels=1)
    assert gray[2].image.shape == (1, 8, 8)


def test_folder_with_captions_is_exactly_its_rows(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    for name, colour in (("a.png", (255, 0, 0)), ("sub/b.png", (0, 0, 255)), ("sheet.png", 0)):
        Image.new("RGB", (8, 8), colour).save(tmp_path / name)
    rows = [
        {"file": "sub/b.png", "caption": "blue", "attributes": {"colour": "blue"}},
        {"file": "a.png", "caption": "red"},
        {"file": "sub/b.png", "caption": "a blue square"},  # a second caption, same image
    ]
    (tmp_path / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = ImageFolderDataset(tmp_path, size=8)
    assert len(ds) == 3  # sheet.png is not listed, so not in the data set
    assert [ds[i].caption for i in range(3)] == ["blue", "red", "a blue square"]
    assert ds[0].attributes == {"file": "sub/b.png", "colour": "blue"}
    assert ds[1].attributes == {"file": "a.png"}
    assert torch.equal(ds[0].image, ds[2].image)
    assert (to_uint8(ds[1].image)[0] == 255).all()


def test_folder_errors_are_one_line(tmp_path) -> None:
    with pytest.raises(GenlabError, match="no images in"):
        ImageFolderDataset(tmp_path)
    with pytest.raises(GenlabError, match="not found"):
        ImageFolderDataset(tmp_path / "missing")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(GenlabError, match="cannot read image .*broken.png") as e:
        ImageFolderDataset(tmp_path)
    assert "\n" not in str(e.value)

    (tmp_path / "broken.png").unlink()
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "captions.jsonl").write_text('{"file": "a.png", "caption": "x"}\n{oops\n')
    with pytest.raises(GenlabError, match="line 2 is not valid JSON"):
        ImageFolderDataset(tmp_path)
    for missing in ("b.png", "../a.png"):
        row = json.dumps({"file": missing, "caption": "x"})
        (tmp_path / "captions.jsonl").write_text(row + "\n")
        with pytest.raises(GenlabError, match=f"names {re.escape(missing)}, which is not a file"):
            ImageFolderDataset(tmp_path)
    (tmp_path / "captions.jsonl").write_text("\n")
    with pytest.raises(GenlabError, match="lists no images"):
        ImageFolderDataset(tmp_path)


def test_folder_decode_error_names_the_file(tmp_path) -> None:
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[: len(data) // 2])  # header fine, pixels cut off
    ds = ImageFolderDataset(tmp_path)
    with pytest.raises(GenlabError, match="a.png"):
        ds[0]


def test_export_then_folder_reads_back_the_same_items(tmp_path) -> None:
    shapes = ShapesDataset(12, seed=4)
    files = export_images(shapes, tmp_path, n=10)
    assert files == [f"images/{i:06d}.png" for i in range(10)]
    back = ImageFolderDataset(tmp_path, size=32)
    assert len(back) == 10
    for i in range(10):
        image, caption, attrs = back[i]
        assert torch.equal(image, shapes[i].image)
        assert caption == shapes[i].caption
        assert attrs == {"file": files[i], **shapes[i].attributes}
