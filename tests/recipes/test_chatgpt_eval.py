"""The evaluation of the ChatGPT recipe: win rates with ties, KL to the reference, few-shot
prompts that fit, summaries scored by TinyWorld's judge and the per-item outcomes behind them,
the held-out split, best-of-n answers, the reward model's per-pair outcomes."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.data.tinyworld import World, make_examples
from genlab.data.tokenizer import Tokenizer
from genlab.nets.gpt import GPT, GPTConfig
from genlab.recipes.chatgpt.evaluate import (
    EvalSettings,
    StageAnswers,
    answer_all,
    answer_best_of_n,
    chat_prompts,
    decode,
    few_shot_prompts,
    heldout_examples,
    kl_to_reference,
    pair_outcomes,
    summarize,
    win_rate,
    wins,
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
    same = kl_to_reference(model, copy.deepcopy(model), prompts, answers)
    assert len(same) == 6 and same == pytest.approx([0.0] * 6, abs=1e-5)  # one per answer
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.lm_head.weight.mul_(3.0)  # a sharper, different distribution (tied embedding)
    kl = kl_to_reference(model, other, prompts, answers)
    assert sum(kl) / len(kl) != pytest.approx(0.0, abs=1e-3)


def test_heldout_prompts_are_the_test_split_or_for_tuning_the_validation_split():
    examples = heldout_examples(0, ("max_list", "sentiment"), 4)
    assert [e.family for e in examples] == ["max_list"] * 4 + ["sentiment"] * 4
    train = {e.prompt for e in make_examples(World(0), "max_list", 300, "train")}
    assert not train & {e.prompt for e in examples}
    test = {e.prompt for e in heldout_examples(0, ("max_list",), 40)}
    validation = {e.prompt for e in heldout_examples(0, ("max_list",), 40, split="validation")}
    assert len(validation) == 40 and not validation & (test | train)
    with pytest.raises(GenlabError, match="unknown eval split"):
        heldout_examples(0, ("max_list",), 4, split="train")
    with pytest.raises(GenlabError, match="unknown eval split"):
        EvalSettings(split="train")


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
    s, _ = summarize(examples, good, None)
    assert (
        s["accuracy_greedy"] == 1.0
        and s["judge_greedy"] == 1.0
        and s["perfect_share_sampled"] == 1.0
    )
    b, items = summarize(examples, bad, good)
    assert b["accuracy_greedy"] == 1.0 and b["accuracy_sampled"] == 0.5
    assert b["win_rate_vs_sft_greedy"] == 0.0  # padded loses to the bare answer every time
    assert summarize(examples, good, bad)[0]["win_rate_vs_sft_sampled"] == 1.0
    # the per-item outcomes the rates are means of, prompt by prompt, answer by answer
    assert items["exact_greedy"] == [1.0, 1.0]
    assert items["exact_sampled"] == [1.0, 0.0, 1.0, 0.0]
    assert items["win_vs_sft_sampled"] == [0.0, 0.0, 0.0, 0.0]
    assert sum(items["judge_sampled"]) / 4 == pytest.approx(b["judge_sampled"])
    assert "kl_to_sft" not in items and b["kl_to_sft"] is None


def test_win_outcomes_and_kl_outcomes_average_to_the_summary():
    assert wins([0.9, 0.4, 0.4], [0.4, 0.4, 0.9]) == [1.0, 0.5, 0.0]
    examples = heldout_examples(0, ("sentiment",), 2)
    right = [e.answer for e in examples]
    base = StageAnswers(greedy=right, sampled=[[a, "no idea"] for a in right])
    mine = StageAnswers(
        greedy=right, sampled=[["no idea", a] for a in right], kl=[0.5, 1.0, 1.5, 3.0]
    )
    summary, items = summarize(examples, mine, base)
    assert items["kl_to_sft"] == [0.5, 1.0, 1.5, 3.0] and summary["kl_to_sft"] == 1.5
    assert items["win_vs_sft_sampled"] == [0.0, 1.0, 0.0, 1.0]
    assert summary["win_rate_vs_sft_sampled"] == 0.5


def test_answer_all_gives_one_greedy_and_k_sampled_answers(tok, model):
    examples = heldout_examples(0, ("sentiment", "max_list"), 2)
    settings = EvalSettings(n_per_family=2, samples=3, max_new_tokens=6, shots=1, batch_size=3)
    chat = answer_all(model, tok, examples, settings, reference=model)
    assert len(chat.greedy) == 4 and [len(s) for s in chat.sampled] == [3] * 4
    assert chat.kl == pytest.approx([0.0] * 12, abs=1e-5)  # one per sampled answer
    again = answer_all(model, tok, examples, settings)
    assert again.sampled == chat.sampled  # seeded
    few = answer_all(model, tok, examples, settings, few_shot_world=0)
    assert few.kl is None and all("\n" not in a for a in few.greedy)


class FakeRewardModel:
    """Scores an answer by its length: the reward model's ``score`` contract, no network."""

    def score(self, prompts, responses, batch_size=64):
        assert len(prompts) == len(responses)
        return [float(len(r)) for r in responses]


def test_best_of_n_answers_are_independent_picks_with_the_analytic_kl(tok, model):
    examples = heldout_examples(0, ("sentiment", "max_list"), 2)
    settings = EvalSettings(n_per_family=2, samples=3, max_new_tokens=6, best_of_n=4)
    answers = answer_best_of_n(model, tok, examples, settings, FakeRewardModel())
    assert [len(s) for s in answers.sampled] == [3] * 4
    assert answers.greedy == [s[0] for s in answers.sampled]  # the first pick
    assert answers.kl == pytest.approx([math.log(4) - 3 / 4] * 12)
    # the reward of the kept answer (scored before stripping: the fake counts its spaces too)
    kept = zip(sum(answers.rewards, []), sum(answers.sampled, []), strict=True)
    assert all(reward >= len(answer) for reward, answer in kept)


def test_pair_outcomes_count_ties_half():
    pairs = [
        {"prompt": "q", "chosen": "long answer", "rejected": "short"},
        {"prompt": "q", "chosen": "a", "rejected": "much longer"},
        {"prompt": "q", "chosen": "same", "rejected": "four"},
    ]
    assert pair_outcomes(FakeRewardModel(), pairs) == [1.0, 0.0, 0.5]
