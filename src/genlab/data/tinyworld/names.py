"""Invented names: a syllable grammar for people, towns, countries, creatures, objects and words.

Invented names keep what a model learns about the world separate from what it knew before: no
pretrained model has seen them, and they stay short and pronounceable (onset, vowel, optional
coda) so a tiny tokenizer and model handle them. A name never equals an English word the
templates or vocabularies use, or a common English word the grammar can spell.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from genlab.core.errors import GenlabError
from genlab.data.tinyworld.relations import RELATIONS
from genlab.data.tinyworld.vocabulary import ENGLISH_WORDS, ITEMS, VALUE_VOCABULARY


def template_words() -> set[str]:
    """Every English word the templates and vocabularies use (lower-cased)."""
    words: set[str] = set(ENGLISH_WORDS)
    for rel in RELATIONS.values():
        for t in rel.statements + rel.questions:
            words.update(w.lower() for w in re.findall(r"[A-Za-z]+", re.sub(r"\{\w+\}", " ", t)))
    for vocab in (*VALUE_VOCABULARY.values(), ITEMS):
        words.update(vocab)
    return words


# Common English words the syllable grammar can spell ("Time", "lemon", "go"); never names.
_COMMON_WORDS = (  # noqa: SIM905  (a word list reads best as words)
    "all bake bale ban banana bane bar base be beta bile bin bite bone bones bore bum bun "
    "bus camel dam dame data date demo den denim dim dime din dine diva dive diver do dodo "
    "domino done dose dove dune fade fake fame fan far fate fever file fin fine fir five "
    "for fore fun fur fuse gala gale game games gas gate gave given go gone gum gun has "
    "home kale kilo kin kiss kite koala la label lake lama lame lane late later lava lemon "
    "lemur level lever lime line lines live liver lobe lone lore lose love lover lunar lure "
    "ma made make male mama man mane manor mas mate me melon memo men menu mile miles mine "
    "minor mite model modem molar mole mom more motor move mule mum muse mute name names "
    "nave never nil nine no none nor nose noses note notes nova novel nun pa pale pan pane "
    "panel papa paper pave pen pile pin pine polar pole poles polo pore pose potato puma "
    "pun pure rake ram ran rate rave ride rider rim rise river robe robin role rose roses "
    "rotor rove rule rules rum rumor run sale salon same sane save seven sever side sin sir "
    "site so soda sofa solar sole solo son sonar sore sum sun sure take taken tale tame tan "
    "tar ten tenor tide tiger tile tiles time timer tin to tofu toga token tomato ton tone "
    "tore tote tube tumor tuna tune vale van vane vase vile villa vine vise vote we yes "
    "zero zone zones"
).split()
# Invented names never collide with an English word the templates use, or a common one.
RESERVED = template_words() | set(_COMMON_WORDS)

# The syllable grammar: onset consonant, vowel, optional coda. Every name is pronounceable.
_ONSETS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_CODAS = "lmnrs"


def _syllable(rng: random.Random, coda_p: float) -> str:
    s = rng.choice(_ONSETS) + rng.choice(_VOWELS)
    if rng.random() < coda_p:
        s += rng.choice(_CODAS)
    return s


def invented_word(rng: random.Random, syllables: int) -> str:
    """A lowercase pronounceable non-word from the syllable grammar (for the word tasks)."""
    return "".join(_syllable(rng, 0.3) for _ in range(syllables))


# One shape per kind of name, ``extra`` syllables longer once the short names run out.


def person_name(rng: random.Random, extra: int) -> str:
    return "".join(_syllable(rng, 0.2) for _ in range(1 + extra)) + _syllable(rng, 0.5)


def town_name(rng: random.Random, extra: int) -> str:
    stem = "".join(_syllable(rng, 0.3) for _ in range(1 + extra))
    return stem + rng.choice(("ton", "by", "ford", "dale", "wick"))


def country_name(rng: random.Random, extra: int) -> str:
    stem = "".join(_syllable(rng, 0.0) for _ in range(2 + extra))
    return stem + (rng.choice(_ONSETS) + "ia" if rng.random() < 0.5 else "land")


def creature_name(rng: random.Random, extra: int) -> str:
    return "".join(_syllable(rng, 0.0) for _ in range(1 + extra)) + _syllable(rng, 1.0)


def object_name(rng: random.Random, extra: int) -> str:
    return "".join(_syllable(rng, 0.0) for _ in range(2 + extra)) + "t"


def cipher_word(rng: random.Random, extra: int) -> str:
    n = 1 + extra + (rng.random() < 0.5)
    return "".join(_syllable(rng, 0.3) for _ in range(n))


def language_name(rng: random.Random, extra: int) -> str:
    return "".join(_syllable(rng, 0.0) for _ in range(1 + extra)) + rng.choice(_ONSETS) + "ish"


def fresh_name(
    rng: random.Random, taken: set[str], make: Callable[[random.Random, int], str]
) -> str:
    """A new name from ``make``, distinct from all others; longer shapes once short ones run out."""
    for attempt in range(10_000):
        name = make(rng, attempt // 200)
        if name not in taken and name not in RESERVED:
            taken.add(name)
            return name
    raise GenlabError("TinyWorld ran out of distinct names: use a smaller size")
