"""The sampling watermark (Kirchenbauer et al., 2023): a keyed green list per previous token that
is stable across processes, a logits-bias hook the decoder applies before every choice, and a
z-test that stays near 0 on text written without the key and is high on watermarked text."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.methods.autoregressive.decoding import Decoder, SamplingConfig, generate, stream
from genlab.nets.gpt import GPT, GPTConfig
from genlab.research.watermark import Watermark

VOCAB = 256


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=VOCAB, block_size=96, n_layer=2, n_head=2, n_embd=32)).eval()


def prompts(n: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(VOCAB, (int(torch.randint(1, 6, (1,), generator=g)),), generator=g).tolist()
            for _ in range(n)]  # fmt: skip


@pytest.mark.parametrize("gamma", [0.1, 0.25, 0.5])
def test_the_green_share_is_gamma(gamma):
    green = Watermark("key", gamma=gamma).green(torch.arange(64), 4096)
    assert green.shape == (64, 4096) and green.dtype == torch.bool
    assert abs(green.float().mean().item() - gamma) < 0.005
    per_context = green.float().mean(1)  # every context gets its own list of about gamma * V
    assert (per_context - gamma).abs().max().item() < 0.04


def test_green_lists_are_fixed_by_key_and_context_alone():
    wm = Watermark("secret")
    prev = torch.tensor([0, 7, 7, 255])
    green = wm.green(prev, 1000)
    assert torch.equal(green, Watermark("secret", delta=5.0).green(prev, 1000))
    assert torch.equal(green[1], green[2])
    assert not torch.equal(green[0], green[1])
    # the same key colours the same tokens in every process and on every platform (SHA-256 and
    # int64 arithmetic, not Python's salted hash()): these ids are pinned
    assert torch.nonzero(green[1, :40]).flatten().tolist() == [
        0,
        4,
        5,
        14,
        16,
        20,
        23,
        26,
        27,
        30,
        32,
        34,
        37,
        38,
        39,
    ]
    # a token's colour does not depend on the vocabulary size (the engine sees fewer ids)
    assert torch.equal(wm.green(prev, 300), green[:, :300])
    assert torch.equal(wm.is_green(prev[:, None], torch.arange(1000)[None, :]), green)


def test_another_key_colours_other_tokens():
    prev = torch.arange(32)
    a, b = Watermark("alice").green(prev, 2048), Watermark("bob").green(prev, 2048)
    agree = (a == b).float().mean().item()
    assert abs(agree - (0.25**2 + 0.75**2)) < 0.02  # independent lists, not the same one


def test_the_hook_adds_delta_to_green_logits_only():
    wm = Watermark("k", gamma=0.25, delta=3.0)
    prev = torch.tensor([5, 9])
    logits = torch.randn(2, 50)
    out = wm(prev, logits)
    green = wm.green(prev, 50)
    assert torch.allclose(out[green], logits[green] + 3.0)
    assert torch.equal(out[~green], logits[~green])


@pytest.mark.parametrize(
    "kwargs, says",
    [
        ({"key": ""}, "non-empty"),
        ({"key": "k", "gamma": 0.0}, "gamma"),
        ({"key": "k", "gamma": 1.0}, "gamma"),
        ({"key": "k", "gamma": -0.5}, "gamma"),
        ({"key": "k", "delta": -1.0}, "delta"),
        ({"key": "k", "delta": math.nan}, "delta"),
        ({"key": "k", "delta": math.inf}, "delta"),
    ],
)
def test_bad_settings_are_one_line_errors(kwargs, says):
    with pytest.raises(GenlabError, match=says):
        Watermark(**kwargs)


def test_the_z_score_by_hand():
    wm = Watermark("k", gamma=0.25)
    tokens = [3, 17, 42, 17, 42, 99, 3]
    pairs = list(zip(tokens[:-1], tokens[1:], strict=True))
    colour = {p: bool(wm.is_green(torch.tensor(p[0]), torch.tensor(p[1]))) for p in pairs}
    for ignore, scored in ((False, pairs), (True, list(dict.fromkeys(pairs)))):
        got = wm.score(tokens, ignore_repeated=ignore)
        g = sum(colour[p] for p in scored)
        z = (g - 0.25 * len(scored)) / math.sqrt(len(scored) * 0.25 * 0.75)
        assert (got.green, got.scored) == (g, len(scored))
        assert got.z == pytest.approx(z)
        assert got.p_value == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)))
    assert wm.score(tokens, ignore_repeated=False).scored == 6
    assert wm.score(tokens).scored == 5  # (17, 42) counted once
    assert wm.score(tokens, prompt_last=8).scored == 6  # (8, 3) too


def test_degenerate_texts():
    wm = Watermark("k")
    assert wm.score([]) == wm.score([4]) == wm.score([], prompt_last=3)
    assert (wm.score([4]).z, wm.score([4]).p_value, wm.score([4]).scored) == (0.0, 1.0, 0)
    with pytest.raises(GenlabError, match=">= 0"):
        wm.score([1, -2, 3])


def test_random_tokens_score_near_zero():
    wm = Watermark("k")
    g = torch.Generator().manual_seed(1)
    z = torch.tensor([wm.score(torch.randint(VOCAB, (100,), generator=g).tolist()).z
                      for _ in range(300)])  # fmt: skip
    assert abs(z.mean().item()) < 0.2  # the mean of 300 draws of N(0, 1) is within 0.2
    assert 0.8 < z.std().item() < 1.2


def test_unwatermarked_samples_score_near_zero_and_watermarked_ones_high(model):
    wm = Watermark("k", gamma=0.25, delta=4.0)
    ps = prompts(48)
    plain = generate(model, ps, max_new_tokens=60, seed=0)
    marked = generate(model, ps, max_new_tokens=60, seed=0, logits_bias=wm)
    z_plain = torch.tensor([wm.score(g.tokens, prompt_last=g.prompt[-1]).z for g in plain])
    z_marked = torch.tensor([wm.score(g.tokens, prompt_last=g.prompt[-1]).z for g in marked])
    assert abs(z_plain.mean().item()) < 0.5 and z_plain.abs().max().item() < 4.0
    assert z_marked.min().item() > 6.0
    # another key does not find it
    other = torch.tensor([Watermark("other").score(g.tokens, g.prompt[-1]).z for g in marked])
    assert abs(other.mean().item()) < 0.5


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_delta_zero_changes_nothing(model, temperature):
    ps = prompts(6, seed=3)
    kw = {"max_new_tokens": 30, "temperature": temperature, "top_k": 50, "seed": 4}
    plain = generate(model, ps, stop=[7, 11], num_samples=2, **kw)
    hooked = generate(
        model, ps, stop=[7, 11], num_samples=2, logits_bias=Watermark("k", delta=0.0), **kw
    )
    assert [g.tokens for g in hooked] == [g.tokens for g in plain]
    assert [g.logprobs for g in hooked] == [g.logprobs for g in plain]


def test_stream_takes_the_hook_as_generate_does(model):
    wm = Watermark("k", delta=3.0)
    (ref,) = generate(model, [[1, 2, 3]], max_new_tokens=25, seed=2, logits_bias=wm)
    got = [t for t, _ in stream(model, [1, 2, 3], max_new_tokens=25, seed=2, logits_bias=wm)]
    assert got == ref.tokens


def test_each_row_is_biased_by_its_own_last_token_through_drops_and_forced_tokens(model):
    """Greedy with a huge delta picks a green token every time, so every chosen token is green
    after the token before it, exactly when the decoder hands the right previous token."""
    wm = Watermark("k", delta=1e4)
    ps = prompts(5, seed=5)
    forced_at = {}  # result index -> positions of forced tokens

    def on_step(decoder: Decoder, emitted):
        for index, _, _ in emitted:
            gen = decoder.results[index]
            if index in (1, 3) and len(gen.tokens) in (4, 9) and gen.finish_reason is None:
                n = len(gen.tokens)
                decoder.force(index, [200, 201])
                forced_at.setdefault(index, set()).update({n, n + 1})

    # rows stop at a token chosen often (1 of 4 tokens is green: stops come early for some rows)
    counts = torch.bincount(torch.tensor([t for g in generate(model, ps, 40, 0.0, logits_bias=wm)
                                          for t in g.tokens]), minlength=VOCAB)  # fmt: skip
    stop = [int(counts.argmax())]
    out = generate(model, ps, 40, 0.0, stop=stop, logits_bias=wm, on_step=on_step)
    lengths = {len(g.tokens) for g in out}
    assert len(lengths) > 1  # rows left the batch at different steps
    assert forced_at
    for index, g in enumerate(out):
        seq = [g.prompt[-1], *g.tokens]
        for t in range(len(g.tokens)):
            if t in forced_at.get(index, ()):
                assert g.tokens[t] == (200 if t in (4, 9) else 201)
                continue
            assert wm.is_green(torch.tensor(seq[t]), torch.tensor(seq[t + 1])), (index, t)


def test_the_decoder_starts_from_each_prompts_last_token(model):
    ps = [[5], [9, 8, 7], [3, 3]]
    decoder = Decoder(model, ps, SamplingConfig(max_new_tokens=2), num_samples=2)
    assert decoder.prev.tolist() == [5, 5, 7, 7, 3, 3]
