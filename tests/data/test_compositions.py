"""Held-out compositions: a fixed split of (colour, kind, position) triples that training never
draws, and real scenes drawn back from captions."""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import numpy as np
import pytest

from genlab.core.errors import GenlabError
from genlab.data.images import (
    COLORS,
    KINDS,
    POSITIONS,
    SIZES,
    ShapesConfig,
    ShapesDataset,
    composition_split,
    sample_scenes,
    scenes_for_captions,
)
from genlab.data.images.compositions import CompositionSplit, all_triples
from genlab.data.images.scenes import caption_layout

SPLIT = composition_split()
HELD = SPLIT.validation | SPLIT.test


def triples_of(scene) -> list[tuple[str, str, str]]:
    return [(s.color, s.kind, s.position) for s in scene.shapes]


def test_the_split_is_fixed_disjoint_and_sized() -> None:
    composition_split.cache_clear()
    again = composition_split()
    assert again == SPLIT and again is not SPLIT  # the same triples from the seed, not a cache
    assert composition_split(seed=1) != SPLIT
    assert len(all_triples()) == 7 * 6 * 5 == 210
    assert len(SPLIT.validation) == len(SPLIT.test) == 32  # 15% of 210 each
    assert not SPLIT.validation & SPLIT.test
    train = SPLIT.triples("train")
    assert len(train) == 146 and not set(train) & HELD
    assert sorted(train + sorted(HELD)) == sorted(all_triples())
    assert sorted(SPLIT.triples("validation")) == sorted(SPLIT.validation)
    with pytest.raises(GenlabError, match="unknown split"):
        SPLIT.triples("seen")
    with pytest.raises(GenlabError, match="validation and test"):
        CompositionSplit(
            frozenset({("red", "circle", "left")}), frozenset({("red", "circle", "left")})
        )
    with pytest.raises(GenlabError, match="held_out"):
        composition_split(held_out=0.6)


def test_training_keeps_every_value_and_every_pair_of_values() -> None:
    train = SPLIT.triples("train")
    assert {c for c, _, _ in train} == set(COLORS)
    assert {k for _, k, _ in train} == set(KINDS)
    assert {p for _, _, p in train} == set(POSITIONS)
    for i, j in combinations(range(3), 2):  # (colour, kind), (colour, position), (kind, position)
        every = {(t[i], t[j]) for t in all_triples()}
        assert {(t[i], t[j]) for t in train} == every, (i, j)
    # so a held-out triple is new only as a combination: each of its pairs trains elsewhere
    for t in HELD:
        for i, j in combinations(range(3), 2):
            assert any(u[i] == t[i] and u[j] == t[j] for u in train)


def test_held_out_captions_are_both_sizes_of_each_held_out_triple() -> None:
    captions = SPLIT.captions("test")
    assert len(captions) == 64 == len(set(captions))
    every = SPLIT.captions("train") + SPLIT.captions("validation") + captions
    assert len(set(every)) == len(every) == 420
    for c in captions:
        shapes, position, relation = caption_layout(c)
        ((big, color, kind),) = shapes
        assert relation is None and big in SIZES and (color, kind, position) in SPLIT.test
        assert SPLIT.split_of_caption(c) == "test"
    assert Counter(caption_layout(c)[0][0][0] for c in captions) == {"small": 32, "large": 32}


@pytest.fixture(scope="module")
def train_scenes() -> list:
    """5,000 training scenes, half of them of two shapes, with the compositions held out."""
    config = ShapesConfig(two_shape_fraction=0.5, compositions=SPLIT, split="train")
    return sample_scenes(5000, 32, seed=0, config=config)


def test_training_draws_never_show_a_held_out_composition(train_scenes) -> None:
    scenes = train_scenes
    assert not any(set(triples_of(s)) & HELD for s in scenes)
    layouts = Counter(len(s.shapes) for s in scenes)
    assert 2300 < layouts[1] < 2700 and 2300 < layouts[2] < 2700
    train = set(SPLIT.triples("train"))
    one = {t for s in scenes if len(s.shapes) == 1 for t in triples_of(s)}
    assert one == train  # every training composition is drawn, and nothing else
    # the held-out splits draw only their own scenes: validation never holds a test triple
    for split, held in (("validation", SPLIT.validation), ("test", SPLIT.test)):
        config = ShapesConfig(two_shape_fraction=0.5, compositions=SPLIT, split=split)
        drawn = sample_scenes(300, 32, seed=1, config=config)
        assert all(set(triples_of(s)) & held for s in drawn), split
        assert all(SPLIT.split_of(s) == split for s in drawn)


def test_held_out_captions_never_occur_among_training_captions(train_scenes) -> None:
    seen = {s.caption for s in train_scenes}
    for split in ("validation", "test"):
        config = ShapesConfig(two_shape_fraction=0.5, compositions=SPLIT, split=split)
        held = {s.caption for s in sample_scenes(1000, 16, seed=3, config=config)}
        held |= set(SPLIT.captions(split))
        assert not held & seen, split
        assert {SPLIT.split_of_caption(c) for c in held} == {split}
    assert {SPLIT.split_of_caption(c) for c in seen} == {"train"}


def test_without_compositions_the_draws_are_unchanged_and_a_restricted_split_draws_alike() -> None:
    plain = sample_scenes(50, 32, seed=4, config=ShapesConfig(two_shape_fraction=0.3))
    assert plain == sample_scenes(50, 32, seed=4, config=ShapesConfig(two_shape_fraction=0.3))
    config = ShapesConfig(two_shape_fraction=0.3, compositions=SPLIT, split="test")
    a, b = sample_scenes(40, 32, 4, config), sample_scenes(60, 32, 4, config)
    assert a == b[:40]  # scene i still depends only on (seed, i)
    # scenes that were already training scenes are drawn unchanged
    train = sample_scenes(50, 32, 4, ShapesConfig(two_shape_fraction=0.3, compositions=SPLIT))
    for p, t in zip(plain, train, strict=True):
        if SPLIT.split_of(p) == "train":
            assert p == t
    # a vocabulary with no composition of the asked split is refused, not drawn forever
    kind, colors = next(
        (k, cs)
        for k in KINDS
        if len(cs := [c for c in COLORS if not any(t[:2] == (c, k) for t in SPLIT.validation)]) > 1
    )
    with pytest.raises(GenlabError, match="no validation composition"):
        ShapesConfig(kinds=(kind,), colors=tuple(colors), compositions=SPLIT, split="validation")


ALL_ONE_SHAPE = [
    f"a {big} {color} {kind} {where}"
    for color in COLORS
    for kind in KINDS
    for big in SIZES
    for where in ("on the left", "on the right", "at the top", "at the bottom", "in the center")
]


def test_scenes_drawn_for_captions_state_exactly_those_captions() -> None:
    assert len(set(ALL_ONE_SHAPE)) == 420
    pairs = [s.caption for s in sample_scenes(300, 32, 9, ShapesConfig(two_shape_fraction=1.0))]
    captions = ALL_ONE_SHAPE + pairs
    ds = ShapesDataset.for_captions(captions, 32, seed=5)
    assert [s.caption for s in ds.scenes] == captions
    assert ds.pixels.shape == (720, 3, 32, 32)
    # fresh centres and radii: seeded, and another seed draws other ones
    again = scenes_for_captions(captions, 32, seed=5)
    other = scenes_for_captions(captions, 32, seed=6)
    assert again == ds.scenes
    assert all(a.shapes[0].center != o.shapes[0].center for a, o in zip(again, other, strict=True))
    # each scene's own (seed, i) generator: a prefix draws the same scenes
    assert scenes_for_captions(captions[:10], 32, seed=5) == ds.scenes[:10]
    # the shapes stay inside the frame, in the stated region, as sampled scenes do
    for scene in ds.scenes:
        for s in scene.shapes:
            x0, y0, x1, y1 = s.bbox
            assert min(x0, y0) >= 0 and max(x1, y1) <= 32
            x, y = s.center
            if s.position in ("left", "right"):
                assert (x < 16) == (s.position == "left")
            if s.position in ("top", "bottom"):
                assert (y < 16) == (s.position == "top")
    # the pixels show the colour asked for: every pixel near a palette colour is near that one
    palette = np.array(list(COLORS.values()), dtype=float)
    pixels = ds.pixels[:420].permute(0, 2, 3, 1).numpy().astype(float)
    for i in range(420):
        dist = np.linalg.norm(pixels[i][..., None, :] - palette, axis=-1)
        pure = np.array(list(COLORS))[dist.argmin(-1)][dist.min(-1) < 40]
        assert len(pure) > 4 and set(pure) == {ds.scenes[i].shapes[0].color}, captions[i]


def test_a_caption_that_is_not_a_scene_is_refused() -> None:
    for bad in ("a handwritten seven", "a small pink circle on the left", "a red circle"):
        with pytest.raises(GenlabError, match="not a shapes caption"):
            scenes_for_captions([bad])
