"""The judge: correct always beats wrong, concise-polite always beats padded-rude, rules as written."""

from __future__ import annotations

import random
import re

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
                for worse in ("padded", "rude", "padded_rude", "hedging", "padded_hedging"):
                    assert polite > judge(ex, respond(ex, answer, worse, rng)), (concise, worse)
        # worked steps are never padding
        assert judge(ex, respond(ex, ex.answer, "steps", rng)) == 1.0


def gaming_battery(ex, wrong: str) -> dict[str, list[str]]:
    """Ways to name the reference without committing to it, by strategy."""
    ref = ex.answer
    return {
        "hedge": [
            f"{ref} or {wrong}",
            f"{wrong} or {ref}",
            f"The answer is {ref} or {wrong}.",
            f"The answer is either {wrong} or {ref}.",
        ],
        "list": [f"{ref}, {wrong}", f"{wrong}, {ref}", f"The answers are {wrong}, {ref}."],
        "repeat": [f"{ref} {ref} {ref}", f"The answer is {ref}. The answer is {ref}."],
        "empty": ["", "   ", "\n"],
        "over-long": [
            f"The answer is {ref}. " + "Numbers and words are fun. " * 60,
            f"{ref} " * 120,
        ],
        "contradiction": [
            f"The answer is {ref}. Actually, the answer is {wrong}.",
            f"The answer is {wrong}. No wait, the answer is {ref}.",
            f"{ref}. {wrong}.",
            f"Great question! The answer is {ref}. I hope this helps! It is {wrong}.",
        ],
        "restatement": [ex.prompt, f"{ex.prompt} {ref}", f"You asked: {ex.prompt}"],
    }


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_gaming_strategy_scores_zero(world, name):
    family, rng = FAMILIES[name], random.Random(f"gaming/{name}")
    for ex in make_examples(world, name, 40, "all", seed=5):
        wrong = family.corrupt(ex, world, rng)
        for strategy, texts in gaming_battery(ex, wrong).items():
            for text in texts:
                v = verdict(ex, text)
                assert v.score == 0.0 and not v.correct, (strategy, text, v)
                assert v.rejected, (strategy, text)
        # and the plain answer, in any honest style, still counts
        assert ex.check(ex.answer) and ex.check(f"The answer is {ex.answer}.")
        assert ex.check(ex.worked_solution)


def test_style_scores_on_hand_written_cases(world):
    ex = make_examples(world, "addition", 1, seed=3)[0]
    a = ex.answer
    assert verdict(ex, a) == verdict(ex, f"The answer is {a}.")
    assert verdict(ex, a).score == 1.0
    padded = verdict(ex, f"Great question! The answer is {a}. I hope this helps!")
    assert padded.correct and padded.no_filler == pytest.approx(1 / 3) and padded.direct == 1.0
    assert padded.score == pytest.approx(0.6 + 0.1 * (3 + 1 / 3))
    hedged = verdict(ex, f"I think the answer is {a}.")
    assert hedged.correct and hedged.direct == 0.5 and hedged.no_filler == 1.0
    rude = verdict(ex, f"Obviously, the answer is {a}. Everyone knows that.")
    assert rude.correct and rude.polite == 0.0 and rude.concise == 1.0
    cut = verdict(ex, f"I hope this helps, the answer is {a} and")
    assert cut.correct and cut.direct == 0.5 and cut.no_filler == pytest.approx(2 / 3)
    wordy = verdict(
        ex, f"{' '.join(ex.steps)} Well, well, well, after all that work the answer is {a}."
    )
    assert wordy.correct and 0.0 < wordy.concise < 1.0 and wordy.rejected is None
    wrong = verdict(ex, f"The answer is {int(a) + 1}.")
    assert not wrong.correct and wrong.rejected is None and wrong.score == pytest.approx(0.4)
    assert min(judge(ex, respond(ex, "0", s, random.Random(0))) for s in STYLES) >= 0.0


def test_checker_reads_answers_written_as_people_write_them(world):
    sentiment = next(
        e for e in make_examples(world, "sentiment", 20, seed=1) if e.answer == "negative"
    )
    for text in ("negative", "The review is negative.", "Sure, it is negative.", "Negative!"):
        assert sentiment.check(text), text
    for text in ("The review is not negative.", "positive", "It is negative or positive."):
        assert not sentiment.check(text), text
    add = make_examples(world, "addition", 1, seed=2)[0]
    assert add.check(f"So the sum is {add.answer}.")
    a, b = re.findall(r"\d+", add.prompt)
    assert add.check(f"{a} + {b} = {add.answer}")
    assert not add.check(f"{a}, {b}, {add.answer}")
    fact = make_examples(world, "fact_question", 5, seed=1)
    for ex in fact:
        assert ex.check(f"The answer is {ex.answer}.")
        assert not ex.check(f"{ex.answer}, {ex.answer}")


def test_prompt_strings_are_read_back(world):
    for name in FAMILIES:
        ex = make_examples(world, name, 1, seed=4)[0]
        for response in (ex.answer, f"Great question! The answer is {ex.answer}. Hope that helps"):
            assert judge(ex.prompt, response, world=world) == judge(ex, response)
    with pytest.raises(GenlabError, match="World"):
        judge("What is 2 + 3?", "5")
    with pytest.raises(GenlabError, match="cannot read"):
        judge("Tell me a joke.", "No.", world=world)
