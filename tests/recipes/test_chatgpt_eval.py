"""The evaluation of the ChatGPT recipe: win rates with ties, KL to the reference, few-shot
prompts that fit, summaries scored by TinyWorld's judge."""

from __future__ import annotations

import copy

import pytest
import torch

from genlab.data.tinyworld import World, make_examples
from genlab.data.tokenizer import Tokenizer
from genlab.nets.gpt import GPT, GPTConfig
from genlab.recipes.chatgpt.evaluate import (
    EvalSettings,
    StageAnswers,
    answer_all,
    chat_prompts,
    decode,
    few_shot_prompts,
    heldout_examples,
    kl_to_reference,
    summarize,
    win_rate,
)


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(["Question: what is it? Answer: The answer is yes."] * 20, 300)


@pytest.fixture(scope="module")
def model(tok) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=160, n_layer=1, n_head=2, n_embd=32))


def test_win_rate_counts_ties_half():
    assert win_rate([1.0, 0.5, 0.2, 0.7], [0.5, 0.5, 0.9, 0.7]) == pytest.approx(
        (1 + 0.5 + 0 + 0.5) / 4
    )
    assert win_rate([0.3] * 5, [0.3] * 5) == 0.5


def test_kl_to_an_identical_reference_is_zero_and_positive_otherwise(tok, model):
    examples = heldout_examples(0, ("sentiment",), 3)
    settings = EvalSettings(n_per_family=3, samples=2, max_new_tokens=8)
    prompts = chat_prompts(tok, examples)
    answers = decode(
        model, tok, prompts, chat=True, temperature=1.0, num_samples=2, settings=settings
    )
    assert kl_to_reference(model, copy.deepcopy(model), prompts, answers) == pytest.approx(
        0.0, abs=1e-5
    )
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.lm_head.weight.mul_(3.0)  # a sharper, different distribution (tied embedding)
    assert kl_to_reference(model, other, prompts, answers) != pytest.approx(0.0, abs=1e-3)


def test_heldout_prompts_are_the_test_split():
    examples = heldout_examples(0, ("max_list", "sentiment"), 4)
    assert [e.family for e in examples] == ["max_list"] * 4 + ["sentiment"] * 4
    train = {e.prompt for e in make_examples(World(0), "max_list", 300, "train")}
    assert not train & {e.prompt for e in examples}


def test_few_shot_prompts_fit_the_budget_and_end_with_the_question(tok):
    examples = heldout_examples(0, ("cipher_to",), 2)
    full = few_shot_prompts(tok, examples, 0, shots=3, seed=0, max_len=10_000)
    short = few_shot_prompts(tok, examples, 0, shots=3, seed=0, max_len=len(full[0]) - 1)
    assert len(short[0]) < len(full[0])
    text = tok.decode(full[0], skip_special=True)
    assert text.count("Question:") == 4 and text.endswith(
        f"Question: {examples[0].prompt}\nAnswer:"
    )
    assert "The answer is" in text


def test_summary_scores_by_the_judge(tok, model):
    examples = heldout_examples(0, ("sentiment",), 2)
    right = [e.answer for e in examples]
    good = StageAnswers(greedy=right, sampled=[[a, a] for a in right])
    padded = [f"Great question! The answer is {a}. I hope this helps!" for a in right]
    bad = StageAnswers(greedy=padded, sampled=[[p, "no idea"] for p in padded])
    s = summarize(examples, good, None)
    assert (
        s["accuracy_greedy"] == 1.0
        and s["judge_greedy"] == 1.0
        and s["perfect_share_sampled"] == 1.0
    )
    b = summarize(examples, bad, good)
    assert b["accuracy_greedy"] == 1.0 and b["accuracy_sampled"] == 0.5
    assert b["win_rate_vs_sft_greedy"] == 0.0  # padded loses to the bare answer every time
    assert summarize(examples, good, bad)["win_rate_vs_sft_sampled"] == 1.0


def test_answer_all_gives_one_greedy_and_k_sampled_answers(tok, model):
    examples = heldout_examples(0, ("sentiment", "max_list"), 2)
    settings = EvalSettings(n_per_family=2, samples=3, max_new_tokens=6, shots=1, batch_size=3)
    chat = answer_all(model, tok, examples, settings, reference=model)
    assert len(chat.greedy) == 4 and [len(s) for s in chat.sampled] == [3] * 4
    assert chat.kl == pytest.approx(0.0, abs=1e-5)
    again = answer_all(model, tok, examples, settings)
    assert again.sampled == chat.sampled  # seeded
    few = answer_all(model, tok, examples, settings, few_shot_world=0)
    assert few.kl is None and all("\n" not in a for a in few.greedy)
