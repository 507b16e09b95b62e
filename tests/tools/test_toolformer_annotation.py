"""Toolformer's annotation and inference on a tiny GPT that learned the calculator's syntax.

The model is trained for a few seconds on sums written with a call before the result
(``12 + 30 = <call>calculator(12 + 30)</call><result>42</result> 42.``); the tests then check
what Toolformer computes from it: where it wants a call, the filter's three losses (against a
forward pass written out here, not through the one scorer), what is kept, and generation that
runs the calls.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from genlab.data.tokenizer import Tokenizer
from genlab.nets.gpt import GPT, IGNORE_INDEX, GPTConfig
from genlab.tools.generate import generate_with_tools
from genlab.tools.inserted import call_ids, strip_calls, with_calls
from genlab.tools.toolbox import run_call, toolbox
from genlab.tools.toolformer import (
    WEIGHTS,
    AnnotateConfig,
    Candidate,
    annotate,
    call_probabilities,
    candidate_positions,
    keep_rate,
    kept_calls,
    weighted_loss,
)


def _sum(rng: random.Random) -> tuple[str, str, str]:
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    return f"{a} + {b} =", f"calculator({a} + {b})", str(a + b)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    rng = random.Random(0)
    text = [" ".join(f"{p} {r}." for p, _, r in (_sum(rng) for _ in range(8))) for _ in range(200)]
    return Tokenizer.train(text + ["calculator()"] * 50, vocab_size=300)


@pytest.fixture(scope="module")
def model(tokenizer: Tokenizer) -> GPT:
    """Sums with their calls, trained until the call and its arguments are learned."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = random.Random(1)
    examples = []
    for _ in range(512):
        prefix, call, result = _sum(rng)
        ids = tokenizer.encode(f"{prefix} {result}.")
        examples.append(with_calls(tokenizer, ids, [(len(tokenizer.encode(prefix)), call, result)]))
    width = max(len(x) for x, _ in examples)
    inputs = torch.full((len(examples), width), tokenizer.pad_id)
    targets = torch.full((len(examples), width), IGNORE_INDEX)
    for i, (x, y) in enumerate(examples):
        inputs[i, : len(x)], targets[i, : len(y)] = torch.tensor(x), torch.tensor(y)
    gpt = GPT(
        GPTConfig(vocab_size=tokenizer.vocab_size, block_size=128, n_layer=2, n_head=2, n_embd=64)
    )
    opt = torch.optim.AdamW(gpt.parameters(), lr=3e-3)
    for step in range(400):
        rows = torch.randint(0, len(examples), (32,), generator=torch.Generator().manual_seed(step))
        _, loss = gpt(inputs[rows], targets[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    return gpt.eval()


def test_a_call_is_inserted_between_tokens_and_its_result_is_not_a_target(tokenizer):
    ids = tokenizer.encode("12 + 30 = 42.")
    at = len(tokenizer.encode("12 + 30 ="))
    inputs, targets = with_calls(tokenizer, ids, [(at, "calculator(12 + 30)", "42")])
    inserted = call_ids(tokenizer, "calculator(12 + 30)", "42")
    assert inputs + [targets[-1]] == [tokenizer.bos_id, *ids[:at], *inserted, *ids[at:]]
    result = inserted.index(tokenizer.tool_result_id)
    start = at + result  # the target index of <|tool_result|> (targets are shifted by one)
    assert targets[start : start + len(inserted) - result] == [IGNORE_INDEX] * (
        len(inserted) - result
    )
    assert targets[start - 1] == tokenizer.tool_call_end_id  # the call itself is learned
    assert targets[start + len(inserted) - result] == ids[at]  # so is the text after the result
    assert strip_calls(tokenizer, inputs + [targets[-1]])[1:] == ids
    assert call_ids(tokenizer, "c()", None)[-2:] == [
        tokenizer.tool_result_id,
        tokenizer.tool_result_end_id,
    ]


def test_the_arguments_and_the_result_are_spelled_as_the_text_spells_them(tokenizer):
    """Led by a space, a copied number is the same ids in the call, the result and the text."""
    text = tokenizer.encode("What is 872 + 102? The answer is 974.")
    inserted = call_ids(tokenizer, "calculator(872 + 102)", "974")
    assert call_ids(tokenizer, "calculator(  872 + 102 )", "974 ") == inserted
    call = inserted[1 : inserted.index(tokenizer.tool_call_end_id)]
    result = inserted[inserted.index(tokenizer.tool_result_id) + 1 : -1]
    assert tokenizer.decode(call) == "calculator( 872 + 102)"
    for number, where in ((" 872", call), (" 102", call), (" 974", result)):
        ids = tokenizer.encode(number)
        assert any(where[i : i + len(ids)] == ids for i in range(len(where))), number
        assert any(text[i : i + len(ids)] == ids for i in range(len(text))), number


def test_candidate_positions_and_the_weighted_loss():
    p = torch.tensor([0.9, 0.01, 0.3, 0.06, 0.2, 0.04])
    assert candidate_positions(p, top_k=2, tau_s=0.05) == [2, 4]  # never position 0
    assert candidate_positions(p, top_k=5, tau_s=0.05) == [2, 4, 3]
    assert candidate_positions(p, top_k=5, tau_s=0.5) == []
    lp = torch.tensor([-1.0, -2.0, -3.0, -4.0, -5.0, -100.0])  # only five tokens count
    expected = (1 * 1 + 0.8 * 2 + 0.6 * 3 + 0.4 * 4 + 0.2 * 5) / sum(WEIGHTS)
    assert weighted_loss(lp) == pytest.approx(expected)
    assert weighted_loss(lp[:2]) == pytest.approx((1 + 0.8 * 2) / 1.8)


def test_the_filter_keeps_the_best_executed_call_per_text():
    def cand(text, position, result, plus, none, empty):
        return Candidate(
            text, position, 0.5, "calculator", "calculator(1 + 1)", result, plus, none, empty
        )

    cands = [
        cand(0, 3, "2", 1.0, 3.0, 2.5),  # gain 1.5
        cand(0, 5, "2", 0.5, 3.0, 3.0),  # gain 2.5: the best of text 0
        cand(1, 2, "error: no", 0.0, 9.0, 9.0),  # not executed: never kept
        cand(2, 4, "2", 2.0, 2.2, 1.9),  # gain -0.1: the call alone did better
    ]
    assert [c.gain for c in cands] == pytest.approx([1.5, 2.5, 9.0, -0.1])
    assert kept_calls(cands, 1.0) == {0: (5, "calculator(1 + 1)", "2")}
    assert kept_calls(cands, 2.6) == {}
    executed = [c for c in cands if c.executed]
    assert keep_rate(executed, 1.0) == pytest.approx(2 / 3)
    assert keep_rate(executed, -1.0) == 1.0


@torch.no_grad()
def _weighted_loss_by_hand(model: GPT, context: list[int], following: list[int]) -> float:
    ids = torch.tensor([context + following])
    logits, _ = model(ids[:, :-1])
    logp = F.log_softmax(logits[0].float(), -1)
    picked = [logp[len(context) - 1 + j, t] for j, t in enumerate(following)]
    return weighted_loss(torch.stack(picked))


def test_annotation_proposes_executes_and_scores_calls(model, tokenizer):
    rng = random.Random(7)
    sums = [_sum(rng) for _ in range(12)]
    texts = [tokenizer.encode(f"{p} {r}.") for p, _, r in sums]
    answer_at = [len(tokenizer.encode(p)) for p, _, _ in sums]

    probs = call_probabilities(model, tokenizer, texts)
    assert [int(p.argmax()) for p in probs] == answer_at  # a call is wanted before the result
    assert min(float(p[i]) for p, i in zip(probs, answer_at, strict=True)) > 0.5

    tools = toolbox(["calculator"])
    cands = annotate(model, tokenizer, texts, tools, AnnotateConfig(top_k=2, samples=2))
    assert cands and "calculator" in {c.tool for c in cands}
    assert all(c.result == run_call(tools, c.call) for c in cands)
    right = [c for c in cands if c.result == sums[c.text][2]]
    assert len(right) >= len(texts) // 2  # most sampled calls copy the operands right
    for c in cands[:4]:
        ids = texts[c.text]
        before = [tokenizer.bos_id, *ids[: c.position]]
        after = list(ids[c.position : c.position + 5])
        plus = before + call_ids(tokenizer, c.call, c.result)
        empty = before + call_ids(tokenizer, c.call, None)
        by_hand = [_weighted_loss_by_hand(model, x, after) for x in (plus, before, empty)]
        assert [c.loss_plus, c.loss_none, c.loss_empty] == pytest.approx(by_hand, abs=1e-4)
    assert all(c.gain > 1.0 for c in right if c.position == answer_at[c.text])
    kept = kept_calls(cands, 1.0)
    right_kept = [t for t, (_, _, r) in kept.items() if r == sums[t][2]]
    assert len(kept) >= len(texts) // 2 and len(right_kept) >= 0.8 * len(kept)


def test_generation_runs_the_calls_and_hides_them_from_the_text(model, tokenizer):
    rng = random.Random(11)
    sums = [_sum(rng) for _ in range(8)]
    prompts = [[tokenizer.bos_id, *tokenizer.encode(p)] for p, _, _ in sums]
    tools = toolbox(["calculator"])
    answers = generate_with_tools(model, tokenizer, prompts, tools, max_new_tokens=24, stop=("."))
    assert sum(bool(a.calls) for a in answers) >= 6
    for (_, _, result), a in zip(sums, answers, strict=True):
        for call, got in a.calls:
            assert got == run_call(tools, call)
            end = a.ids.index(tokenizer.tool_call_end_id)
            body = [
                tokenizer.tool_result_id,
                *tokenizer.encode(f" {got}"),
                tokenizer.tool_result_end_id,
            ]
            assert a.ids[end + 1 : end + 1 + len(body)] == body  # the result was forced
        assert "calculator" not in a.text and "<|" not in a.text
        if a.calls and a.calls[0][1] == result:
            assert a.text.strip() == result  # the model copies the result it was given

    plain = generate_with_tools(model, tokenizer, prompts, None, max_new_tokens=24, stop=("."))
    assert all(not a.calls and tokenizer.tool_call_id not in a.ids for a in plain)


def test_a_row_past_its_call_budget_gets_an_error_result(model, tokenizer):
    prompts = [[tokenizer.bos_id, *tokenizer.encode("12 + 30 =")]]
    tools = toolbox(["calculator"])
    answer = generate_with_tools(model, tokenizer, prompts, tools, max_new_tokens=24, max_calls=0)
    assert answer[0].calls and answer[0].calls[0][1] == "error: more than 0 calls"


def test_a_call_opens_when_its_token_is_among_the_k_likeliest(model, tokenizer):
    """Toolformer's decoding: k = the vocabulary opens a call at once, never one inside another,
    and forces none past ``max_calls``."""
    prompts = [[tokenizer.bos_id, *tokenizer.encode(p)] for p in ("The sky", "12 + 30 =", "A")]
    tools = toolbox(["calculator"])
    eager = generate_with_tools(
        model, tokenizer, prompts, tools, max_new_tokens=40, max_calls=2,
        call_top_k=tokenizer.vocab_size,
    )  # fmt: skip
    for a in eager:
        assert a.ids[0] == tokenizer.tool_call_id
        opened = [i for i, t in enumerate(a.ids) if t == tokenizer.tool_call_id]
        closed = [i for i, t in enumerate(a.ids) if t == tokenizer.tool_result_end_id]
        assert len(a.calls) <= len(opened) <= len(a.calls) + 1  # the last may run on
        assert all(c < o for c, o in zip(closed, opened[1:], strict=False))  # none nested
