"""Shapes: the pixels show exactly what the captions and attributes state."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.data.images import COLORS, KINDS, ShapesConfig, ShapesDataset, to_uint8

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
