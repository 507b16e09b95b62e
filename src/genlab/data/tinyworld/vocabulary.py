"""The words TinyWorld is written with: the values facts take, and the cipher's English grammar.

A tiny model learns a small closed vocabulary fast, so every value a fact may take (colours,
jobs, foods, ...) and every English word the cipher language translates comes from the short
lists here; the invented names never reuse one of them.
"""

from __future__ import annotations

import random

COLOURS = ("red", "blue", "green", "yellow", "white", "black", "brown", "grey")
JOBS = ("baker", "farmer", "teacher", "fisher", "painter", "singer", "builder", "doctor")
FOODS = ("bread", "fish", "grass", "berries", "seeds", "leaves", "honey", "nuts", "cheese")
MATERIALS = ("wood", "stone", "glass", "iron", "clay", "cloth", "paper", "gold")
LEGS = ("2", "4", "6", "8")
AGES = tuple(str(a) for a in range(8, 81))
ITEMS = ("apples", "eggs", "shells", "coins", "cakes", "stones", "books", "cups", "plums", "pens")
# The English side of the cipher language: a tiny grammar (determiner, adjective, noun, verb).
DETERMINERS = ("the", "my")
ADJECTIVES = ("red", "blue", "big", "small", "old", "new", "happy", "green")
NOUNS = ("bird", "fish", "cat", "dog", "tree", "house", "sun", "moon", "boy", "girl", "boat")
VERBS = ("sees", "eats", "likes", "finds", "has", "makes")
ENGLISH_WORDS = tuple(dict.fromkeys(DETERMINERS + ADJECTIVES + NOUNS + VERBS))
# The values of each kind of fact object that is a word, not an invented name.
VALUE_VOCABULARY: dict[str, tuple[str, ...]] = {
    "colour": COLOURS,
    "job": JOBS,
    "food": FOODS,
    "material": MATERIALS,
    "legs": LEGS,
    "age": AGES,
}


def article(word: str) -> str:
    """``word`` with "a" or "an" in front (by its first letter: the names have no silent h)."""
    return ("an " if word[:1] in tuple("aeiou") else "a ") + word


def english_phrase(rng: random.Random) -> str:
    """A phrase of the cipher language's English grammar: "the red bird" or "my cat sees the sun"."""

    def noun_phrase() -> str:
        adjective = [rng.choice(ADJECTIVES)] if rng.random() < 0.5 else []
        return " ".join([rng.choice(DETERMINERS), *adjective, rng.choice(NOUNS)])

    if rng.random() < 0.4:
        return noun_phrase()
    return f"{noun_phrase()} {rng.choice(VERBS)} {noun_phrase()}"
