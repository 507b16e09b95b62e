"""The sampling watermark (Kirchenbauer et al., 2023): a keyed green list per previous token that
is stable across processes, a logits-bias hook the decoder applies before every choice, and a
z-test that stays near 0 on text written without the key and is high on watermarked text; and
its entropy-gated form (SWEET, Lee et al., 2023), which biases and scores only the steps whose
next-token entropy reaches a threshold."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.methods.autoregressive.decoding import Decoder, SamplingConfig, generate, stream
from genlab.methods.autoregressive.scoring import token_logprobs
from genlab.nets.gpt import GPT, IGNORE_INDEX, GPTConfig
from genlab.research.watermark import Watermark, continuation_entropies, gated_entropies

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
        ({"key": "k", "entropy_threshold": -0.1}, "entropy threshold"),
        ({"key": "k", "entropy_threshold": math.nan}, "entropy threshold"),
        ({"key": "k", "entropy_threshold": math.inf}, "entropy threshold"),
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


@pytest.fixture(scope="module")
def peaked() -> GPT:
    """A random GPT whose next-token entropy varies (about 0.6 to 3.7 nats, median near 1):
    scaled (tied) embeddings make its distributions peaked at some steps and flat at others."""
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=VOCAB, block_size=96, n_layer=2, n_head=2, n_embd=32)).eval()
    with torch.no_grad():
        m.lm_head.weight.mul_(12)
    return m


def entropy_of(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, -1)
    return -(logp.exp() * logp).sum(-1)


def test_threshold_zero_is_the_plain_watermark_token_for_token(peaked):
    ps = prompts(8, seed=6)
    plain = Watermark("k", delta=3.0)
    zero = Watermark("k", delta=3.0, entropy_threshold=0.0)
    logits = torch.randn(4, 50)
    prev = torch.tensor([1, 2, 3, 4])
    assert torch.equal(zero(prev, logits), logits + 3.0 * plain.green(prev, 50).float())
    a = generate(peaked, ps, max_new_tokens=40, seed=1, logits_bias=plain)
    b = generate(peaked, ps, max_new_tokens=40, seed=1, logits_bias=zero)
    assert [g.tokens for g in a] == [g.tokens for g in b]
    ents = continuation_entropies(peaked, [g.prompt for g in a], [g.tokens for g in a])
    for g, e in zip(a, ents, strict=True):
        assert zero.score(g.tokens, g.prompt[-1], entropies=e) == plain.score(
            g.tokens, g.prompt[-1]
        )
    # a threshold below every entropy gates nothing: the same text as the plain watermark
    tiny = Watermark("k", delta=3.0, entropy_threshold=1e-6)
    assert [g.tokens for g in generate(peaked, ps, 40, seed=1, logits_bias=tiny)] == [
        g.tokens for g in a
    ]


def test_the_gated_hook_leaves_confident_rows_alone():
    wm = Watermark("k", delta=3.0, entropy_threshold=1.0)
    logits = torch.zeros(3, 40)
    logits[0, 7] = 20.0  # one token holds nearly all the mass: entropy near 0
    logits[2, :2] = 30.0  # two tokens share it: entropy log 2 = 0.69 < 1
    prev = torch.tensor([5, 9, 11])
    assert entropy_of(logits).tolist()[1] == pytest.approx(math.log(40))
    out = wm(prev, logits)
    assert torch.equal(out[0], logits[0]) and torch.equal(out[2], logits[2])
    green = wm.green(prev, 40)
    assert torch.allclose(out[1], logits[1] + 3.0 * green[1].float())
    # masked (-inf) logits leave the entropy finite and the row ungated when confident
    masked = logits.clone()
    masked[0, 20:] = -math.inf
    assert torch.equal(wm(prev, masked)[0], masked[0])


def test_gated_generation_changes_only_high_entropy_steps(peaked):
    """Greedy with a huge delta: every step the gate opens (entropy >= threshold, recomputed
    on the text by the scorer) picks a green token; a threshold above every entropy writes the
    unwatermarked text."""
    ps = prompts(12, seed=7)
    plain = generate(peaked, ps, 40, 0.0)
    never = Watermark("k", delta=1e4, entropy_threshold=math.log(VOCAB) + 1)
    assert [g.tokens for g in generate(peaked, ps, 40, 0.0, logits_bias=never)] == [
        g.tokens for g in plain
    ]
    wm = Watermark("k", delta=1e4, entropy_threshold=1.0)
    out = generate(peaked, ps, 40, 0.0, logits_bias=wm)
    ents = continuation_entropies(peaked, [g.prompt for g in out], [g.tokens for g in out])
    opened = closed = 0
    for g, e in zip(out, ents, strict=True):
        seq = [g.prompt[-1], *g.tokens]
        for t, h in enumerate(e):
            if h >= 1.0 + 1e-3:
                opened += 1
                assert wm.is_green(torch.tensor(seq[t]), torch.tensor(seq[t + 1]))
            elif h < 1.0 - 1e-3:
                closed += 1
    assert opened > 50 and closed > 50  # both kinds of step occur
    # until the first open step a gated greedy row writes what the plain greedy row writes
    for g, p, e in zip(out, plain, ents, strict=True):
        first = next((t for t, h in enumerate(e) if h >= 1.0), len(e))
        assert g.tokens[:first] == p.tokens[:first]


def test_gated_detection_is_high_on_gated_text_and_near_zero_on_plain_text(peaked):
    wm = Watermark("k", gamma=0.25, delta=4.0, entropy_threshold=1.0)
    ps = prompts(48, seed=8)
    plain = generate(peaked, ps, max_new_tokens=60, seed=0)
    marked = generate(peaked, ps, max_new_tokens=60, seed=0, logits_bias=wm)

    def z(gens, w=wm):
        ents = continuation_entropies(peaked, [g.prompt for g in gens], [g.tokens for g in gens])
        return [
            w.score(g.tokens, g.prompt[-1], entropies=e) for g, e in zip(gens, ents, strict=True)
        ]

    s_plain, s_marked = z(plain), z(marked)
    z_plain = torch.tensor([s.z for s in s_plain])
    z_marked = torch.tensor([s.z for s in s_marked])
    assert abs(z_plain.mean().item()) < 0.5 and z_plain.abs().max().item() < 4.0
    assert z_marked.mean().item() > 4.0 and (z_marked > 2.326).float().mean().item() > 0.9
    # only the gated pairs are scored (and repeated ones once): a share of the text's
    assert 0.1 < sum(s.scored for s in s_marked) / (48 * 60) < 0.5
    other = torch.tensor([s.z for s in z(marked, Watermark("x", entropy_threshold=1.0))])
    assert abs(other.mean().item()) < 0.5


def test_gated_scoring_counts_only_pairs_at_or_above_the_threshold():
    wm = Watermark("k", gamma=0.25, entropy_threshold=1.0)
    tokens, ents = [3, 17, 42, 99, 3], [0.5, 1.0, 2.0, 0.99, 3.0]
    got = wm.score(tokens, prompt_last=8, entropies=ents)
    kept = [(3, 17), (17, 42), (99, 3)]  # tokens 17, 42, 3 (entropies 1.0, 2.0, 3.0)
    g = sum(bool(wm.is_green(torch.tensor(a), torch.tensor(b))) for a, b in kept)
    assert (got.scored, got.green) == (3, g)
    assert got.z == pytest.approx((g - 0.75) / math.sqrt(3 * 0.25 * 0.75))
    # the first token's pair is (prompt_last, token): scored only when its entropy passes
    assert wm.score([5], prompt_last=8, entropies=[1.5]).scored == 1
    assert wm.score([5], prompt_last=8, entropies=[0.5]).scored == 0
    with pytest.raises(GenlabError, match="needs each token's entropy"):
        wm.score(tokens, prompt_last=8)
    with pytest.raises(GenlabError, match="one entropy per token: 4 entropies for 5 tokens"):
        wm.score(tokens, prompt_last=8, entropies=ents[:4])


def test_continuation_entropies_are_the_scorers_at_each_step(peaked):
    ps, conts = [[1, 2, 3], [4]], [[9, 8, 7, 6], [5, 5]]
    got = continuation_entropies(peaked, ps, conts, batch_size=1)
    assert [len(e) for e in got] == [4, 2]
    batched = continuation_entropies(peaked, ps, conts)  # batching and padding change nothing
    assert [x for e in got for x in e] == pytest.approx([x for e in batched for x in e], abs=1e-5)
    for p, c, e in zip(ps, conts, got, strict=True):
        ids = torch.tensor([[*p, *c]])
        ref = token_logprobs(peaked, ids, torch.full_like(ids, IGNORE_INDEX), entropy=True).entropy
        assert e == pytest.approx(ref[0, len(p) - 1 : len(p) - 1 + len(c)].tolist(), abs=1e-5)
    assert continuation_entropies(peaked, [[1]], [[]]) == [[]]
    with pytest.raises(GenlabError, match="at least one token"):
        continuation_entropies(peaked, [[]], [[1, 2]])
    with pytest.raises(GenlabError, match="window of 97"):
        continuation_entropies(peaked, [[1] * 50], [[2] * 48])
    with pytest.raises(GenlabError, match="2 prompts for 1 continuations"):
        continuation_entropies(peaked, [[1], [2]], [[3]])


def test_gated_entropies_run_the_model_only_for_a_gated_watermark(peaked):
    ps, conts = [[1, 2, 3], [4]], [[9, 8, 7, 6], [5, 5]]
    assert gated_entropies(None, Watermark("k"), ps, conts) == [None, None]  # type: ignore[arg-type]
    gated = gated_entropies(peaked, Watermark("k", entropy_threshold=1.0), ps, conts)
    assert gated == continuation_entropies(peaked, ps, conts)
