"""Each prompting strategy against a scripted model whose outputs are known: the prompts it
builds, the answer it extracts, the vote, the decomposition order, the instruction search."""

from __future__ import annotations

import random
import re

import pytest

from genlab.core.errors import GenlabError
from genlab.data.tinyworld import World, make_examples
from genlab.data.tinyworld.families.base import Example
from genlab.prompting import PromptSettings, answer
from genlab.prompting.cot import ANSWER_TRIGGER, TRIGGER
from genlab.prompting.demos import label_space, select, shown_answers
from genlab.prompting.direct import few_shot_prompt
from genlab.prompting.instruction_induction import Pair, execution_accuracy, induce
from genlab.prompting.least_to_most import split_subquestions
from genlab.prompting.vote import majority
from genlab.recipes.evaluate import by_family
from prompting.fake_lm import ScriptedLM

WORLD = World(0)


def family(name: str, n: int, split: str = "test") -> list[Example]:
    return make_examples(WORLD, name, n, split)


def asked(prompt: str) -> str:
    """The last question of a prompt (the one the model must answer)."""
    return re.findall(r"Question: (.*)\n", prompt + "\n")[-1]


def test_few_shot_prompts_hold_k_demonstrations_of_the_family_never_the_question() -> None:
    pool = family("addition", 30, "train") + family("sentiment", 30, "train")
    question = pool[0]
    prompt = few_shot_prompt(question, pool, PromptSettings(shots=4))
    blocks = prompt.split("\n\n")
    assert len(blocks) == 5 and blocks[-1] == f"Question: {question.prompt}\nAnswer:"
    demos = [b.split("\n")[0].removeprefix("Question: ") for b in blocks[:-1]]
    sums = {e.prompt: e.answer for e in pool if e.family == "addition"}
    assert all(d in sums for d in demos) and question.prompt not in demos
    for block, demo in zip(blocks[:-1], demos, strict=True):  # gold labels, pretraining's layout
        assert block.endswith(f"Answer: The answer is {sums[demo]}.")
    assert prompt == few_shot_prompt(question, pool, PromptSettings(shots=4))  # deterministic
    assert prompt != few_shot_prompt(question, pool, PromptSettings(shots=4, seed=1))


def test_random_labels_come_from_the_label_space_and_similar_demos_share_words() -> None:
    pool = family("sentiment", 40, "train")
    assert sorted(label_space(pool, "sentiment")) == ["negative", "positive"]
    rng = random.Random(0)
    shown = shown_answers(pool[:200], "random", ["positive", "negative"], rng)
    assert set(shown) == {"positive", "negative"}
    gold = [d.answer for d in pool]
    assert shown_answers(pool, "gold", [], rng) == gold
    # random labels disagree with gold about half the time (a coin per demonstration)
    flips = sum(a != b for a, b in zip(shown, gold, strict=False)) / len(pool)
    assert 0.25 < flips < 0.75
    numbers = [
        Example("sum", f"What is {a} plus {b}?", str(a + b)) for a in range(5) for b in (7, 9)
    ]
    target = Example("sum", "What is 3 plus 8?", "11")  # shares 4 words with "3 plus 7/9", 3 else
    picked = select(numbers, target, 2, random.Random(0), "similar")
    assert {d.prompt for d in picked} == {"What is 3 plus 7?", "What is 3 plus 9?"}
    assert target.prompt not in [d.prompt for d in select([*numbers, target], target, 10, rng)]
    with pytest.raises(GenlabError, match="pool has 10"):
        select(numbers, target, 11, rng)


def test_zero_and_few_shot_score_the_extracted_answer_and_refuse_hedges() -> None:
    questions = family("sentiment", 6)
    right = {e.prompt: e.answer for e in questions}
    lm = ScriptedLM(lambda p, j: f" The answer is {right[asked(p)]}.")
    outcomes = answer(lm, questions, family("sentiment", 20, "train"), PromptSettings(shots=2))
    assert all(o.correct for o in outcomes) and lm.requests[0].stop == ("\n",)
    assert lm.requests[0].temperature == 0.0 and lm.requests[0].n == 1
    hedge = ScriptedLM(lambda p, j: " The answer is positive or negative.")
    assert not any(o.correct for o in answer(hedge, questions, [], PromptSettings("zero-shot")))
    wrong = ScriptedLM(lambda p, j: " The answer is neutral.")
    outs = answer(wrong, questions, [], PromptSettings("zero-shot"))
    assert [o.answer for o in outs] == ["neutral"] * 6 and not any(o.correct for o in outs)


def test_few_shot_cot_shows_worked_solutions_and_reads_the_final_answer() -> None:
    questions = family("addition", 4)
    pool = family("addition", 20, "train")
    sums = {e.prompt: e for e in questions}

    def reply(prompt: str, j: int) -> str:
        return " " + sums[asked(prompt)].worked_solution

    lm = ScriptedLM(reply)
    outcomes = answer(lm, questions, pool, PromptSettings("cot", shots=2, reasoning_tokens=80))
    assert all(o.correct for o in outcomes)
    prompt = lm.requests[0].prompts[0]
    assert prompt.count("The answer is") == 2 and "Ones:" in prompt  # steps in every demo
    assert lm.requests[0].max_tokens == 80


def test_zero_shot_cot_reasons_then_extracts_in_a_second_stage() -> None:
    questions = family("addition", 3)
    sums = {e.prompt: e.answer for e in questions}

    def reply(prompt: str, j: int) -> str:
        if prompt.endswith(ANSWER_TRIGGER):
            return f" {sums[asked(prompt)]}. That is all."
        assert prompt.endswith(f"Answer: {TRIGGER}")
        return " First I add the ones, then the tens."

    lm = ScriptedLM(reply)
    outcomes = answer(lm, questions, [], PromptSettings("zs-cot"))
    assert [o.answer for o in outcomes] == [e.answer for e in questions]
    assert all(o.correct for o in outcomes) and len(lm.requests) == 2
    second = lm.requests[1].prompts[0]
    assert f"{TRIGGER} First I add the ones, then the tens. {ANSWER_TRIGGER}" in second


def test_self_consistency_votes_and_records_diversity() -> None:
    question = family("addition", 1)[0]
    truth = int(question.answer)
    paths = [truth, truth + 1, truth, truth + 2, truth]

    lm = ScriptedLM(lambda p, j: f" Some steps. The answer is {paths[j]}.")
    pool = family("addition", 20, "train")
    [out] = answer(lm, [question], pool, PromptSettings("self-consistency", samples=5, shots=1))
    assert out.correct and out.share == pytest.approx(3 / 5) and out.distinct == 3
    assert lm.requests[0].n == 5 and lm.requests[0].temperature == 0.7
    assert "Ones:" in lm.requests[0].prompts[0]  # chains of thought in the demonstrations
    direct = ScriptedLM(lambda p, j: f" The answer is {paths[j]}.")
    answer(direct, [question], pool, PromptSettings("self-consistency", reasoning=False, shots=1))
    assert "Ones:" not in direct.requests[0].prompts[0]


def test_majority_ties_go_to_the_first_and_empty_answers_do_not_vote() -> None:
    vote = majority(["Vorilia.", "", "7", "vorilia", "7"])
    assert vote.answer == "Vorilia." and vote.share == pytest.approx(0.5) and vote.distinct == 2
    assert majority(["", " "]).answer == "" and majority([]).share == 0.0
    assert majority(["b", "a", "a", "b"]).answer == "b"


def test_least_to_most_solves_subquestions_in_order_feeding_answers_forward() -> None:
    questions = [
        Example("chain", "Start at 2, double it, then add 3.", "7"),
        Example("chain", "Start at 5 and add 1.", "6"),
    ]
    pool = [
        Example(
            "chain", "Start at 1, double it.", "2", subquestions=(("What is 1 doubled?", "2"),)
        ),
        Example(
            "chain",
            "Start at 3 and add 1, then double it.",
            "8",
            subquestions=(("What is 3 + 1?", "4"), ("What is 4 doubled?", "8")),
        ),
    ]
    plans = {
        questions[0].prompt: " What is 2 doubled? What is that plus 3? What is",
        questions[1].prompt: " What is 5 + 1?",
    }
    seen: list[str] = []

    def reply(prompt: str, j: int) -> str:
        last = prompt.split("\n\n")[-1]
        if last.endswith("Subquestions:"):
            assert "Subquestions: What is 1 doubled?" in prompt  # decomposition demos
            return plans[asked(last + "\n")]
        sub = last.rsplit("Q: ", 1)[1].removesuffix("\nA:")
        seen.append(sub)
        if sub == "What is that plus 3?":
            assert "Q: What is 2 doubled?\nA: 4\n" in last  # the first answer fed forward
            return " 7"
        return {"What is 2 doubled?": " 4", "What is 5 + 1?": " 6"}[sub]

    lm = ScriptedLM(reply)
    outcomes = answer(lm, questions, pool, PromptSettings("least-to-most", shots=2))
    assert [o.answer for o in outcomes] == ["7", "6"] and all(o.correct for o in outcomes)
    assert seen == ["What is 2 doubled?", "What is 5 + 1?", "What is that plus 3?"]
    assert split_subquestions(" A? B?  C") == ["A?", "B?"]


def test_instruction_induction_keeps_the_candidate_that_executes_best() -> None:
    pairs = [Pair(w, w + "s") for w in ("cat", "dog", "sun", "boat", "tree", "hat")]

    def reply(prompt: str, j: int) -> str:
        if prompt.startswith("I gave a friend"):
            assert "Input: " in prompt and prompt.endswith("The instruction was")
            return ' "Repeat the word."'
        if prompt.startswith("Generate a variation"):
            return " Shout the word."
        word = prompt.split("\nAnswer:")[0].rsplit(" ", 1)[1]
        if prompt.startswith("Question: Write the plural of") or "Shout" in prompt:
            return f" The answer is {word}s."
        return f" The answer is {word}."

    lm = ScriptedLM(reply)
    found = induce(lm, pairs[:3], pairs[3:], n_candidates=2, given=["Write the plural of"])
    assert found.best == "Write the plural of"
    assert dict(found.scores) == {"Write the plural of": 1.0, "Repeat the word.": 0.0}
    searched = induce(lm, pairs[:3], pairs[3:], n_candidates=2, rounds=1, keep=1)
    assert searched.best == "Shout the word." and len(searched.scores) == 2
    # its proposals alone are what a search-free induction finds
    assert searched.proposed == induce(lm, pairs[:3], pairs[3:], n_candidates=2).scores
    assert searched.proposed == [("Repeat the word.", 0.0)]
    assert execution_accuracy(lm, [], pairs) == []


def test_scores_per_family_have_intervals_and_bad_settings_are_refused() -> None:
    questions = family("addition", 10) + family("sentiment", 10)
    right = {e.prompt: e.answer for e in family("addition", 10)}
    lm = ScriptedLM(lambda p, j: f" The answer is {right.get(asked(p), 'x')}.")
    results = by_family(answer(lm, questions, [], PromptSettings("zero-shot")))
    assert list(results) == ["addition", "sentiment"]
    assert results["addition"] == {"accuracy": 1.0, "ci": [1.0, 1.0], "n": 10}
    assert results["sentiment"]["accuracy"] == 0.0
    with pytest.raises(GenlabError, match="strategy='tree'"):
        PromptSettings("tree")
    with pytest.raises(GenlabError, match="needs demonstrations"):
        answer(lm, questions, [], PromptSettings("few-shot"))


def test_an_instruction_goes_bare_to_a_chat_model_and_its_whole_reply_is_read() -> None:
    questions = family("addition", 3)
    sums = {e.prompt: e for e in questions}
    lm = ScriptedLM(lambda p, j: f"Sure! {' '.join(sums[p].steps)} The answer is {sums[p].answer}.")
    outcomes = answer(lm, questions, [], PromptSettings("instruction", reasoning_tokens=64))
    assert all(o.correct for o in outcomes)
    assert lm.requests[0].prompts == [e.prompt for e in questions]  # no layout, no demonstrations
    assert lm.requests[0].stop == () and lm.requests[0].max_tokens == 64
