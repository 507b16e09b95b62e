"""Self-consistency's vote (Wang et al., 2023): sample several reasoning paths, keep the answer
most of them reach.

Answers are compared after normalising case, spacing and trailing punctuation, so "Vorilia." and
"vorilia" are one vote. Empty answers (a path that never stated one) do not vote. The winning
share of the votes is a confidence: the paper shows accuracy rises with it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


def normalise(answer: str) -> str:
    return " ".join(answer.casefold().split()).strip(" .!?,;:\"'")


@dataclass(frozen=True)
class Vote:
    """The majority answer (as first written), its share of the votes and the distinct answers."""

    answer: str
    share: float
    distinct: int


def majority(answers: Sequence[str]) -> Vote:
    """The most frequent answer; a tie goes to the one reached first (the lower sample index)."""
    keys = [normalise(a) for a in answers]
    counts = Counter(k for k in keys if k)
    if not counts:
        return Vote("", 0.0, 0)
    best = max(counts.values())
    first = next(i for i, k in enumerate(keys) if k and counts[k] == best)
    return Vote(answers[first].strip(), best / sum(counts.values()), len(counts))
