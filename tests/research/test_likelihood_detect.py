"""Zero-shot detection from the model's own likelihood: the mean log-likelihood and Fast-DetectGPT's
analytic curvature (Bao et al., 2024), batched over texts of any lengths, equal a brute-force
computation position by position, and tell a model's greedy text from random tokens."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.methods.autoregressive.decoding import generate
from genlab.methods.autoregressive.scoring import continuation_logprobs
from genlab.nets.gpt import GPT, GPTConfig
from genlab.research.likelihood_detect import likelihood_scores

VOCAB = 128


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=VOCAB, block_size=32, n_layer=2, n_head=2, n_embd=32))
    with torch.no_grad():  # wide weights: peaked next-token distributions, as a trained model's
        for p in gpt.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    return gpt.eval()


def brute_force(model: GPT, text: list[int], context: int = 1) -> tuple[float, float]:
    """Mean log-likelihood and curvature, one forward per position, in float64."""
    ll = mu = var = 0.0
    for t in range(context, len(text)):
        with torch.no_grad():
            logits, _ = model(torch.tensor([text[:t]]))
        logp = torch.log_softmax(logits[0, -1].double(), -1)
        p = logp.exp()
        ll += logp[text[t]].item()
        m = (p * logp).sum().item()
        mu += m
        var += (p * (logp - m) ** 2).sum().item()
    return ll / (len(text) - context), (ll - mu) / math.sqrt(var)


def random_texts(n: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(VOCAB, (int(torch.randint(2, 30, (1,), generator=g)),), generator=g).tolist()
            for _ in range(n)]  # fmt: skip


def test_batched_scores_equal_a_brute_force_computation(model):
    texts = random_texts(7) + [[5, 9]]  # lengths differ: rows are padded
    got = likelihood_scores(model, texts, batch_size=3)
    assert got.tokens.tolist() == [len(t) - 1 for t in texts]
    for i, text in enumerate(texts):
        ll, curv = brute_force(model, text)
        assert got.log_likelihood[i].item() == pytest.approx(ll, abs=1e-4)
        assert got.curvature[i].item() == pytest.approx(curv, abs=1e-3)
    # the mean log-likelihood is that of the one scorer
    ref = continuation_logprobs(model, [t[:1] for t in texts], [t[1:] for t in texts])
    assert torch.allclose(got.log_likelihood, torch.stack([r.mean() for r in ref]), atol=1e-5)


def test_a_context_is_read_but_not_scored(model):
    texts = [t for t in random_texts(9, seed=4) if len(t) > 5]
    got = likelihood_scores(model, texts, batch_size=4, context=5)
    assert got.tokens.tolist() == [len(t) - 5 for t in texts]
    for i, text in enumerate(texts):
        ll, curv = brute_force(model, text, context=5)
        assert got.log_likelihood[i].item() == pytest.approx(ll, abs=1e-4)
        assert got.curvature[i].item() == pytest.approx(curv, abs=1e-3)
    # the context changes what the scored tokens are conditioned on, not only which are scored
    alone = likelihood_scores(model, [t[4:] for t in texts])
    assert not torch.allclose(alone.log_likelihood, got.log_likelihood, atol=1e-3)
    with pytest.raises(GenlabError, match="fewer than 6 tokens"):
        likelihood_scores(model, [[1, 2, 3, 4, 5]], context=5)
    with pytest.raises(GenlabError, match="context must be >= 1"):
        likelihood_scores(model, texts, context=0)


def test_scores_do_not_depend_on_the_batch(model):
    texts = random_texts(9, seed=1)
    together = likelihood_scores(model, texts, batch_size=32)
    alone = [likelihood_scores(model, [t]) for t in texts]
    assert torch.allclose(together.curvature, torch.cat([a.curvature for a in alone]), atol=1e-4)
    assert torch.allclose(
        together.log_likelihood, torch.cat([a.log_likelihood for a in alone]), atol=1e-5
    )


def test_texts_longer_than_the_context_keep_their_beginning(model):
    text = random_texts(1, seed=2)[0] * 3  # longer than 33 tokens
    assert len(text) > 33
    got = likelihood_scores(model, [text])
    ref = likelihood_scores(model, [text[:33]])
    assert got.tokens.item() == 32
    assert torch.equal(got.curvature, ref.curvature)


def test_greedy_text_curves_high_and_random_tokens_low(model):
    g = torch.Generator().manual_seed(3)
    prompts = [[int(t)] for t in torch.randint(VOCAB, (24,), generator=g)]
    greedy = [[*x.prompt, *x.tokens] for x in generate(model, prompts, 24, temperature=0.0)]
    sampled = [[*x.prompt, *x.tokens] for x in generate(model, prompts, 24, temperature=1.0)]
    noise = [torch.randint(VOCAB, (25,), generator=g).tolist() for _ in range(24)]
    s_greedy, s_sampled, s_noise = (likelihood_scores(model, t) for t in (greedy, sampled, noise))
    # greedy text is the mode at every step: far above the expected log p; random tokens below
    assert s_greedy.curvature.min() > 3.0
    assert s_noise.curvature.max() < 0.0
    assert s_greedy.curvature.min() > s_noise.curvature.max()
    # the model's own samples sit at the expectation (curvature about 0, as N(0, 1))
    assert abs(s_sampled.curvature.mean().item()) < 0.8
    assert s_greedy.log_likelihood.min() > s_noise.log_likelihood.max()


@pytest.mark.parametrize(
    "texts, says",
    [([], "no texts"), ([[1, 2], [3]], "fewer than 2"), ([[1, VOCAB]], "must lie in"),
     ([[-1, 2]], "must lie in")],
)  # fmt: skip
def test_bad_input_is_a_one_line_error(model, texts, says):
    with pytest.raises(GenlabError, match=says):
        likelihood_scores(model, texts)
