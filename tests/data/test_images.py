"""The image conventions every data set shares (pixels, batches) and ``genlab data images``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from genlab.data.images import (
    NUMBER_WORDS,
    ImageFolderDataset,
    ShapesDataset,
    collate_images,
    from_uint8,
    to_pil,
    to_uint8,
)
from references import require


def test_uint8_round_trip_is_exact() -> None:
    pixels = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16)
    assert torch.equal(to_uint8(from_uint8(pixels)), pixels)
    assert from_uint8(pixels).min() == -1 and from_uint8(pixels).max() == 1
    clipped = to_uint8(torch.tensor([-3.0, 3.0]))
    assert torch.equal(clipped, torch.tensor([0, 255], dtype=torch.uint8))
    assert to_pil(from_uint8(pixels)).mode == "L"


def test_dataloader_batches_with_collate_images() -> None:
    shapes32 = ShapesDataset(8, size=32, seed=7)
    loader = DataLoader(shapes32, batch_size=8, collate_fn=collate_images)
    images, captions, attributes = next(iter(loader))
    assert images.shape == (8, 3, 32, 32)
    assert captions == [shapes32[i].caption for i in range(8)]
    assert attributes[3] == shapes32[3].attributes


def test_cli_writes_pngs_captions_and_contact_sheet(tmp_path) -> None:
    from genlab.cli import main

    main(["data", "images", "--kind", "shapes", "--out", str(tmp_path), "--n", "12", "--seed", "3"])
    rows = [json.loads(line) for line in (tmp_path / "captions.jsonl").read_text().splitlines()]
    reference = ShapesDataset(12, size=32, seed=3)
    assert len(rows) == 12 and len(list((tmp_path / "images").glob("*.png"))) == 12
    for i, row in enumerate(rows):
        assert row["caption"] == reference[i].caption
        assert row["attributes"] == reference[i].attributes
        png = np.asarray(Image.open(tmp_path / row["file"]))
        assert np.array_equal(png, reference.pixels[i].permute(1, 2, 0).numpy())
    sheet = Image.open(tmp_path / "contact_sheet.png")  # 8 x 2 cells of 32 + 2 padding, x2
    assert sheet.size == (2 * (8 * 34 + 2), 2 * (2 * 34 + 2))
    back = ImageFolderDataset(tmp_path)  # captions.jsonl is the index: no contact sheet in it
    assert len(back) == 12 and torch.equal(back[11].image, reference[11].image)


def test_cli_digits_and_bad_requests(tmp_path, capsys) -> None:
    require("sklearn")
    from genlab.cli import main

    main(
        ["data", "images", "--kind", "digits", "--out", str(tmp_path), "--n", "20", "--size", "16"]
    )
    rows = [json.loads(line) for line in (tmp_path / "captions.jsonl").read_text().splitlines()]
    assert [r["caption"] for r in rows[:3]] == [f"a handwritten {w}" for w in NUMBER_WORDS[:3]]
    assert Image.open(tmp_path / rows[0]["file"]).size == (16, 16)
    for bad in (["--kind", "digits", "--n", "5000"], ["--kind", "cats"], ["--size", "8"]):
        with pytest.raises(SystemExit) as e:
            main(["data", "images", "--out", str(tmp_path / "bad"), *bad])
        assert e.value.code == 2
        assert capsys.readouterr().err.count("\n") == 1
