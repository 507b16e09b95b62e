"""TinyWorld's world: deterministic, distinct pronounceable names, consistent facts, Zipf weights."""

from __future__ import annotations

import random
import re

import pytest

from genlab.core.errors import GenlabError
from genlab.data.tinyworld import FREQ_CLASSES, RELATIONS, World
from genlab.data.tinyworld.names import template_words
from genlab.data.tinyworld.vocabulary import ENGLISH_WORDS

SYLLABLES = re.compile(r"(?:[bdfgklmnprstvz][aeiou][lmnrs]?)+")


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=0, size=64)


def test_same_seed_same_world_and_different_seeds_differ(world):
    again = World(seed=0, size=64)
    assert again.facts == world.facts
    assert again.lexicon == world.lexicon and again.language == world.language
    other = World(seed=1, size=64)
    assert other.persons != world.persons
    assert [f.object for f in other.facts] != [f.object for f in world.facts]


def test_sizes_scale_and_small_sizes_are_refused():
    w = World(seed=3, size=16)
    assert (len(w.persons), len(w.countries), len(w.towns), len(w.creatures), len(w.objects)) == (
        16,
        2,
        6,
        4,
        4,
    )
    big = World(seed=3, size=256)
    assert (len(big.persons), len(big.countries), len(big.towns)) == (256, 32, 96)
    with pytest.raises(GenlabError, match="at least 4"):
        World(seed=0, size=3)


def test_names_are_distinct_pronounceable_and_not_english(world):
    names = [
        *world.persons,
        *world.towns,
        *world.countries,
        *world.creatures,
        *world.objects,
        *world.lexicon.values(),
        world.language,
    ]
    assert len(set(n.lower() for n in names)) == len(names)
    reserved = template_words()
    for name in names:
        assert name.lower() not in reserved
    for name in [*world.persons, *world.creatures, *world.lexicon.values()]:
        assert SYLLABLES.fullmatch(name.lower()), name
    for name in world.towns:
        assert re.fullmatch(r"[A-Z][a-z]+(ton|by|ford|dale|wick)", name), name
    for name in world.countries:
        assert re.fullmatch(r"[A-Z][a-z]+(ia|land)", name), name
    assert set(world.lexicon) == set(ENGLISH_WORDS)


def test_facts_are_consistent(world):
    for country in world.countries:
        assert world.value(world.value(country, "capital"), "in_country") == country
    for person in world.persons:
        assert world.value(person, "best_friend") != person
        assert world.value(person, "born_in") in world.towns
        assert world.value(world.value(person, "pet"), "legs") in ("2", "4", "6", "8")
        assert len(world.facts_about(person)) == 7
    for fact in world.facts:
        rel = RELATIONS[fact.relation]
        assert world.kind_of(fact.subject) in (*rel.subject_kind.split("|"), None)
        assert fact.object in world.entities(rel.object_kind)
    assert world.english == {c: e for e, c in world.lexicon.items()}
    assert world.translate("the red bird") == " ".join(
        world.lexicon[w] for w in ("the", "red", "bird")
    )


def test_every_relation_has_three_paraphrases_and_three_questions(world):
    rng = random.Random(0)
    for rel in RELATIONS.values():
        assert len(set(rel.statements)) >= 3 and len(set(rel.questions)) >= 3
    for fact in world.facts[:50]:
        sentence = world.statement(fact, rng)
        assert fact.object in sentence and fact.subject in sentence and "{" not in sentence


def test_zipf_weights_and_frequency_classes(world):
    facts = world.facts
    n = len(facts)
    assert sorted(f.rank for f in facts) == list(range(1, n + 1))
    assert sum(f.weight for f in facts) == pytest.approx(1.0)
    by_rank = sorted(facts, key=lambda f: f.rank)
    # weight is proportional to 1/rank
    assert by_rank[0].weight / by_rank[9].weight == pytest.approx(10.0)
    counts = {c: sum(f.freq_class == c for f in facts) for c in FREQ_CLASSES}
    assert counts["frequent"] == int(0.1 * n)
    assert counts["frequent"] + counts["medium"] == int(0.4 * n)
    assert all(f.freq_class == "frequent" for f in by_rank[: counts["frequent"]])
    assert all(f.freq_class == "rare" for f in by_rank[-counts["rare"] :])
