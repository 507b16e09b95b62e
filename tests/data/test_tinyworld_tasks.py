"""TinyWorld's instruction tasks: exact checkers, worked steps, splits, held-out families."""

from __future__ import annotations

import random
import re

import pytest

from genlab.core.errors import GenlabError
from genlab.data.tinyworld import (
    DEFAULT_HELD_OUT,
    FAMILIES,
    Example,
    TaskSuite,
    World,
    extract_answer,
    make_examples,
    matches,
    parse_prompt,
    split_of,
    task_families,
)
from genlab.data.tinyworld.families.arithmetic import Addition
from genlab.data.tinyworld.worked import false_equations

REQUIRED = {
    "fact_question",
    "multi_hop",
    "addition",
    "subtraction",
    "multiplication",
    "word_problem",
    "reverse_word",
    "spell_word",
    "uppercase",
    "count_letters",
    "sort_list",
    "max_list",
    "compare_numbers",
    "day_of_week",
    "cipher_to",
    "cipher_from",
    "sentiment",
    "yes_no_fact",
}


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=0, size=64)


@pytest.fixture(scope="module")
def examples(world) -> dict[str, list[Example]]:
    return {name: make_examples(world, name, 60, "all", seed=7) for name in FAMILIES}


def test_families_and_phrasings():
    assert set(task_families()) >= REQUIRED and len(task_families()) >= 16
    for family in FAMILIES.values():
        for templates in family.phrasings.values():
            assert len(set(templates)) >= 3, family.name


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_checker_accepts_its_reference_and_rejects_corruptions(world, examples, name):
    family, rng = FAMILIES[name], random.Random(name)
    assert len(examples[name]) == 60
    for ex in examples[name]:
        assert ex.check(ex.answer), (ex.prompt, ex.answer)
        assert ex.check(f"The answer is {ex.answer}."), ex.prompt
        assert ex.check(f"  **{ex.answer}**  "), ex.prompt
        assert ex.check(ex.worked_solution), ex.worked_solution
        assert not ex.check(""), ex.prompt
        for _ in range(5):
            wrong = family.corrupt(ex, world, rng)
            assert wrong != ex.answer
            assert not ex.check(wrong), (ex.prompt, ex.answer, wrong)
            assert not ex.check(f"The answer is {wrong}."), (ex.prompt, wrong)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_prompts_read_back_and_steps_agree(world, examples, name):
    for ex in examples[name]:
        back = parse_prompt(ex.prompt, world)
        assert back is not None and back.family == name, ex.prompt
        assert (back.answer, back.steps, back.subquestions) == (
            ex.answer,
            ex.steps,
            ex.subquestions,
        )
        assert false_equations(" ".join(ex.steps)) == []
        if ex.subquestions:
            assert ex.subquestions[-1][1] == ex.answer, ex.subquestions
        if name != "fact_question":
            assert ex.steps, ex.prompt
        assert Example.from_dict(ex.to_dict()) == ex


def test_answer_extraction_rule():
    assert (
        extract_answer("Let me think.\n4 + 5 = 9, so 9 + 3 = 12.\nThe answer is 12. Hope so!")
        == "12"
    )
    assert extract_answer("Answer: yes") == "yes"
    assert extract_answer("My answer is: 'Gunford'.") == "Gunford"
    assert extract_answer("First line.\nSecond. Last sentence here.") == "Last sentence here"
    assert extract_answer("   ") == ""
    assert matches("So the total is 1,234.", "1234", "number")
    assert matches("Tavo is 23 years old.", "23", "number")
    assert not matches("It is 123.", "23", "number")
    assert matches("The capital of Kikuland is Gunford.", "Gunford", "word")
    assert matches("a bulus", "bulus", "word")
    assert not matches("The review is not positive.", "positive", "word")
    assert not matches("Gunfordia", "Gunford", "word")
    assert matches("2,5,9", "2, 5, 9", "sequence") and not matches(
        "1, 2, 5, 9", "2, 5, 9", "sequence"
    )
    assert matches("THE RED BIRD", "THE RED BIRD", "sequence", case_sensitive=True)
    assert not matches("The Red Bird", "THE RED BIRD", "sequence", case_sensitive=True)
    assert matches("k e l o", "k-e-l-o", "letters") and not matches("kelo", "k-e-l-o", "letters")
    assert matches("No, it is not.", "no", "yesno") and matches("True.", "yes", "yesno")
    assert not matches("I do not know", "no", "yesno")


def test_number_answers_of_fact_questions_match_as_numbers(world):
    ages = [
        e for e in make_examples(world, "fact_question", 300, "all") if e.meta["variant"] == "age"
    ]
    assert ages and all(e.match == "number" for e in ages)
    ex = ages[0]
    assert ex.check(f"{ex.prompt.split()[-1].rstrip('?')} is {ex.answer} years old.")


def test_examples_are_deterministic_and_seeded(world):
    a = make_examples(world, "multiplication", 30, "train", seed=1)
    assert a == make_examples(world, "multiplication", 30, "train", seed=1)
    assert a != make_examples(world, "multiplication", 30, "train", seed=2)
    assert make_examples(World(seed=9), "fact_question", 5) != make_examples(
        world, "fact_question", 5
    )
    big = make_examples(world, Addition(max_digits=5), 50, "train")
    assert max(e.meta["digits"] for e in big) == 5


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_within_family_splits_are_disjoint(world, name):
    keys, prompts = {}, {}
    for split in ("train", "validation", "test"):
        exs = [e for seed in (0, 1) for e in make_examples(world, name, 80, split, seed)]
        assert exs, split
        assert all(split_of(e.meta["key"]) == split for e in exs)
        keys[split] = {e.meta["key"] for e in exs}
        prompts[split] = {e.prompt for e in exs}
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not keys[a] & keys[b], (name, a, b)
        assert not prompts[a] & prompts[b], (name, a, b)


def test_no_family_phrasing_leaks_through_other_families_or_the_corpus(world, examples):
    """Holding any family out keeps its instructions unseen: no other family's sub-questions and
    no corpus sentence reads as one of its prompts (fact questions excepted, by design: they are
    the world's own questions)."""
    for name, exs in examples.items():
        others = [f for f in FAMILIES if f not in (name, "fact_question")]
        for ex in exs:
            for question, _ in ex.subquestions:
                assert parse_prompt(question, world, others) is None, (name, question)
    not_facts = [f for f in FAMILIES if f != "fact_question"]
    checked = 0
    for doc in world.corpus(n_docs=600, seed=0):
        for line in doc.split("\n"):
            line = line.split(": ", 1)[-1]
            for sentence in [line, *re.split(r"(?<=[.?!]) ", line)]:
                checked += 1
                assert parse_prompt(sentence, world, not_facts) is None, sentence
    assert checked > 5000


def test_held_out_families_never_leak_into_tuning_splits(world):
    suite = TaskSuite(world)
    assert set(suite.held_out) == set(DEFAULT_HELD_OUT)
    for split in ("train", "validation", "test"):
        exs = suite.examples(split, n_per_family=40)
        assert {e.family for e in exs} == set(suite.tuned)
        # read back from the bare prompt too: no held-out task hides under another family
        for ex in exs:
            assert parse_prompt(ex.prompt, world).family not in DEFAULT_HELD_OUT
    held = suite.examples("held_out", n_per_family=40)
    assert {e.family for e in held} == set(DEFAULT_HELD_OUT)

    custom = TaskSuite(world, held_out=["sentiment", "addition"])
    assert {e.family for e in custom.examples("train", 5)} == set(FAMILIES) - {
        "sentiment",
        "addition",
    }
    assert {e.family for e in custom.examples("held_out", 5)} == {"sentiment", "addition"}
    assert TaskSuite(world, held_out=()).held_out == ()
    with pytest.raises(GenlabError, match="no_such_family"):
        TaskSuite(world, held_out=["no_such_family"])
    with pytest.raises(GenlabError, match="split"):
        suite.examples("dev")


def test_cipher_directions_share_split_keys():
    """No English/cipher pair is trained on in one direction and tested in the other."""
    world = World(seed=0)
    to_train = {e.answer for e in make_examples(world, "cipher_from", 2000, "train", seed=0)}
    test_to = make_examples(world, "cipher_to", 200, "test", seed=0)
    test_from = make_examples(world, "cipher_from", 200, "test", seed=0)
    assert test_to and test_from
    english_of_test_to = {e.meta["key"] for e in test_to}
    assert all(k.startswith("cipher||text=") for k in english_of_test_to)
    leaked = [e for e in test_to if e.prompt.split("'")[1] in to_train]
    assert leaked == []
    train_to = {e.answer for e in make_examples(world, "cipher_to", 2000, "train", seed=0)}
    assert not [e for e in test_from if e.prompt.split("'")[1] in train_to]
