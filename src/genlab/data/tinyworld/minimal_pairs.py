"""Minimal pairs: two sentences that differ in one thing, one acceptable and one not.

A language model "knows" the difference when it gives the acceptable sentence the higher
probability (BLiMP, Warstadt et al., 2020). Grammar pairs break one rule of the corpus's English
in a true sentence (subject-verb agreement, word order, the article before a word); fact pairs
keep the grammar and swap the object of a true statement for another of its kind, so that only
world knowledge tells them apart (Zhang et al., 2021, "When do you need billions of words of
pretraining data?", ask which of the two a model learns first and from how much text). Every
pair is built from a statement the corpus could contain, with the same paraphrases.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from genlab.data.tinyworld.relations import RELATIONS
from genlab.data.tinyworld.world import Fact, World

# a verb of the corpus's statements and its plural form, the agreement error
_AGREEMENT = {"was": "were", "is": "are", "has": "have", "lives": "live"}
_ARTICLE = re.compile(r"\b(a|an) (\w+)")


@dataclass(frozen=True)
class MinimalPair:
    """An acceptable sentence, its broken twin, and what differs (``phenomenon``); ``freq_class``
    is the fact's frequency in the corpus (frequent, medium, rare) for every pair."""

    good: str
    bad: str
    phenomenon: str  # agreement | word_order | article | fact
    freq_class: str


def _agreement(sentence: str, rng: random.Random) -> str | None:
    words = sentence.split(" ")
    spots = [i for i, w in enumerate(words) if w in _AGREEMENT]
    if not spots:
        return None
    i = rng.choice(spots)
    return " ".join([*words[:i], _AGREEMENT[words[i]], *words[i + 1 :]])


def _word_order(sentence: str, rng: random.Random) -> str | None:
    """Two neighbouring words of the sentence's middle swapped (not the last, which holds the
    full stop, so the pair keeps its punctuation)."""
    words = sentence.split(" ")
    spots = [i for i in range(1, len(words) - 2) if words[i] != words[i + 1]]
    if not spots:
        return None
    i = rng.choice(spots)
    words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def _article(sentence: str, rng: random.Random) -> str | None:
    spots = list(_ARTICLE.finditer(sentence))
    if not spots:
        return None
    m = rng.choice(spots)
    wrong = "an" if m.group(1) == "a" else "a"
    return sentence[: m.start(1)] + wrong + sentence[m.end(1) :]


GRAMMAR: dict[str, Callable[[str, random.Random], str | None]] = {
    "agreement": _agreement,
    "word_order": _word_order,
    "article": _article,
}


def grammar_pairs(world: World, n: int, seed: int = 0) -> list[MinimalPair]:
    """``n`` pairs per grammar phenomenon, each a true statement of a fact (drawn uniformly,
    so rare facts count as much as frequent ones) and the same statement with one error."""
    rng = random.Random(f"tinyworld/grammar-pairs/{seed}")
    pairs: list[MinimalPair] = []
    for phenomenon, breaker in GRAMMAR.items():
        found: list[MinimalPair] = []
        for _ in range(100 * n):
            if len(found) == n:
                break
            fact = rng.choice(world.facts)
            good = world.statement(fact, rng)
            bad = breaker(good, rng)
            if bad is not None and bad != good:
                found.append(MinimalPair(good, bad, phenomenon, fact.freq_class))
        pairs += found
    return pairs


def fact_pairs(
    world: World,
    n: int,
    seed: int = 0,
    length: Callable[[str], int] | None = None,
    relations: tuple[str, ...] = ("born_in", "lives_in", "pet", "job", "favourite_colour"),
) -> list[MinimalPair]:
    """``n`` pairs of a true statement and the same statement with another object of the same
    kind (a false fact), over facts drawn uniformly from ``relations``. With ``length`` (a
    tokenizer's token count) the false object has as many tokens as the true one, so that a model
    that knows nothing prefers neither sentence for its length."""
    rng = random.Random(f"tinyworld/fact-pairs/{seed}")
    facts = [f for f in world.facts if f.relation in relations]
    pairs: list[MinimalPair] = []
    for _ in range(100 * n):
        if len(pairs) == n:
            break
        fact = rng.choice(facts)
        wrong = _other_object(world, fact, rng, length)
        if wrong is None:
            continue
        template = rng.choice(RELATIONS[fact.relation].statements)
        good = world.render(template, fact.subject, fact.object)
        bad = world.render(template, fact.subject, wrong)
        pairs.append(MinimalPair(good, bad, "fact", fact.freq_class))
    return pairs


def _other_object(
    world: World, fact: Fact, rng: random.Random, length: Callable[[str], int] | None
) -> str | None:
    kind = RELATIONS[fact.relation].object_kind
    choices = [o for o in world.entities(kind) if o != fact.object]
    if length is not None:
        size = length(fact.object)
        choices = [o for o in choices if length(o) == size]
    return rng.choice(choices) if choices else None
