"""The one scorer: log-probs of given tokens, checked by hand, under padding, and against
transformers' GPT-2 on the same weights."""

from __future__ import annotations

import pytest
import torch

from genlab.methods.autoregressive.padding import left_pad, pad_right
from genlab.methods.autoregressive.scoring import (
    continuation_logprobs,
    sequence_logprobs,
    token_logprobs,
)
from genlab.nets.gpt import GPT, IGNORE_INDEX, GPTConfig, positions_from_mask
from genlab.nets.hf_gpt2 import gpt_to_hf
from references import require


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=32)).eval()


def by_hand(model: GPT, ids: list[int], temperature: float = 1.0) -> torch.Tensor:
    """log p(ids[t+1] | ids[:t+1]) from one unpadded forward and an explicit softmax."""
    logits, _ = model(torch.tensor([ids]))
    probs = torch.softmax(logits[0, :-1].double() / temperature, -1)
    return probs[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].log()


@torch.no_grad()
def test_matches_a_softmax_by_hand_with_temperature_entropy_and_hidden(model):
    ids = [3, 9, 27, 4, 11, 2]
    x = torch.tensor([ids])
    out = token_logprobs(model, x[:, :-1], x[:, 1:], temperature=0.7, entropy=True, hidden=True)
    torch.testing.assert_close(out.logprobs[0].double(), by_hand(model, ids, 0.7))
    logits, _ = model(x[:, :-1])
    p = torch.softmax(logits.float() / 0.7, -1)
    torch.testing.assert_close(out.entropy, -(p * p.log()).sum(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.hidden, model.hidden_states(x[:, :-1]))


@torch.no_grad()
def test_variance_is_that_of_log_p_under_each_next_token_distribution(model):
    """Fast-DetectGPT's variance and the entropy equal sums over the vocabulary, by hand."""
    rows = torch.tensor([[3, 9, 27, 4, 11], [7, 7, 7, 0, 1]])
    out = token_logprobs(model, rows, rows, temperature=1.3, entropy=True, variance=True)
    logits, _ = model(rows)
    for b in range(2):
        for t in range(rows.size(1)):
            p = torch.softmax(logits[b, t].double() / 1.3, -1)
            values = p.log()
            mean = sum(p[v] * values[v] for v in range(p.numel()))
            var = sum(p[v] * (values[v] - mean) ** 2 for v in range(p.numel()))
            assert out.entropy[b, t].item() == pytest.approx(-mean.item(), abs=1e-5)
            assert out.variance[b, t].item() == pytest.approx(var.item(), rel=1e-4, abs=1e-6)
    assert (out.variance > 0).all()  # a random model's distributions are not one-hot
    assert token_logprobs(model, rows, rows).variance is None  # computed only when asked


@torch.no_grad()
def test_ignored_targets_score_zero_and_sequences_sum_the_rest(model):
    ids = [5, 6, 7, 8, 9]
    x = torch.tensor([ids[:-1]])
    y = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 8, 9]])
    scores = token_logprobs(model, x, y).logprobs[0]
    assert scores[:2].tolist() == [0.0, 0.0]
    expected = by_hand(model, ids)[2:].sum().item()
    assert sequence_logprobs(model, x, y).item() == pytest.approx(expected, rel=1e-5)


@torch.no_grad()
def test_left_padded_rows_score_as_if_alone(model):
    rows = [[1, 2, 3, 4, 5, 6], [7, 8, 9], [10, 11, 12, 13]]
    ids, mask = left_pad(rows, pad_id=0)
    assert ids.tolist()[1] == [0, 0, 0, 7, 8, 9] and mask.tolist()[1] == [0, 0, 0, 1, 1, 1]
    assert positions_from_mask(mask).tolist()[1] == [0, 0, 0, 0, 1, 2]
    targets = ids[:, 1:].masked_fill(mask[:, :-1] == 0, IGNORE_INDEX)  # no context: unscored
    scores = token_logprobs(model, ids[:, :-1], targets, attention_mask=mask[:, :-1]).logprobs
    for i, row in enumerate(rows):
        alone = by_hand(model, row).float()
        torch.testing.assert_close(scores[i, -len(alone) :], alone, atol=1e-5, rtol=0)


def test_pad_right_fills_after_each_sequence():
    assert pad_right([[1, 2], [3]], -1, 3).tolist() == [[1, 2, -1], [3, -1, -1]]


@torch.no_grad()
def test_same_logprobs_as_transformers_on_a_padded_batch(tmp_path):
    transformers = require("transformers")
    torch.manual_seed(1)
    config = GPTConfig(vocab_size=60, block_size=32, n_layer=2, n_head=2, n_embd=32, bias=True)
    ours = GPT(config).eval()
    gpt_to_hf(ours, tmp_path)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    ids, mask = left_pad([[4, 5, 6, 7, 8], [9, 10, 11]], pad_id=0)
    targets = ids[:, 1:].masked_fill(mask[:, :-1] == 0, IGNORE_INDEX)  # no context: unscored
    scores = token_logprobs(ours, ids[:, :-1], targets, attention_mask=mask[:, :-1]).logprobs
    logits = theirs(
        ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions_from_mask(mask[:, :-1])
    ).logits
    ref = torch.log_softmax(logits.float(), -1).gather(-1, targets.clamp(min=0)[..., None])
    ref = ref.squeeze(-1) * (targets != IGNORE_INDEX)
    torch.testing.assert_close(scores, ref, atol=1e-5, rtol=0)


@torch.no_grad()
def test_continuations_score_as_alone_in_a_ragged_batch_and_lose_old_context(model):
    pairs = [([1, 2, 3], [4, 5]), ([6], [7, 8, 9, 10]), ([11, 12, 13, 14, 15], [16])]
    scores = continuation_logprobs(
        model, [c for c, _ in pairs], [x for _, x in pairs], batch_size=2
    )
    for (context, cont), got in zip(pairs, scores, strict=True):
        alone = by_hand(model, context + cont)[-len(cont) :].float()
        assert got.shape == (len(cont),)
        torch.testing.assert_close(got, alone, atol=1e-5, rtol=0)
    long_context = list(range(1, 41))  # 40 + 2 tokens in a 32-token window
    [got] = continuation_logprobs(model, [long_context], [[3, 4]])
    kept = (long_context + [3, 4])[-33:]  # the window, and the last target after it
    logp = torch.log_softmax(model(torch.tensor([kept[:-1]]))[0][0, -2:], -1)
    torch.testing.assert_close(got, logp[[0, 1], [3, 4]], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="2 contexts for 1"):
        continuation_logprobs(model, [[1], [2]], [[3]])


@torch.no_grad()
def test_continuation_logprobs_match_transformers(tmp_path):
    transformers = require("transformers")
    torch.manual_seed(2)
    config = GPTConfig(vocab_size=60, block_size=32, n_layer=2, n_head=2, n_embd=32, bias=True)
    ours = GPT(config).eval()
    gpt_to_hf(ours, tmp_path)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    context, cont = [5, 17, 3, 44], [8, 21, 9]
    [got] = continuation_logprobs(ours, [context], [cont])
    ids = torch.tensor([context + cont])
    logp = torch.log_softmax(theirs(ids).logits[0, :-1].float(), -1)
    ref = logp[torch.arange(len(context) - 1, ids.shape[1] - 1), torch.tensor(cont)]
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
