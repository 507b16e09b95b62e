"""The eighteen TinyWorld task families: facts, arithmetic, words, lists, dates, cipher, reviews.

Each family is one skill with at least three phrasings of its instruction and an exact checker
(see :mod:`genlab.data.tinyworld.families.base`). Together they cover what the lectures measure:
world knowledge (fact questions, multi-hop questions, yes/no fact checking), arithmetic with
worked steps (k-digit addition, subtraction, multiplication, multi-step word problems), symbol
manipulation (reverse, spell, upper-case, count letters), lists and numbers (sort, max, compare),
calendar reasoning (day of the week), translation both ways with an invented cipher language,
and classification (sentiment of templated reviews). Numbers are small by default so that a
tiny model can learn them; the arithmetic families take ``max_digits``.

Sub-questions never use another family's instruction phrasing (arithmetic decompositions ask
"How much is 40 + 30?", not "What is 40 + 30?"), so holding any family out keeps its
instructions unseen. The exception, by design: fact questions are the world's own questions,
used in multi-hop and yes/no decompositions and asked in the corpus's dialogues.

One module per group: ``knowledge`` (fact, multi-hop, yes/no), ``arithmetic`` (+, -, *, word
problems, day of the week), ``words`` (reverse, spell, upper-case, count letters), ``numbers``
(sort, max, compare) and ``language`` (cipher both ways, sentiment); ``base`` holds the interface.
"""

from __future__ import annotations

from collections.abc import Mapping

from genlab.data.tinyworld.families.arithmetic import (
    Addition,
    DayOfWeek,
    Multiplication,
    Subtraction,
    WordProblem,
)
from genlab.data.tinyworld.families.base import Family
from genlab.data.tinyworld.families.knowledge import FactQuestion, MultiHop, YesNoFact
from genlab.data.tinyworld.families.language import CipherFrom, CipherTo, Sentiment
from genlab.data.tinyworld.families.numbers import CompareNumbers, MaxList, SortList
from genlab.data.tinyworld.families.words import CountLetters, ReverseWord, SpellWord, Uppercase

__all__ = ["FAMILIES", "FAMILY_TYPES", "task_families"]


FAMILY_TYPES: tuple[type[Family], ...] = (
    FactQuestion,
    MultiHop,
    YesNoFact,
    Addition,
    Subtraction,
    Multiplication,
    WordProblem,
    ReverseWord,
    SpellWord,
    Uppercase,
    CountLetters,
    SortList,
    MaxList,
    CompareNumbers,
    DayOfWeek,
    CipherTo,
    CipherFrom,
    Sentiment,
)
FAMILIES: Mapping[str, Family] = {f.name: f() for f in FAMILY_TYPES}


def task_families() -> list[str]:
    """The names of the built-in task families, in a fixed order."""
    return list(FAMILIES)
