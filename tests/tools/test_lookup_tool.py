"""Fact lookup: every fact of a world by every phrase that names it, chains, and clear refusals."""

from __future__ import annotations

import re

import pytest

from genlab.data.tinyworld.families.knowledge import MultiHop
from genlab.data.tinyworld.world import World
from genlab.tools.base import ToolError
from genlab.tools.lookup import MAX_HOPS, PHRASES, Lookup


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=5, size=16)


def test_every_fact_by_every_phrase(world: World) -> None:
    lookup = Lookup(world)
    checked = set()
    for fact in world.facts:
        kind = world.kind_of(fact.subject)
        phrases = [p for p, by_kind in PHRASES.items() if by_kind.get(kind) == fact.relation]
        if fact.relation == "cipher":  # the translator's job
            assert not phrases
            continue
        assert phrases, fact
        for phrase in phrases:
            assert lookup(f"{phrase} of {fact.subject}") == world.value(fact.subject, fact.relation)
            assert lookup(f"The {phrase.upper()} of the {fact.subject.lower()}?") == fact.object
            assert lookup(f"{fact.subject}'s {phrase}") == fact.object
        checked.add(fact.relation)
    assert len(checked) == 17  # every relation but the cipher


def test_hand_checked_facts(world: World) -> None:
    lookup = Lookup(world)
    person = world.persons[0]
    pet = world.value(person, "pet")
    assert lookup(f"pet of {person}") == pet
    assert lookup(f"legs of a {pet}") == world.value(pet, "legs")
    # one phrase, two relations, told apart by the entity's kind
    assert lookup(f"home of {person}") == world.value(person, "lives_in")
    assert lookup(f"home of the {pet}") == world.value(pet, "home")


@pytest.mark.parametrize(
    ("variant", "chain"),
    [
        ("friend_born", "birthplace of the best friend of {s}"),
        ("friend_born_country", "country of the birthplace of {s}'s best friend"),
        ("friend_born_capital", "the capital of the country of the birthplace of {s}'s friend"),
        ("home_capital", "capital of the country of the home of {s}"),
    ],
)
def test_chains_answer_multi_hop_questions(world: World, variant: str, chain: str) -> None:
    lookup = Lookup(world)
    for person in world.persons:
        expected = MultiHop().solve(world, variant, {"s": person}).answer
        assert lookup(chain.format(s=person)) == expected


@pytest.mark.parametrize(
    ("question", "reason"),
    [
        ("pet of Nobody", "unknown entity 'Nobody'"),
        ("wife of {person}", "unknown relation 'wife'; known: birthplace, home"),
        ("capital of {person}", "{person} is a person; capital is asked of a country"),
        ("home of {country}", "is a country; home is asked of a person or creature"),
        ("pet of the favourite colour of {person}", "is not an entity, so it has no pet"),
        ("", "no entity named"),
        ("pet of", "unknown entity 'pet of'"),
        (" of ".join(["friend"] * (MAX_HOPS + 1) + ["{person}"]), "more than 4 relations"),
        ("x" * 201, "longer than 200"),
    ],
)
def test_refusals(world: World, question: str, reason: str) -> None:
    fill = {"person": world.persons[0], "country": world.countries[0]}
    with pytest.raises(ToolError, match=re.escape(reason.format(**fill))):
        Lookup(world)(question.format(**fill))
