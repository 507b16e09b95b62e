"""Built-in images: the shapes carry, in their pixels, what their captions and attributes state."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from genlab.core.errors import GenlabError
from genlab.data.images import (
    COLORS,
    KINDS,
    NUMBER_WORDS,
    DigitsDataset,
    ImageFolderDataset,
    ShapesConfig,
    ShapesDataset,
    collate_images,
    export_images,
    from_uint8,
    to_pil,
    to_uint8,
)

BG = np.array([255.0, 255.0, 255.0])
SINGLE = re.compile(
    r"^a (small|large) (\w+) (\w+) (on the left|on the right|at the top|at the bottom|in the center)$"
)
PAIR = re.compile(
    r"^a (small|large) (\w+) (\w+) (to the left of|to the right of|above|below) "
    r"a (small|large) (\w+) (\w+)$"
)
WHERE = {
    "on the left": "left",
    "on the right": "right",
    "at the top": "top",
    "at the bottom": "bottom",
    "in the center": "center",
}
RELATION = {
    "to the left of": "left of",
    "to the right of": "right of",
    "above": "above",
    "below": "below",
}


def hwc(ds: ShapesDataset, i: int) -> np.ndarray:
    """Image ``i`` as H x W x 3 floats 0..255 (the pixels ``ds[i].image`` is made from)."""
    return ds.pixels[i].permute(1, 2, 0).numpy().astype(np.float64)


def coverages(pixels: np.ndarray, colors: list[str]) -> list[np.ndarray]:
    """For each colour, each pixel's coverage: its position on the line from the background to the
    colour, counted only where that line explains the pixel better than the other colours'."""
    alphas, residuals = [], []
    for name in colors:
        d = np.array(COLORS[name], dtype=np.float64) - BG
        t = np.clip(((pixels - BG) @ d) / (d @ d), 0, 1)
        alphas.append(t)
        residuals.append(np.linalg.norm(pixels - (BG + t[..., None] * d), axis=-1))
    best = np.argmin(np.stack(residuals), axis=0)
    return [np.where(best == k, a, 0.0) for k, a in enumerate(alphas)]


def mass_centre(alpha: np.ndarray) -> tuple[float, float]:
    ys, xs = np.mgrid[0 : alpha.shape[0], 0 : alpha.shape[1]] + 0.5
    return float((alpha * xs).sum() / alpha.sum()), float((alpha * ys).sum() / alpha.sum())


def pure_colours(pixels: np.ndarray) -> np.ndarray:
    """Names of the pixels within 40 of a palette colour (anti-aliased edges drop out)."""
    palette = np.array(list(COLORS.values()), dtype=np.float64)
    dist = np.linalg.norm(pixels[..., None, :] - palette, axis=-1)
    names = np.array(list(COLORS))[dist.argmin(-1)]
    return names[dist.min(-1) < 40]


@pytest.fixture(scope="module")
def shapes32() -> ShapesDataset:
    return ShapesDataset(240, size=32, seed=7)


def test_same_seed_same_pixels_and_other_seed_differs() -> None:
    a, b, c = ShapesDataset(40, seed=1), ShapesDataset(40, seed=1), ShapesDataset(40, seed=2)
    assert torch.equal(a.pixels, b.pixels)
    assert [a[i].caption for i in range(40)] == [b[i].caption for i in range(40)]
    assert [a[i].attributes for i in range(40)] == [b[i].attributes for i in range(40)]
    assert not torch.equal(a.pixels, c.pixels)
    assert [a[i].caption for i in range(40)] != [c[i].caption for i in range(40)]


def test_a_longer_run_extends_a_shorter_one() -> None:
    short, long = ShapesDataset(10, seed=3), ShapesDataset(25, seed=3)
    assert torch.equal(short.pixels, long.pixels[:10])


def test_items_are_images_in_minus_one_to_one(shapes32: ShapesDataset) -> None:
    image, caption, attributes = shapes32[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert image.min() >= -1 and image.max() == 1  # white background is exactly +1
    assert torch.equal(to_uint8(image), shapes32.pixels[0])
    assert isinstance(caption, str) and json.loads(json.dumps(attributes)) == attributes


def test_captions_state_exactly_the_attributes(shapes32: ShapesDataset) -> None:
    n_pairs = 0
    for i in range(len(shapes32)):
        _, caption, attrs = shapes32[i]
        shapes = attrs["shapes"]
        if attrs["relation"] is None:
            size, color, kind, where = SINGLE.match(caption).groups()
            assert len(shapes) == 1
            assert (size, color, kind, WHERE[where]) == tuple(
                shapes[0][k] for k in ("size", "color", "kind", "position")
            )
        else:
            n_pairs += 1
            s0, c0, k0, rel, s1, c1, k1 = PAIR.match(caption).groups()
            assert RELATION[rel] == attrs["relation"]
            assert [(s0, c0, k0), (s1, c1, k1)] == [
                (s["size"], s["color"], s["kind"]) for s in shapes
            ]
            assert c0 != c1
    assert 60 < n_pairs < 180  # about half the scenes have two shapes


def test_every_kind_colour_size_and_position_occurs(shapes32: ShapesDataset) -> None:
    seen = {k: set() for k in ("kind", "color", "size", "position")}
    for i in range(len(shapes32)):
        for s in shapes32[i].attributes["shapes"]:
            for k in seen:
                seen[k].add(s[k])
    assert seen["kind"] == set(KINDS) and seen["color"] == set(COLORS)
    assert seen["size"] == {"small", "large"}
    assert seen["position"] == {"left", "right", "top", "bottom", "center"}


def test_stated_colour_dominates_its_bbox_and_no_other_colour_is_drawn(
    shapes32: ShapesDataset,
) -> None:
    for i in range(len(shapes32)):
        pixels, shapes = hwc(shapes32, i), shapes32[i].attributes["shapes"]
        assert set(pure_colours(pixels)) == {s["color"] for s in shapes}
        for s in shapes:
            x0, y0, x1, y1 = (round(v) for v in s["bbox"])
            names = pure_colours(pixels[max(y0, 0) : y1, max(x0, 0) : x1])
            assert len(names) >= 4
            assert np.mean(names == s["color"]) > 0.95, (i, s)


@pytest.mark.parametrize("size", [16, 32, 64])
def test_positions_read_from_the_mass_centre(size: int) -> None:
    ds = ShapesDataset(120, size=size, seed=11)
    third = size / 3
    for i in range(len(ds)):
        attrs = ds[i].attributes
        shapes = attrs["shapes"]
        alphas = coverages(hwc(ds, i), [s["color"] for s in shapes])
        centres = [mass_centre(a) for a in alphas]
        for s, (x, y) in zip(shapes, centres, strict=True):
            assert abs(x - s["center"][0]) < 0.3 and abs(y - s["center"][1]) < 0.3, (i, s)
            x0, y0, x1, y1 = s["bbox"]
            assert min(x0, y0) >= 0 and max(x1, y1) <= size  # the shape is in frame
        if attrs["relation"] is None:
            (x, y), where = centres[0], shapes[0]["position"]
            column = "left" if x < third else "right" if x > 2 * third else "mid"
            row = "top" if y < third else "bottom" if y > 2 * third else "mid"
            expected = {
                "left": ("left", "mid"),
                "right": ("right", "mid"),
                "top": ("mid", "top"),
                "bottom": ("mid", "bottom"),
                "center": ("mid", "mid"),
            }[where]
            assert (column, row) == expected, (i, ds[i].caption, x, y)
        else:
            (xa, ya), (xb, yb) = centres
            relation = attrs["relation"]
            if relation in ("left of", "right of"):
                assert (xa < xb) == (relation == "left of"), (i, ds[i].caption)
                assert third < ya < 2 * third and third < yb < 2 * third
            else:
                assert (ya < yb) == (relation == "above"), (i, ds[i].caption)
                assert third < xa < 2 * third and third < xb < 2 * third
            for s, (x, y) in zip(shapes, centres, strict=True):
                half = {"left": x < size / 2, "right": x > size / 2}
                half.update({"top": y < size / 2, "bottom": y > size / 2})
                assert half[s["position"]], (i, s)


def test_sizes_and_fill_ratios_read_from_the_pixels() -> None:
    ds = ShapesDataset(300, size=64, seed=5)
    areas: dict[tuple[str, int, str], list[float]] = {}
    fills: dict[str, list[float]] = {k: [] for k in KINDS}
    for i in range(len(ds)):
        shapes = ds[i].attributes["shapes"]
        pixels = hwc(ds, i)
        for s, alpha in zip(shapes, coverages(pixels, [s["color"] for s in shapes]), strict=True):
            area = float(alpha.sum())
            areas.setdefault((s["kind"], len(shapes), s["size"]), []).append(area)
            x0, y0, x1, y1 = s["bbox"]
            fills[s["kind"]].append(area / ((x1 - x0) * (y1 - y0)))
            ys, xs = np.nonzero(alpha > 0.5)  # the drawn pixels lie inside the stated bbox
            assert xs.min() >= x0 - 0.5 and xs.max() + 1 <= x1 + 0.5
            assert ys.min() >= y0 - 0.5 and ys.max() + 1 <= y1 + 0.5
    for kind in KINDS:
        for count in (1, 2):
            small, large = areas[(kind, count, "small")], areas[(kind, count, "large")]
            assert max(small) * 1.5 < min(large), (kind, count)
    mean = {k: float(np.mean(v)) for k, v in fills.items()}
    assert mean["square"] > 0.95
    assert 0.74 < mean["circle"] < 0.83  # pi / 4
    assert 0.45 < mean["triangle"] < 0.55 and 0.45 < mean["diamond"] < 0.55
    assert mean["star"] < 0.45 and mean["cross"] < 0.65
    assert mean["square"] - mean["circle"] > 0.15  # what tells a square from a circle


def test_config_restricts_the_vocabulary() -> None:
    ds = ShapesDataset(30, seed=0, config=ShapesConfig(kinds=("star",), colors=("red", "blue")))
    for i in range(len(ds)):
        for s in ds[i].attributes["shapes"]:
            assert s["kind"] == "star" and s["color"] in ("red", "blue")
    singles = ShapesDataset(20, seed=0, config=ShapesConfig(two_shape_fraction=0.0))
    assert all(singles[i].attributes["relation"] is None for i in range(20))
    with pytest.raises(GenlabError, match="kinds"):
        ShapesConfig(kinds=("hexagon",))
    with pytest.raises(GenlabError, match="at least two"):
        ShapesConfig(colors=("red",))
    with pytest.raises(GenlabError, match="between 16 and 256"):
        ShapesDataset(2, size=8)


def test_uint8_round_trip_is_exact() -> None:
    pixels = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16)
    assert torch.equal(to_uint8(from_uint8(pixels)), pixels)
    assert from_uint8(pixels).min() == -1 and from_uint8(pixels).max() == 1
    clipped = to_uint8(torch.tensor([-3.0, 3.0]))
    assert torch.equal(clipped, torch.tensor([0, 255], dtype=torch.uint8))
    assert to_pil(from_uint8(pixels)).mode == "L"


def test_dataloader_batches_with_collate_images(shapes32: ShapesDataset) -> None:
    loader = DataLoader(shapes32, batch_size=8, collate_fn=collate_images)
    images, captions, attributes = next(iter(loader))
    assert images.shape == (8, 3, 32, 32)
    assert captions == [shapes32[i].caption for i in range(8)]
    assert attributes[3] == shapes32[3].attributes


# --- digits ---------------------------------------------------------------------------------


def test_digits_shapes_labels_and_captions() -> None:
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    ds = DigitsDataset(size=32)
    assert len(ds) == 1797
    reference = sklearn_datasets.load_digits()
    for i in (0, 7, 100, 1796):
        image, caption, attrs = ds[i]
        assert image.shape == (1, 32, 32) and image.min() >= -1 and image.max() <= 1
        assert attrs["label"] == reference.target[attrs["index"]]
        assert caption == f"a handwritten {NUMBER_WORDS[attrs['label']]}"
    # upsampled, not replaced: 4x4 means come back to the 8x8 original
    down = torch.nn.functional.avg_pool2d(ds.images, 4)[:, 0]
    original = torch.from_numpy(reference.images).float() / 8 - 1
    assert torch.corrcoef(torch.stack([down.flatten(), original.flatten()]))[0, 1] > 0.97
    seven = [ds[i].caption for i in range(len(ds)) if int(ds.labels[i]) == 7]
    assert set(seven) == {"a handwritten seven"}


def test_digits_splits_and_channels() -> None:
    pytest.importorskip("sklearn")
    train, test = DigitsDataset(16, "train"), DigitsDataset(16, "test", channels=3)
    assert len(train) + len(test) == 1797 and not set(train.index) & set(test.index)
    assert test[0].image.shape == (3, 16, 16)
    assert torch.equal(test[0].image[0], test[0].image[2])
    with pytest.raises(GenlabError, match="split"):
        DigitsDataset(16, "validation")  # type: ignore[arg-type]


def test_digits_without_scikit_learn_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(GenlabError, match=r"pip install 'genlab\[digits\]'"):
        DigitsDataset()


# --- folders --------------------------------------------------------------------------------


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


# --- CLI ------------------------------------------------------------------------------------


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
    pytest.importorskip("sklearn")
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
