"""Unlearning on a tiny GPT that memorised a dozen (context, answer) pairs: the forget answers'
NLL rises a lot while the retain answers' rises little (gradient difference, NPO), weights
outside ``layers`` stay bit-identical, the same seed gives the same weights, bad input is one
line."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.nets.gpt import GPT, IGNORE_INDEX, GPTConfig
from genlab.research.membership import answer_nll
from genlab.research.unlearning import UnlearnConfig, pack, trainable_parameters, unlearn

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 48


def _pairs(seed: int, n: int) -> list[tuple[list[int], list[int]]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randint(1, VOCAB, (4,), generator=g).tolist(),
            torch.randint(1, VOCAB, (3,), generator=g).tolist(),
        )
        for _ in range(n)
    ]


PAIRS = _pairs(0, 12)
FORGET, RETAIN = PAIRS[:4], PAIRS[4:]


@pytest.fixture(scope="module")
def memorised() -> dict[str, torch.Tensor]:
    """The weights of a tiny GPT trained until it recalls every answer (NLL < 0.05 a token)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", vocab_size=VOCAB, block_size=16))
    inputs, targets = pack(PAIRS, 16)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(200):
        _, loss = model(inputs, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert answer_nll(model, PAIRS).max() < 0.05
    return {k: v.clone() for k, v in model.state_dict().items()}


def _model(state: dict[str, torch.Tensor]) -> GPT:
    model = GPT(GPTConfig.preset("tiny", vocab_size=VOCAB, block_size=16))
    model.load_state_dict(state)
    return model.eval()


def test_pack_scores_only_the_answer_and_keeps_the_end_of_long_pairs() -> None:
    inputs, targets = pack([([5, 6, 7], [8, 9]), ([1], [2])], block_size=16)
    assert inputs.tolist() == [[5, 6, 7, 8], [1, 0, 0, 0]]
    assert targets.tolist() == [[-100, -100, 8, 9], [2, -100, -100, -100]]
    inputs, targets = pack([(list(range(1, 11)), [20, 21])], block_size=4)
    assert inputs.tolist() == [[8, 9, 10, 20]]
    assert targets.tolist() == [[IGNORE_INDEX, IGNORE_INDEX, 20, 21]]


@pytest.mark.parametrize("method", ["graddiff", "npo"])
def test_forget_nll_rises_while_retain_nll_stays(memorised, method: str) -> None:
    model = _model(memorised)
    history = unlearn(model, FORGET, RETAIN, UnlearnConfig(method=method, steps=40, lr=1e-3))
    assert len(history) == 40 and [r["step"] for r in history[:2]] == [1, 2]
    forget, retain = answer_nll(model, FORGET), answer_nll(model, RETAIN)
    assert forget.min() > 2.0  # from < 0.05: below chance (log 48 = 3.9) on average
    assert forget.mean() > 0.6 * math.log(VOCAB)
    assert retain.mean() < 0.3
    assert not model.training


def test_gradient_ascent_also_forgets_but_harms_the_retain_set_more(memorised) -> None:
    ga, npo = _model(memorised), _model(memorised)
    unlearn(ga, FORGET, RETAIN, UnlearnConfig(method="ga", steps=40, lr=1e-3))
    unlearn(npo, FORGET, RETAIN, UnlearnConfig(method="npo", steps=40, lr=1e-3))
    assert answer_nll(ga, FORGET).min() > 2.0
    assert answer_nll(ga, RETAIN).mean() > 3 * answer_nll(npo, RETAIN).mean()


def test_npo_starts_at_its_reference(memorised) -> None:
    history = unlearn(
        _model(memorised),
        FORGET,
        RETAIN,
        UnlearnConfig(method="npo", steps=1, beta=0.2, retain_weight=0.0),
    )
    assert history[0]["loss"] == pytest.approx(10 * math.log(2), rel=1e-5)
    assert "retain_logp" not in history[0]


def test_only_the_named_layers_change(memorised) -> None:
    model = _model(memorised)
    model.blocks[0].attn.qkv.weight.requires_grad_(False)  # flags are restored afterwards
    unlearn(model, FORGET, RETAIN, UnlearnConfig(steps=5, lr=1e-3, layers=("blocks.1.mlp",)))
    after = model.state_dict()
    touched = {k for k in after if k.startswith("blocks.1.mlp.")}
    assert touched == {"blocks.1.mlp.fc.weight", "blocks.1.mlp.proj.weight"}
    for name, before in memorised.items():
        if name in touched:
            assert not torch.equal(after[name], before), name
        else:
            assert torch.equal(after[name], before), name
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    assert flags["blocks.0.attn.qkv.weight"] is False
    assert all(v for n, v in flags.items() if n != "blocks.0.attn.qkv.weight")


def test_layers_take_full_names_and_tied_names() -> None:
    model = GPT(GPTConfig.preset("tiny", vocab_size=VOCAB, block_size=16))
    assert trainable_parameters(model, ["blocks.0.mlp.fc.weight"]) == [
        model.blocks[0].mlp.fc.weight
    ]
    assert trainable_parameters(model, ["lm_head"]) == [model.wte.weight]  # tied
    assert trainable_parameters(model, ["blocks.1"]) == list(model.blocks[1].parameters())
    assert len(trainable_parameters(model, None)) == len(list(model.parameters()))
    with pytest.raises(GenlabError, match="'blocks.1.ml' matches no parameter"):
        trainable_parameters(model, ["blocks.1.ml"])  # a prefix must end at a dot
    with pytest.raises(GenlabError, match="'blocks.9' matches no parameter"):
        trainable_parameters(model, ["blocks.0", "blocks.9"])


def test_same_seed_same_weights_other_seed_other_weights(memorised) -> None:
    def run(seed: int) -> dict[str, torch.Tensor]:
        model = _model(memorised)
        cfg = UnlearnConfig(method="graddiff", steps=6, lr=1e-3, batch_size=2, seed=seed)
        unlearn(model, FORGET, RETAIN, cfg)
        return model.state_dict()

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_bad_input_is_one_line(memorised) -> None:
    model = _model(memorised)
    with pytest.raises(GenlabError, match="unknown unlearning method 'sgd'"):
        UnlearnConfig(method="sgd")
    with pytest.raises(GenlabError, match="steps must be at least 1"):
        UnlearnConfig(steps=0)
    with pytest.raises(GenlabError, match="beta must be > 0"):
        UnlearnConfig(beta=0.0)
    with pytest.raises(GenlabError, match="forget set is empty"):
        unlearn(model, [], RETAIN, UnlearnConfig())
    with pytest.raises(GenlabError, match="graddiff needs a retain set"):
        unlearn(model, FORGET, [], UnlearnConfig(method="graddiff"))
    with pytest.raises(GenlabError, match="empty answer"):
        unlearn(model, [([1, 2], [])], RETAIN, UnlearnConfig())
    with pytest.raises(GenlabError, match="matches no parameter"):
        unlearn(model, FORGET, RETAIN, UnlearnConfig(layers=("decoder",)))
    # nothing was trained by the failed calls, and ga needs no retain set
    assert all(torch.equal(v, memorised[k]) for k, v in model.state_dict().items())
    unlearn(model, FORGET, [], UnlearnConfig(method="ga", steps=1))
