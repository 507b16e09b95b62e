"""Held-out compositions of the shapes scenes: test combinations a model never saw, of parts it did.

One-shape captions have 420 values (6 kinds x 7 colours x 2 sizes x 5 positions) and 20,000
training scenes draw every one of them, so captions drawn afresh measure memorised combinations,
not the compositional generalisation text-to-image models are asked for (Lake & Baroni, 2018,
"Generalization without Systematicity", hold out combinations in SCAN for this reason; T2I-
CompBench, Huang et al., 2023, tests attribute binding the same way). Here a **composition** is
a (colour, kind, position) triple, 7 x 6 x 5 = 210 of them, and a fixed, seeded split holds some
out of training:

- validation and test each take ``held_out`` (15%) of the triples; the rest train. A triple is
  held out only if every pair it contains, (colour, kind), (colour, position) and (kind,
  position), keeps at least one triple in training: the model has seen red circles, circles on
  the left and red shapes on the left, only never a red circle on the left. So every colour,
  kind and position occurs in training, and only the combination is new.
- Size is free: both sizes of a held-out triple are held out (a triple is two captions).
- A two-shape scene places each shape in a half (left, right, top or bottom), so each of its
  shapes is a triple too. The scene belongs to the most held-out split of its two triples
  (test over validation over train): a training scene contains no held-out triple at all, so
  "a red circle on the left" is never drawn in training, not even as the left shape of a pair.
  The caption states both triples ("a red circle to the left of a blue square": red circle
  left, blue square right), so held-out captions never occur among training captions.

``ShapesConfig(compositions=composition_split(), split="validation")`` draws the scenes of one
split (``genlab.data.images.scenes.sample_scenes``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

import numpy as np

from genlab.core.errors import GenlabError
from genlab.data.images.scenes import (
    COLORS,
    KINDS,
    POSITIONS,
    SIZES,
    Scene,
    Shape,
    scene_for_caption,
)

Triple = tuple[str, str, str]  # (colour, kind, position)
SPLITS = ("train", "validation", "test")  # in order of how far held out
HELD_OUT = 0.15  # share of the triples held out for validation, and again for test
SPLIT_SEED = 0


def all_triples() -> list[Triple]:
    """Every (colour, kind, position), in vocabulary order."""
    return [(c, k, p) for c in COLORS for k in KINDS for p in POSITIONS]


def _pairs(triple: Triple) -> list[tuple[int, int, str, str]]:
    """The three attribute pairs a triple contains, each tagged with which two attributes."""
    return [(i, j, triple[i], triple[j]) for i, j in combinations(range(3), 2)]


@dataclass(frozen=True)
class CompositionSplit:
    """The held-out triples of each split; every other triple trains."""

    validation: frozenset[Triple]
    test: frozenset[Triple]

    def __post_init__(self) -> None:
        if self.validation & self.test:
            raise GenlabError("a composition cannot be held out for validation and test alike")

    def split_of_shape(self, color: str, kind: str, position: str) -> str:
        """The split of one shape's (colour, kind, position)."""
        triple = (color, kind, position)
        if triple in self.test:
            return "test"
        return "validation" if triple in self.validation else "train"

    def split_of(self, scene: Scene) -> str:
        """The split of a scene: the most held-out of its shapes' (test > validation > train)."""
        found = [self.split_of_shape(s.color, s.kind, s.position) for s in scene.shapes]
        return max(found, key=SPLITS.index)

    def split_of_caption(self, caption: str) -> str:
        """The split of the scenes a caption describes (it states every shape's triple)."""
        return self.split_of(scene_for_caption(caption, np.random.default_rng(0)))

    def triples(self, split: str) -> list[Triple]:
        """The triples of ``split``, in vocabulary order."""
        if split not in SPLITS:
            raise GenlabError(f"unknown split '{split}': choose {', '.join(SPLITS)}")
        return [t for t in all_triples() if self.split_of_shape(*t) == split]

    def captions(self, split: str) -> list[str]:
        """The one-shape captions of ``split``: each of its triples at both sizes."""
        return [
            Scene((Shape(kind, color, big, position, (0.0, 0.0), 1.0),)).caption
            for color, kind, position in self.triples(split)
            for big in SIZES
        ]


@lru_cache(maxsize=8)
def composition_split(seed: int = SPLIT_SEED, held_out: float = HELD_OUT) -> CompositionSplit:
    """The fixed split of ``seed``: triples in a seeded order, each held out (for validation
    until it has its share, then for test) unless that would leave one of its attribute pairs
    without a training triple."""
    if not 0 < held_out < 0.5:
        raise GenlabError(f"held_out must be in (0, 0.5), got {held_out}")
    triples = all_triples()
    want = round(held_out * len(triples))
    in_train = Counter(pair for t in triples for pair in _pairs(t))
    held: dict[str, list[Triple]] = {"validation": [], "test": []}
    for index in np.random.default_rng(seed).permutation(len(triples)):
        split = next((s for s in held if len(held[s]) < want), None)
        if split is None:
            break
        triple = triples[int(index)]
        if all(in_train[pair] > 1 for pair in _pairs(triple)):
            in_train.subtract(_pairs(triple))
            held[split].append(triple)
    if min(len(v) for v in held.values()) < want:
        raise GenlabError(
            f"cannot hold out {held_out:.0%} of the compositions twice and keep every pair of "
            "attributes in training: hold out less"
        )
    return CompositionSplit(frozenset(held["validation"]), frozenset(held["test"]))
