"""The judge: correct always beats wrong, concise-polite always beats padded-rude, rules as written."""

from __future__ import annotations

import random

import pytest

from genlab.core.errors import GenlabError
from genlab.data.tinyworld import (
    FAMILIES,
    STYLES,
    World,
    judge,
    make_examples,
    respond,
    verdict,
)
from genlab.data.tinyworld.preferences import candidates


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=0, size=64)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_correct_always_beats_wrong_and_concise_polite_beats_padded_rude(world, name):
    family, rng = FAMILIES[name], random.Random(f"judge/{name}")
    for ex in make_examples(world, name, 80, "all", seed=11):
        wrong = family.corrupt(ex, world, rng)
        texts = candidates(ex, wrong, rng)
        right = [judge(ex, t) for t in texts if ex.check(t)]
        wrong_scores = [judge(ex, t) for t in texts if not ex.check(t)]
        assert right and wrong_scores
        assert min(right) > max(wrong_scores), ex.prompt
        assert judge(ex, ex.answer) == 1.0
        for answer in (ex.answer, wrong):
            for concise in ("terse", "sentence"):
                polite = judge(ex, respond(ex, answer, concise, rng))
                for worse in ("padded", "rude", "padded_rude", "hedging", "rambling"):
                    assert polite > judge(ex, respond(ex, answer, worse, rng)), (concise, worse)
        # worked steps are never padding
        assert judge(ex, respond(ex, ex.answer, "steps", rng)) == 1.0


def test_rules_part_by_part(world):
    ex = make_examples(world, "addition", 1, seed=3)[0]
    a = ex.answer
    assert verdict(ex, a) == verdict(ex, f"The answer is {a}.")
    padded = verdict(ex, f"Great question! The answer is {a}. I hope this helps!")
    assert padded.correct and padded.helpful == pytest.approx(0.7) and padded.tone == 1.0
    hedged = verdict(ex, f"I think the answer is {a}.")
    assert hedged.correct and hedged.helpful == pytest.approx(0.7)
    rude = verdict(ex, f"Obviously, the answer is {a}. Everyone knows that.")
    assert rude.correct and rude.helpful == 1.0 and rude.tone == 0.0
    cut = verdict(ex, f"The answer is {a}. I also want to say that")
    assert cut.correct and cut.helpful == pytest.approx(0.7)
    ramble = verdict(ex, f"The answer is {a}. The answer is {a}.")
    assert ramble.tone == pytest.approx(0.7)
    long = verdict(ex, f"The answer is {a}. " + "Numbers are fun to add up. " * 20)
    assert long.helpful == pytest.approx(0.7) and long.tone == pytest.approx(0.7)
    empty = verdict(ex, "   ")
    assert not empty.correct and empty.helpful == 0.0
    assert min(judge(ex, respond(ex, "0", s, random.Random(0))) for s in STYLES) >= 0.0


def test_prompt_strings_are_read_back(world):
    for name in FAMILIES:
        ex = make_examples(world, name, 1, seed=4)[0]
        for response in (ex.answer, f"Great question! The answer is {ex.answer}. Hope that helps"):
            assert judge(ex.prompt, response, world=world) == judge(ex, response)
    with pytest.raises(GenlabError, match="World"):
        judge("What is 2 + 3?", "5")
    with pytest.raises(GenlabError, match="cannot read"):
        judge("Tell me a joke.", "No.", world=world)
