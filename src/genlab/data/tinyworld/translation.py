"""TinyWorld's cipher language as a translation task: sentence pairs both ways, short and long.

The short tasks are the cipher families' phrases ("my red cat sees the sun"), which the cipher
codes word by word, so a model may translate by copying with a lookup. The long tasks
(``long_cipher_to``, ``long_cipher_from``) join two or three clauses with "and" and let the
cipher's grammar reorder them: a noun phrase is head first (noun, adjective, determiner) and a
clause is subject-object-verb. Word-by-word copying then fails, and a model that writes all
target words at once must agree on where each one goes: the setting in which non-autoregressive
translation is hard (Gu et al., 2018; Ghazvininejad et al., 2019).

A sentence's split is decided by its English side, so both directions of one sentence share it;
the short tasks use the split key of the ``cipher_to`` family, so a test sentence here is a test
question there too.
"""

from __future__ import annotations

import random

from genlab.core.errors import GenlabError
from genlab.data.tinyworld.families import FAMILIES
from genlab.data.tinyworld.names import cipher_word, fresh_name
from genlab.data.tinyworld.tasks import SPLITS, split_of
from genlab.data.tinyworld.vocabulary import ADJECTIVES, DETERMINERS, NOUNS, VERBS, english_phrase
from genlab.data.tinyworld.world import World
from genlab.data.translation import Pair

TASKS = ("cipher_to", "cipher_from", "long_cipher_to", "long_cipher_from")
NounPhrase = tuple[str, str | None, str]  # determiner, adjective (or None), noun
Clause = tuple[NounPhrase, str, NounPhrase]  # subject, verb, object


def conjunction(world: World) -> str:
    """The cipher word for "and" (the long sentences' only word outside the short grammar),
    distinct from every name of the world."""
    taken = {name.lower() for name in (world.language, *world.persons, *world.towns)}
    taken |= {name.lower() for name in world.countries}
    taken |= {*world.creatures, *world.objects, *world.lexicon.values()}
    rng = random.Random(f"tinyworld/translation/{world.seed}/{world.size}")
    return fresh_name(rng, taken, cipher_word)


def long_sentence(rng: random.Random) -> list[Clause]:
    """Two or three clauses of the cipher's English grammar, each "NP verb NP"."""

    def noun_phrase() -> NounPhrase:
        adjective = rng.choice(ADJECTIVES) if rng.random() < 0.5 else None
        return rng.choice(DETERMINERS), adjective, rng.choice(NOUNS)

    return [(noun_phrase(), rng.choice(VERBS), noun_phrase()) for _ in range(rng.choice((2, 3)))]


def english_words(clauses: list[Clause]) -> str:
    """The sentence in English order: "det [adj] noun verb det [adj] noun and ..."."""

    def np(p: NounPhrase) -> list[str]:
        return [w for w in p if w is not None]

    return " and ".join(" ".join([*np(s), v, *np(o)]) for s, v, o in clauses)


def cipher_words(world: World, clauses: list[Clause]) -> str:
    """The sentence in the cipher's order: noun phrases head first, verbs last in each clause."""
    lex = world.lexicon

    def np(p: NounPhrase) -> list[str]:
        return [lex[w] for w in reversed(p) if w is not None]

    return f" {conjunction(world)} ".join(" ".join([*np(s), *np(o), lex[v]]) for s, v, o in clauses)


def _english_and_cipher(world: World, task: str, rng: random.Random) -> tuple[str, str, str]:
    """A random sentence of ``task``: its English side, its cipher side and its split key."""
    if task.startswith("long_"):
        clauses = long_sentence(rng)
        english = english_words(clauses)
        return english, cipher_words(world, clauses), f"cipher_long|{english}"
    english = english_phrase(rng)
    return english, world.translate(english), FAMILIES["cipher_to"].key("", {"text": english})


def translation_pairs(
    world: World, task: str, n: int, split: str = "train", seed: int = 0
) -> list[Pair]:
    """``n`` pairs of one task (``TASKS``) in one split, with distinct sources; deterministic in
    all arguments. ``*_to`` tasks translate English into the cipher, ``*_from`` the reverse."""
    if task not in TASKS:
        raise GenlabError(f"unknown translation task {task!r}; choose from: {', '.join(TASKS)}")
    if split not in SPLITS:
        raise GenlabError(f"unknown split {split!r}; choose from: {', '.join(SPLITS)}")
    if n < 0:
        raise GenlabError(f"number of pairs must be >= 0, got {n}")
    rng = random.Random(f"tinyworld/translation/{world.seed}/{world.size}/{task}/{split}/{seed}")
    pairs: dict[str, Pair] = {}
    for _ in range(50 * n + 200):
        if len(pairs) >= n:
            break
        english, cipher, key = _english_and_cipher(world, task, rng)
        if split_of(key) != split:
            continue
        pair = Pair(english, cipher) if task.endswith("_to") else Pair(cipher, english)
        pairs.setdefault(pair.source, pair)
    return list(pairs.values())
