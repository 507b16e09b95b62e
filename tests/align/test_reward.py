"""Reward model: read at the last real token, Bradley-Terry, learns a planted preference, round
trips as its own checkpoint kind."""

from __future__ import annotations

import json
import math

import pytest
import torch

from genlab.align.reward import (
    REFERENCE_WEIGHT,
    RewardConfig,
    RewardModel,
    bradley_terry_loss,
    load_reward_model,
    pairwise_accuracy,
    reward_step,
    save_reward_model,
    train_reward,
)
from genlab.core.errors import GenlabError
from genlab.core.logging import read_metrics
from genlab.data.records import read_comparisons, render_answer, split_records
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.methods.autoregressive.padding import pad_right


def test_bradley_terry_loss_by_hand():
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])
    expected = (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0))) / 2
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(expected, rel=1e-6)
    assert bradley_terry_loss(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(math.log(2))


def test_the_score_is_read_at_the_last_real_token_whatever_the_padding(tok, make_gpt):
    model = RewardModel.from_gpt(make_gpt()).eval()
    model.tokenizer = tok
    short = model.score(["hello there"], ["yes"])
    with_longer_neighbour = model.score(["hello there", "hello"], ["yes", "no " * 20])
    assert with_longer_neighbour[0] == pytest.approx(short[0], abs=1e-5)
    # the head reads the whole answer: a different answer gets a different score
    assert model.score(["hello there"], ["no"])[0] != pytest.approx(short[0], abs=1e-6)


def test_from_gpt_keeps_the_backbone_and_drops_the_unembedding(tok, make_gpt):
    gpt = make_gpt()
    model = RewardModel.from_gpt(gpt)
    assert not any(k.startswith("backbone.lm_head") for k in model.state_dict())
    torch.testing.assert_close(model.backbone.wte.weight, gpt.wte.weight)
    idx = torch.tensor([[1, 2, 3, 4]])
    step_loss, metrics = reward_step(model, (idx, torch.tensor([4]), idx, torch.tensor([4])))
    assert step_loss.item() == pytest.approx(math.log(2)) and metrics["margin"].item() == 0


def test_save_and_load_round_trip_as_a_reward_checkpoint(tmp_path, tok, make_gpt):
    model = RewardModel.from_gpt(make_gpt()).eval()
    model.tokenizer = tok
    save_reward_model(tmp_path / "rm", model, tok)
    loaded = load_reward_model(tmp_path / "rm")
    pairs = (["hello", "what is two plus two?"], ["hi", "four"])
    assert loaded.score(*pairs) == pytest.approx(model.score(*pairs), abs=1e-6)
    with pytest.raises(GenlabError, match="'reward' model"):
        load_gpt(tmp_path / "rm")
    with pytest.raises(GenlabError, match="prompts but"):
        loaded.score(["a"], ["b", "c"])


def test_training_lowers_the_loss_and_ranks_a_planted_easy_pair(tmp_path, tok, base, train_config):
    polite = ["the answer is yes.", "it is four.", "the answer is no.", "hello there, it is four."]
    rude = ["ugh, whatever.", "figure it out yourself.", "ugh.", "whatever, figure it out."]
    records = [
        {"prompt": f"question {i}?", "chosen": polite[i % 4], "rejected": rude[(i // 4) % 4]}
        for i in range(64)
    ]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = RewardConfig(base=str(base), out=str(tmp_path / "rm"), train=train_config(40, lr=3e-3))
    train, held = split_records(read_comparisons(data), 0.1)
    metrics = train_reward(cfg, train, held, held)
    losses = [r["loss"] for r in read_metrics(tmp_path / "rm") if "loss" in r]
    assert losses[-1] < 0.5 * losses[0]
    model = load_reward_model(tmp_path / "rm")
    # an easy pair never seen in training: a polite answer beats a rude one
    chosen, rejected = model.score(["what now?"] * 2, ["the answer is yes.", "ugh, whatever."])
    assert chosen > rejected
    assert metrics["test_accuracy"] == 1.0
    held = [{"prompt": "new?", "chosen": "it is four.", "rejected": "whatever."}]
    assert pairwise_accuracy(model, held) == 1.0


def test_the_reference_term_is_the_base_models_loglik_of_the_answer_by_hand(tok, make_gpt):
    gpt = make_gpt().eval()
    model = RewardModel.from_gpt(gpt, reference=True).eval()
    model.tokenizer = tok
    plain = RewardModel.from_gpt(gpt).eval()
    plain.head.load_state_dict(model.head.state_dict())
    plain.tokenizer = tok
    prompt, answer = "what is two plus two?", "four"
    ids, start = render_answer(tok, prompt, answer)
    with torch.no_grad():
        logp = torch.log_softmax(gpt(torch.tensor([ids]))[0][0].float(), -1)
    by_hand = sum(logp[t - 1, ids[t]].item() for t in range(start, len(ids)))
    expected = plain.score([prompt], [answer])[0] + REFERENCE_WEIGHT * by_hand
    assert model.score([prompt], [answer])[0] == pytest.approx(expected, abs=1e-4)
    # the reference is frozen and stays in eval mode when the reward model trains
    assert not any(p.requires_grad for p in model.reference.parameters())
    assert model.reference_weight.requires_grad
    assert not model.train().reference.training


def test_two_answers_differ_by_the_same_reference_amount_with_or_without_starts(tok, make_gpt):
    model = RewardModel.from_gpt(make_gpt(), reference=True).eval()
    (a, start), (b, _) = (render_answer(tok, "hello", x) for x in ("yes it is", "no"))
    idx = pad_right([a, b], 0)
    lengths = torch.tensor([len(a), len(b)])
    whole = model(idx, lengths)
    answers = model(idx, lengths, torch.tensor([start, start]))
    assert (whole[0] - whole[1]).item() == pytest.approx((answers[0] - answers[1]).item(), abs=1e-4)
    assert whole[0].item() != pytest.approx(answers[0].item(), abs=1e-3)  # the prompt counts


def test_a_reference_reward_model_round_trips_and_old_folders_load(tmp_path, tok, make_gpt):
    model = RewardModel.from_gpt(make_gpt(), reference=True).eval()
    with torch.no_grad():
        model.reference_weight.fill_(0.37)
    model.tokenizer = tok
    save_reward_model(tmp_path / "rm", model, tok)
    loaded = load_reward_model(tmp_path / "rm")
    assert loaded.config.reference and loaded.reference_weight.item() == pytest.approx(0.37)
    pairs = (["hello", "what is two plus two?"], ["hi", "four"])
    assert loaded.score(*pairs) == pytest.approx(model.score(*pairs), abs=1e-6)
    # a folder written before the field existed: its config has no "reference"
    plain = RewardModel.from_gpt(make_gpt()).eval()
    save_reward_model(tmp_path / "old", plain, tok)
    config = tmp_path / "old" / "config.json"
    meta = json.loads(config.read_text())
    del meta["config"]["reference"]
    config.write_text(json.dumps(meta))
    old = load_reward_model(tmp_path / "old")
    assert old.reference is None and not old.config.reference


def test_training_with_the_reference_learns_its_weight(tmp_path, tok, base, train_config):
    records = [
        {"prompt": f"question {i}?", "chosen": "it is four.", "rejected": "ugh, whatever."}
        for i in range(32)
    ]
    cfg = RewardConfig(
        base=str(base), out=str(tmp_path / "rm"), train=train_config(10, lr=3e-3), reference=True
    )
    train_reward(cfg, records[:28], records[28:], records[28:])
    loaded = load_reward_model(tmp_path / "rm")
    assert loaded.reference is not None
    assert loaded.reference_weight.item() != pytest.approx(REFERENCE_WEIGHT, abs=1e-6)
    gpt, _ = load_gpt(base)
    for name, p in gpt.state_dict().items():  # the reference is the base, untouched
        torch.testing.assert_close(loaded.reference.state_dict()[name], p)
