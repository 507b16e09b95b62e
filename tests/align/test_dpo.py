"""DPO: the loss by hand, log 2 at initialisation, reference log-probabilities computed once, and
a run on a user's comparisons that prefers the chosen answers."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

from genlab.align.dpo import (
    DPOConfig,
    answer_example,
    dpo,
    dpo_loss,
    encode_preference_pairs,
    make_dpo_step,
    reference_logprobs,
)
from genlab.data.records import read_comparisons, split_records
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.methods.autoregressive.scoring import sequence_logprobs
from genlab.nets.gpt import IGNORE_INDEX as IGNORE

PAIRS = [
    {"prompt": "what is two plus two?", "chosen": "it is four.", "rejected": "ugh, whatever."},
    {"prompt": "hello", "chosen": "hello there!", "rejected": "figure it out yourself."},
    {
        "prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "yes?"}],
        "chosen": "yes.",
        "rejected": "the answer is no, no, no.",
    },
]


def test_dpo_loss_by_hand():
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-3.0, -5.0, -4.0, -4.5))
    loss, chosen_reward, rejected_reward = dpo_loss(pc, pr, rc, rr, beta=0.5)
    margin = 0.5 * ((-3.0 + 4.0) - (-5.0 + 4.5))
    assert loss.item() == pytest.approx(math.log1p(math.exp(-margin)), rel=1e-6)
    assert chosen_reward.item() == pytest.approx(0.5) and rejected_reward.item() == pytest.approx(
        -0.25
    )


def test_sequence_logprobs_sum_the_answer_tokens_only(tok, make_gpt):
    model = make_gpt().eval()
    inputs, targets = answer_example(tok, "hello", "it is four.")
    answer = tok.encode("it is four.") + [tok.eot_id]
    assert [t for t in targets if t != IGNORE] == answer
    x, y = torch.tensor([inputs]), torch.tensor([targets])
    with torch.no_grad():
        logp = F.log_softmax(model(x)[0], dim=-1)[0]
        manual = sum(logp[i, t].item() for i, t in enumerate(targets) if t != IGNORE)
        assert sequence_logprobs(model, x, y).item() == pytest.approx(manual, rel=1e-5)


def test_loss_is_log_2_when_the_policy_is_the_reference(tok, make_gpt):
    policy = make_gpt()
    tensors, dropped = encode_preference_pairs(tok, PAIRS, 64)
    assert dropped == 0
    ref_chosen, ref_rejected = reference_logprobs(copy.deepcopy(policy), tensors, batch_size=2)
    loss, metrics = make_dpo_step(0.1)(policy.train(), (*tensors, ref_chosen, ref_rejected))
    assert loss.item() == pytest.approx(math.log(2), abs=1e-5)
    assert metrics["reward_margin"].item() == pytest.approx(0.0, abs=1e-5)
    loss.backward()  # and it has a gradient that separates the answers
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())


def test_nll_weight_adds_the_chosen_answers_per_token_nll(tok, make_gpt):
    policy = make_gpt().eval()
    tensors, _ = encode_preference_pairs(tok, PAIRS, 64)
    ref_chosen, ref_rejected = reference_logprobs(copy.deepcopy(policy), tensors, batch_size=2)
    batch = (*tensors, ref_chosen, ref_rejected)
    plain, _ = make_dpo_step(0.1)(policy, batch)
    rpo, metrics = make_dpo_step(0.1, nll_weight=0.5)(policy, batch)
    chosen_x, chosen_y = tensors[0], tensors[1]
    with torch.no_grad():
        logp = F.log_softmax(policy(chosen_x)[0], dim=-1)
    picked = [
        logp[r, i, t].item()
        for r in range(len(chosen_y))
        for i, t in enumerate(chosen_y[r].tolist())
        if t != IGNORE
    ]
    nll = -sum(picked) / len(picked)
    assert metrics["chosen_nll"].item() == pytest.approx(nll, rel=1e-4)
    assert rpo.item() == pytest.approx(plain.item() + 0.5 * nll, rel=1e-4)


def test_dpo_on_a_user_jsonl_moves_probability_to_the_chosen_answers(
    tmp_path, tok, base, train_config
):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(PAIRS[i % 3]) + "\n" for i in range(30)))
    cfg = DPOConfig(
        policy=str(base), out=str(tmp_path / "dpo"), beta=0.5, train=train_config(15, lr=3e-3)
    )
    train, held = split_records(read_comparisons(data), 0.1)
    metrics = dpo(cfg, train, held)
    assert metrics["eval_loss"] < 0.3 and metrics["eval_reward_accuracy"] == 1.0
    tuned, _ = load_gpt(tmp_path / "dpo")
    reference, _ = load_gpt(base)
    tensors, _ = encode_preference_pairs(tok, PAIRS, 64)
    with torch.no_grad():
        before = reference_logprobs(reference, tensors)
        after = reference_logprobs(tuned, tensors)
    # the log-ratio of chosen to rejected grew for every pair
    assert ((after[0] - after[1]) > (before[0] - before[1])).all()
