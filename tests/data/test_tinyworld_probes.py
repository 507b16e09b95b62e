"""TinyWorld's minimal pairs and memo traps: each pair differs in the one thing it names, the
fact pairs' good sentence is true and the bad one false, traps contradict the world."""

from __future__ import annotations

import pytest

from genlab.data.tinyworld.minimal_pairs import GRAMMAR, fact_pairs, grammar_pairs
from genlab.data.tinyworld.traps import traps
from genlab.data.tinyworld.world import World


@pytest.fixture(scope="module")
def world() -> World:
    return World(0)


def test_grammar_pairs_break_one_rule_each(world):
    pairs = grammar_pairs(world, 40, seed=1)
    assert [p.phenomenon for p in pairs] == [name for name in GRAMMAR for _ in range(40)]
    for p in pairs:
        good, bad = p.good.split(" "), p.bad.split(" ")
        assert len(good) == len(bad) and good != bad
        differ = [i for i, (a, b) in enumerate(zip(good, bad, strict=True)) if a != b]
        if p.phenomenon == "word_order":
            i, j = differ
            assert j == i + 1 and (good[i], good[j]) == (bad[j], bad[i])
        else:
            [i] = differ
            expected = {"agreement": {("was", "were"), ("is", "are"), ("has", "have"),
                                      ("lives", "live")},
                        "article": {("a", "an"), ("an", "a")}}[p.phenomenon]  # fmt: skip
            assert (good[i], bad[i]) in expected
    assert grammar_pairs(world, 40, seed=1) == pairs and grammar_pairs(world, 40, seed=2) != pairs


def test_fact_pairs_keep_the_sentence_and_swap_the_object_for_a_false_one(world):
    true_sentences = set()
    for fact in world.facts:
        for template in (
            __import__("genlab.data.tinyworld.relations", fromlist=["RELATIONS"])
            .RELATIONS[fact.relation]
            .statements
        ):
            true_sentences.add(world.render(template, fact.subject, fact.object))
    pairs = fact_pairs(world, 200, seed=0, length=len)
    assert len(pairs) == 200
    for p in pairs:
        assert p.good in true_sentences and p.bad not in true_sentences
        good, bad = p.good.split(" "), p.bad.split(" ")
        assert len(good) == len(bad)  # only the object (and its article) changes
        assert len(p.good) == len(p.bad)  # length=len: the false object as long as the true one


def test_traps_contradict_the_world_and_their_controls_name_a_stranger(world):
    items = traps(world, 100, seed=3)
    assert len(items) == 100
    for t in items:
        fact_object = t.memorised.strip(" .")
        stated = t.stated.strip(" .")
        assert stated != fact_object
        assert t.prompt.endswith(t.question) and stated.split(" ")[-1] in t.prompt
        subject = (
            t.question.split(" ")[0] if t.question.split(" ")[0] not in ("The", "In") else None
        )
        stranger = [w for w in t.control.split(" ") if w not in t.prompt.split(" ")]
        assert stranger and all(w.strip(".") not in world.persons for w in stranger)
        assert subject is None or subject in world.persons
    # the memorised object is the world's: find each trap's fact by its subject and relation
    for t in items:
        subject = next(p for p in world.persons if f" {p} " in f" {t.question} ")
        assert t.memorised.strip(" .").split(" ")[-1] == world.value(subject, t.relation)
