"""Sampling: greedy parity with a plain loop, batching, seeds, stops, log-probs, hooks."""

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.methods.autoregressive import decoding
from genlab.methods.autoregressive.decoding import (
    Decoder,
    SamplingConfig,
    generate,
    process_logits,
    stream,
)
from genlab.methods.autoregressive.scoring import token_logprobs
from genlab.nets.gpt import GPT, GPTConfig


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=61, block_size=64, n_layer=2, n_head=2, n_embd=32)).eval()


def greedy_reference(model: GPT, prompt: list[int], n: int) -> tuple[list[int], list[float]]:
    """Greedy decoding by re-running the full forward each step (no cache, no batching)."""
    ids = list(prompt)
    out, lps = [], []
    for _ in range(n):
        with torch.no_grad():
            logits, _ = model(torch.tensor([ids]))
        logp = logits[0, -1].log_softmax(-1)
        tok = int(logp.argmax())
        out.append(tok)
        lps.append(float(logp[tok]))
        ids.append(tok)
    return out, lps


def test_greedy_batched_left_padded_matches_reference(model):
    prompts = [[1, 2, 3, 4, 5, 6, 7], [9, 8], [30, 31, 32, 33]]
    gens = generate(model, prompts, max_new_tokens=12, temperature=0)
    for prompt, gen in zip(prompts, gens, strict=True):
        tokens, lps = greedy_reference(model, prompt, 12)
        assert gen.tokens == tokens
        assert gen.logprobs == pytest.approx(lps, abs=1e-4)
        assert gen.finish_reason == "length"


def test_same_seed_same_output_and_seeds_differ(model):
    kw = dict(max_new_tokens=20, temperature=1.0)
    a = generate(model, [[1, 2, 3]] * 2, seed=7, **kw)
    b = generate(model, [[1, 2, 3]] * 2, seed=7, **kw)
    c = generate(model, [[1, 2, 3]] * 2, seed=8, **kw)
    assert [g.tokens for g in a] == [g.tokens for g in b]
    assert [g.tokens for g in a] != [g.tokens for g in c]


def test_stop_token_ends_each_row_alone(model):
    ref, _ = greedy_reference(model, [5, 6], 10)
    stop_tok = ref[3]
    first = ref.index(stop_tok)
    gens = generate(model, [[5, 6], [5, 6, 7]], max_new_tokens=10, temperature=0, stop=[stop_tok])
    assert gens[0].tokens == ref[: first + 1]
    assert gens[0].finish_reason == "stop"
    other, _ = greedy_reference(model, [5, 6, 7], 10)
    expected = other[: other.index(stop_tok) + 1] if stop_tok in other else other
    assert gens[1].tokens == expected


def test_sampled_logprobs_are_the_models_raw_logprobs(model):
    gen = generate(model, [[3, 4, 5]], max_new_tokens=8, temperature=1.3, top_k=5, seed=1)[0]
    ids = [3, 4, 5] + gen.tokens
    logits, _ = model(torch.tensor([ids]))
    logp = logits[0, 2:-1].log_softmax(-1)
    expected = logp.gather(-1, torch.tensor(gen.tokens)[:, None]).squeeze(-1)
    torch.testing.assert_close(torch.tensor(gen.logprobs), expected, atol=1e-4, rtol=0)
    x = torch.tensor([ids])
    scored = token_logprobs(model, x[:, :-1], x[:, 1:]).logprobs
    assert torch.allclose(scored[0, 2:], expected, atol=1e-4)


def test_top_k_one_and_tiny_top_p_are_greedy(model):
    greedy = generate(model, [[1, 2]], max_new_tokens=10, temperature=0)[0].tokens
    assert generate(model, [[1, 2]], max_new_tokens=10, top_k=1, seed=3)[0].tokens == greedy
    assert generate(model, [[1, 2]], max_new_tokens=10, top_p=1e-6, seed=3)[0].tokens == greedy


def test_process_logits_filters():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, -3.0]])
    k2 = process_logits(logits, None, SamplingConfig(top_k=2))
    assert torch.isinf(k2[0, 2:]).all() and torch.isfinite(k2[0, :2]).all()
    probs = logits.softmax(-1)[0]  # [0.57, 0.21, 0.13, 0.03, 0.004]
    p = process_logits(logits, None, SamplingConfig(top_p=0.7))
    kept = torch.isfinite(p[0]).nonzero().squeeze(-1).tolist()
    assert kept == [0, 1] and probs[0] < 0.7 <= probs[:2].sum()
    rep = process_logits(logits, torch.tensor([[0, 3]]), SamplingConfig(repetition_penalty=2.0))
    assert rep[0, 0] == 1.0 and rep[0, 3] == -2.0 and rep[0, 1] == 1.0
    hot = process_logits(logits, None, SamplingConfig(temperature=0.5))
    torch.testing.assert_close(hot, logits * 2)


def test_stream_yields_what_generate_returns(model):
    kw = dict(max_new_tokens=15, temperature=0.9, top_p=0.9, seed=4)
    streamed = list(stream(model, [7, 8, 9], **kw))
    gen = generate(model, [[7, 8, 9]], **kw)[0]
    assert [t for t, _ in streamed] == gen.tokens
    assert [lp for _, lp in streamed] == pytest.approx(gen.logprobs)


def test_num_samples_share_the_prompt(model):
    gens = generate(model, [[1, 2], [3, 4, 5]], max_new_tokens=6, num_samples=3, seed=0)
    assert len(gens) == 6
    assert [g.prompt for g in gens] == [[1, 2]] * 3 + [[3, 4, 5]] * 3
    greedy = generate(model, [[1, 2], [3, 4, 5]], max_new_tokens=6, num_samples=2, temperature=0)
    ref, _ = greedy_reference(model, [3, 4, 5], 6)
    assert greedy[2].tokens == greedy[3].tokens == ref


def test_forced_tokens_are_inserted_between_steps(model):
    inserted = [40, 41, 42]

    def on_step(decoder: Decoder, emitted):
        if decoder.steps == 2:
            decoder.force(0, inserted)

    gen = generate(model, [[1, 2]], max_new_tokens=8, temperature=0, on_step=on_step)[0]
    assert gen.tokens[2:5] == inserted
    # after the insertion the model continues greedily from the new context
    rest, _ = greedy_reference(model, [1, 2] + gen.tokens[:5], 3)
    assert gen.tokens[5:] == rest


class CharTokenizer:
    def decode(self, ids, skip_special=False):
        return "".join(chr(65 + i % 26) for i in ids)


def test_stop_strings_cut_the_text(model):
    tok = CharTokenizer()
    full = generate(model, [[1, 2]], max_new_tokens=12, temperature=0, tokenizer=tok)[0]
    target = full.text[4:6]
    gen = generate(model, [[1, 2]], max_new_tokens=12, temperature=0, stop=[target], tokenizer=tok)[
        0
    ]
    assert gen.finish_reason == "stop"
    assert target not in gen.text and full.text.startswith(gen.text)


def test_bad_arguments_raise(model):
    with pytest.raises(GenlabError, match="temperature"):
        generate(model, [[1]], temperature=-1)
    with pytest.raises(GenlabError, match="empty"):
        generate(model, [[]])
    with pytest.raises(GenlabError, match="context"):
        generate(model, [[1] * 64])
    with pytest.raises(GenlabError, match="tokenizer"):
        generate(model, [[1]], stop=["x"])


def test_context_limit_ends_with_length(model):
    gen = generate(model, [[1] * 60], max_new_tokens=50, temperature=0)[0]
    assert len(gen.tokens) == 4 and gen.finish_reason == "length"


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_one_token_steps_match_the_full_forward_left_padded(pos):
    # dropout > 0 in eval mode: the step skips the dropout modules; padding: the one-token mask
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=61, block_size=64, n_layer=2, n_head=2, n_embd=32, pos=pos)
    model = GPT(GPTConfig(**{**cfg.to_dict(), "dropout": 0.1})).eval()
    prompts = [[1, 2, 3, 4, 5, 6, 7], [9, 8], [30, 31, 32, 33]]
    decoder = Decoder(model, prompts, SamplingConfig(max_new_tokens=6), seed=3)
    while not decoder.done:
        decoder.step()
        if decoder.done:
            break
        for r, index in enumerate(decoder.rows):
            gen = decoder.results[index]
            with torch.no_grad():
                full, _ = model(torch.tensor([gen.prompt + gen.tokens]))
            torch.testing.assert_close(decoder.logits[r], full[0, -1], atol=1e-5, rtol=0)


def test_compile_without_a_cpp_compiler_decodes_eagerly(model, monkeypatch, caplog):
    monkeypatch.setattr(decoding.shutil, "which", lambda name: None)
    assert decoding.compiled(model) is model
    assert "no C++ compiler" in caplog.text
    eager = generate(model, [[1, 2]], max_new_tokens=5, temperature=0)[0].tokens
    assert (
        generate(model, [[1, 2]], max_new_tokens=5, temperature=0, compile=True)[0].tokens == eager
    )
