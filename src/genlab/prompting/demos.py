"""In-context demonstrations: which solved examples go in the prompt, and with which labels.

Min et al. (2022, "Rethinking the Role of Demonstrations") found that replacing the gold labels of
the demonstrations by random ones barely hurts: the demonstrations mostly show the input
distribution, the label space and the format. :func:`shown_answers` builds the three arms of that
test (gold labels, random labels from the label space, and no demonstrations); :func:`select`
picks demonstrations at random or by similarity to the question (Liu et al., 2022, KATE, with word
overlap in place of sentence embeddings).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from genlab.core.errors import GenlabError
from genlab.data.tinyworld.families.base import Example

SELECTIONS = ("random", "similar")
LABELS = ("gold", "random")

_WORD = re.compile(r"\w+")


def _words(text: str) -> set[str]:
    return {w.casefold() for w in _WORD.findall(text)}


def select(
    pool: Sequence[Example], example: Example, k: int, rng: random.Random, how: str = "random"
) -> list[Example]:
    """``k`` demonstrations of ``example``'s family from ``pool``, never ``example`` itself:
    drawn at random, or the ``k`` with the most words in common (ties broken at random)."""
    if how not in SELECTIONS:
        raise GenlabError(f"unknown demonstration selection {how!r}; choose from: random, similar")
    same = [d for d in pool if d.family == example.family and d.prompt != example.prompt]
    if k > len(same):
        raise GenlabError(
            f"{k} demonstrations asked for, but the pool has {len(same)} of family "
            f"{example.family!r}: ask for fewer shots or give a larger pool"
        )
    if how == "random":
        return rng.sample(same, k)
    asked = _words(example.prompt)
    keyed = [(len(asked & _words(d.prompt)), rng.random(), i) for i, d in enumerate(same)]
    return [same[i] for *_, i in sorted(keyed, reverse=True)[:k]]


def label_space(pool: Sequence[Example], family: str) -> list[str]:
    """The answers a demonstration of ``family`` may show: the family's options where it has few
    (a review's two labels), else every answer in the pool (sorted, without repeats)."""
    same = [d for d in pool if d.family == family]
    if same and same[0].options:
        return list(same[0].options)
    return sorted({d.answer for d in same})


def shown_answers(
    demos: Sequence[Example], labels: str, space: Sequence[str], rng: random.Random
) -> list[str]:
    """The answer each demonstration shows: its own (``gold``), or one drawn uniformly from the
    label space (``random``, as Min et al.; it may be the gold one by chance)."""
    if labels not in LABELS:
        raise GenlabError(f"unknown demonstration labels {labels!r}; choose from: gold, random")
    if labels == "gold":
        return [d.answer for d in demos]
    return [rng.choice(list(space)) for _ in demos]
