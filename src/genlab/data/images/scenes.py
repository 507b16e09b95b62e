"""Scenes of one or two coloured shapes, and the captions written from their attributes.

Whether a text-to-image model follows its caption can be scored exactly only when the caption was
generated from known attributes. A scene is drawn at random (kind, colour, size, position, and
for two shapes their relation), its caption comes from templates over those attributes ("a small
red circle on the left", "a large blue star above a small green square"), and the attributes
(kind, colour, size, position, centre, bounding box) travel with the image, so a metric can
check a generated image against them.

The way back is exact too: ``scenes_for_captions`` reads the attributes out of captions and
draws fresh scenes that show them (new centres and radii from a seed), so real images can be
drawn for exactly the captions a model was asked for. ``ShapesConfig.compositions`` restricts
the draws to one split of held-out compositions (``genlab.data.images.compositions``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from genlab.core.errors import GenlabError
from genlab.data.images.common import check_size

if TYPE_CHECKING:
    from genlab.data.images.compositions import CompositionSplit

KINDS: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross", "star")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 135, 20),
    "yellow": (235, 200, 0),
    "green": (30, 160, 50),
    "cyan": (0, 185, 205),
    "blue": (30, 70, 220),
    "purple": (140, 50, 190),
}
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "center")

# Radius ranges as fractions of the image side, for scenes of one shape and of two. Small and
# large never overlap: a large shape has at least 1.7 times the area of a small one.
_RADIUS = {
    1: {"small": (0.11, 0.14), "large": (0.20, 0.24)},
    2: {"small": (0.10, 0.12), "large": (0.16, 0.19)},
}
_SQRT3 = math.sqrt(3.0)
# Extent of each kind around its centre of mass, in radii: (half width, above, below).
EXTENT = {
    "circle": (1.0, 1.0, 1.0),
    "square": (0.85, 0.85, 0.85),
    "triangle": (1.0, 2 / _SQRT3, 1 / _SQRT3),  # equilateral, side 2r, apex up
    "diamond": (0.8, 1.0, 1.0),
    "cross": (0.95, 0.95, 0.95),
    "star": (math.sin(math.radians(72)), 1.0, math.cos(math.radians(36))),  # five points
}
_WHERE = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
_RELATION_WORDS = {
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above",
    "below": "below",
}


@dataclass(frozen=True)
class Shape:
    """One drawn shape; ``center`` is its centre of mass in pixels (x right, y down)."""

    kind: str
    color: str
    size: str  # "small" | "large"
    position: str  # the image region (one shape) or half (two shapes) it was placed in
    center: tuple[float, float]
    radius: float  # pixels; the scale every kind is drawn at (see EXTENT)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in pixel coordinates (pixel i covers [i, i + 1])."""
        half, up, down = (e * self.radius for e in EXTENT[self.kind])
        x, y = self.center
        return (x - half, y - up, x + half, y + down)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "color": self.color,
            "size": self.size,
            "position": self.position,
            "center": [round(v, 3) for v in self.center],
            "radius": round(self.radius, 3),
            "bbox": [round(v, 3) for v in self.bbox],
        }


@dataclass(frozen=True)
class Scene:
    """One image: its shapes in caption order and, for two, how the first relates to the second."""

    shapes: tuple[Shape, ...]
    relation: str | None = None  # "left of" | "right of" | "above" | "below" (two shapes)

    @property
    def caption(self) -> str:
        """The caption, from one template per layout, stating every attribute but the centre."""

        def phrase(s: Shape) -> str:
            return f"a {s.size} {s.color} {s.kind}"

        if self.relation is None:
            (s,) = self.shapes
            return f"{phrase(s)} {_WHERE[s.position]}"
        a, b = self.shapes
        return f"{phrase(a)} {_RELATION_WORDS[self.relation]} {phrase(b)}"

    def to_dict(self) -> dict[str, Any]:
        return {"shapes": [s.to_dict() for s in self.shapes], "relation": self.relation}


@dataclass(frozen=True)
class ShapesConfig:
    """What scenes may contain: restrict ``kinds``/``colors`` to hold values out, or give
    ``compositions`` to draw only the scenes of one of its splits (``split``: "train",
    "validation" or "test"; see ``genlab.data.images.compositions``). Without ``compositions``
    every scene is drawn as it always was, the same scene for the same seed."""

    kinds: tuple[str, ...] = KINDS
    colors: tuple[str, ...] = tuple(COLORS)
    two_shape_fraction: float = 0.5
    background: tuple[int, int, int] = (255, 255, 255)
    compositions: CompositionSplit | None = None
    split: str = "train"

    def __post_init__(self) -> None:
        if not self.kinds or set(self.kinds) - set(KINDS):
            raise GenlabError(f"shape kinds must be a non-empty subset of {', '.join(KINDS)}")
        if len(self.colors) < 2 or set(self.colors) - set(COLORS):
            raise GenlabError(f"colors must be at least two of {', '.join(COLORS)}")
        if not 0.0 <= self.two_shape_fraction <= 1.0:
            raise GenlabError(
                f"two_shape_fraction must be in [0, 1], got {self.two_shape_fraction}"
            )
        if self.compositions is not None:
            triples = self.compositions.triples(self.split)  # refuses an unknown split
            if not any(c in self.colors and k in self.kinds for c, k, _ in triples):
                raise GenlabError(
                    f"no {self.split} composition uses these kinds and colours: widen them or "
                    "draw without held-out compositions"
                )


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _axis(rng: np.random.Generator, size: int, region: str, before: float, after: float) -> float:
    """A centre coordinate on one axis, inside ``region``'s third of the image, the whole shape
    (``before``/``after`` pixels on either side of its centre) inside the frame."""
    third, slack, margin = size / 3, 0.25, 0.03 * size
    lo, hi = {
        "low": (0.0, third - slack),
        "mid": (third + slack, 2 * third - slack),
        "high": (2 * third + slack, float(size)),
    }[region]
    return _uniform(rng, max(lo, before + margin), min(hi, size - after - margin))


def _one_shape(rng: np.random.Generator, size: int, cfg: ShapesConfig) -> Scene:
    kind = str(rng.choice(cfg.kinds))
    color = str(rng.choice(cfg.colors))
    big = str(rng.choice(SIZES))
    position = str(rng.choice(POSITIONS))
    return Scene((_place_one(rng, size, kind, color, big, position),))


def _place_one(
    rng: np.random.Generator, size: int, kind: str, color: str, big: str, position: str
) -> Shape:
    """The one shape of a scene, its radius and centre drawn inside ``position``'s region."""
    r = _uniform(rng, *_RADIUS[1][big]) * size
    half, up, down = (e * r for e in EXTENT[kind])
    x_region, y_region = {
        "left": ("low", "mid"),
        "right": ("high", "mid"),
        "top": ("mid", "low"),
        "bottom": ("mid", "high"),
        "center": ("mid", "mid"),
    }[position]
    x = _axis(rng, size, x_region, half, half)
    y = _axis(rng, size, y_region, up, down)
    return Shape(kind, color, big, position, (x, y), r)


def _two_shapes(rng: np.random.Generator, size: int, cfg: ShapesConfig) -> Scene:
    horizontal = bool(rng.random() < 0.5)
    colors = [str(c) for c in rng.choice(cfg.colors, size=2, replace=False)]
    shapes = []
    for i, color in enumerate(colors):  # i = 0: left/top half, i = 1: right/bottom half
        kind = str(rng.choice(cfg.kinds))
        big = str(rng.choice(SIZES))
        shapes.append(_place_in_half(rng, size, kind, color, big, i, horizontal))
    if rng.random() < 0.5:  # which of the two the caption names first
        return Scene(tuple(shapes), "left of" if horizontal else "above")
    return Scene(tuple(reversed(shapes)), "right of" if horizontal else "below")


def _place_in_half(
    rng: np.random.Generator, size: int, kind: str, color: str, big: str, i: int, horizontal: bool
) -> Shape:
    """One shape of a two-shape scene inside half ``i`` (0: left or top, 1: right or bottom)."""
    gap, margin = 0.02 * size, 0.03 * size
    r = _uniform(rng, *_RADIUS[2][big]) * size
    half, up, down = (e * r for e in EXTENT[kind])
    before, after = (half, half) if horizontal else (up, down)
    if i == 0:
        main = _uniform(rng, before + margin, size / 2 - gap / 2 - after)
    else:
        main = _uniform(rng, size / 2 + gap / 2 + before, size - after - margin)
    cross = _axis(rng, size, "mid", *((up, down) if horizontal else (half, half)))
    position = ("left", "right")[i] if horizontal else ("top", "bottom")[i]
    center = (main, cross) if horizontal else (cross, main)
    return Shape(kind, color, big, position, center, r)


_MAX_DRAWS = 10_000  # redraws of one scene until it falls in the asked split of compositions


def sample_scenes(
    n: int, size: int = 32, seed: int = 0, config: ShapesConfig | None = None
) -> list[Scene]:
    """``n`` random scenes; scene ``i`` depends only on ``(seed, i)``, so a longer run extends a
    shorter one instead of reshuffling it. With ``config.compositions`` a scene outside
    ``config.split`` is redrawn (same layout, the same generator), so each split's scenes follow
    the full distribution restricted to that split."""
    check_size(size, 16)
    if n < 0:
        raise GenlabError(f"the number of images must be >= 0, got {n}")
    cfg = config or ShapesConfig()
    scenes = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        draw = _two_shapes if rng.random() < cfg.two_shape_fraction else _one_shape
        scene = draw(rng, size, cfg)
        if cfg.compositions is not None:
            for _ in range(_MAX_DRAWS):
                if cfg.compositions.split_of(scene) == cfg.split:
                    break
                scene = draw(rng, size, cfg)
            else:
                raise GenlabError(
                    f"no {cfg.split} scene found in {_MAX_DRAWS} draws: widen the kinds and "
                    "colours, or change two_shape_fraction"
                )
        scenes.append(scene)
    return scenes


_PHRASE = rf"a ({'|'.join(SIZES)}) ({'|'.join(COLORS)}) ({'|'.join(KINDS)})"
_ONE = re.compile(rf"{_PHRASE} ({'|'.join(_WHERE.values())})")
_TWO = re.compile(rf"{_PHRASE} ({'|'.join(_RELATION_WORDS.values())}) {_PHRASE}")
_POSITION_OF = {words: position for position, words in _WHERE.items()}
_RELATION_OF = {words: relation for relation, words in _RELATION_WORDS.items()}


def caption_layout(caption: str) -> tuple[list[tuple[str, str, str]], str | None, str | None]:
    """What a scene caption states: its shapes' (size, colour, kind) in caption order, the one
    shape's position (or ``None``) and the two shapes' relation (or ``None``)."""
    if m := _ONE.fullmatch(caption):
        return [m.group(1, 2, 3)], _POSITION_OF[m.group(4)], None
    if m := _TWO.fullmatch(caption):
        return [m.group(1, 2, 3), m.group(5, 6, 7)], None, _RELATION_OF[m.group(4)]
    raise GenlabError(
        f"'{caption}' is not a shapes caption: captions read 'a small red circle on the left' "
        "or 'a large blue star above a small green square'"
    )


def scene_for_caption(caption: str, rng: np.random.Generator, size: int = 32) -> Scene:
    """A fresh scene whose caption is ``caption``: the attributes it states, a centre and radius
    drawn from ``rng`` as ``sample_scenes`` draws them."""
    shapes, position, relation = caption_layout(caption)
    if relation is None:
        return Scene((_place_one(rng, size, *_kind_first(shapes[0]), str(position)),))
    horizontal = relation in ("left of", "right of")
    first_in_half0 = relation in ("left of", "above")  # the left or top half
    halves = shapes if first_in_half0 else shapes[::-1]
    placed = [
        _place_in_half(rng, size, *_kind_first(s), i, horizontal) for i, s in enumerate(halves)
    ]
    return Scene(tuple(placed if first_in_half0 else placed[::-1]), relation)


def _kind_first(phrase: tuple[str, str, str]) -> tuple[str, str, str]:
    """(size, colour, kind) as the placing functions take it: (kind, colour, size)."""
    big, color, kind = phrase
    return kind, color, big


def scenes_for_captions(captions: Sequence[str], size: int = 32, seed: int = 0) -> list[Scene]:
    """One fresh scene per caption, showing exactly what it states; scene ``i`` depends only on
    ``(seed, i)`` and its caption."""
    check_size(size, 16)
    return [
        scene_for_caption(c, np.random.default_rng([seed, i]), size) for i, c in enumerate(captions)
    ]
