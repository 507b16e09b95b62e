"""Beam search: width 1 is greedy decoding, and a beam as wide as the vocabulary finds the most
likely two-token continuation that brute force finds."""

from __future__ import annotations

import itertools

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.methods.autoregressive.beam import beam_search
from genlab.methods.autoregressive.decoding import generate
from genlab.methods.autoregressive.scoring import sequence_logprobs
from genlab.nets.gpt import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=12, block_size=16, n_layer=1, n_head=2, n_embd=16))
    with torch.no_grad():
        for p in gpt.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.5)  # wide weights: peaked, distinct distributions
    return gpt.eval()


def test_width_one_is_greedy(model: GPT) -> None:
    prompt = [3, 1, 4]
    greedy = generate(model, [prompt], max_new_tokens=6, temperature=0.0, stop=[0])[0]
    best = beam_search(model, prompt, beam_size=1, max_new_tokens=6, eos_id=0)[0]
    assert best.tokens == [t for t in greedy.tokens if t != 0]
    assert best.logprob == pytest.approx(sum(greedy.logprobs), abs=1e-4)


def test_full_width_beam_finds_the_most_likely_pair(model: GPT) -> None:
    prompt = [5, 9]
    pairs = list(itertools.product(range(12), repeat=2))
    inputs = torch.tensor([[*prompt, a] for a, _ in pairs])
    targets = torch.tensor([[-100, a, b] for a, b in pairs])
    with torch.no_grad():
        totals = sequence_logprobs(model, inputs, targets)
    best = beam_search(model, prompt, beam_size=12, max_new_tokens=2, length_penalty=0.0)
    assert tuple(best[0].tokens) == pairs[int(totals.argmax())]
    assert best[0].logprob == pytest.approx(float(totals.max()), abs=1e-4)
    assert [h.logprob for h in best] == sorted((h.logprob for h in best), reverse=True)


def test_bad_settings_are_one_line_errors(model: GPT) -> None:
    with pytest.raises(GenlabError, match="beam_size >= 1"):
        beam_search(model, [1], beam_size=0)
    with pytest.raises(GenlabError, match="prompt is empty"):
        beam_search(model, [], beam_size=2)
