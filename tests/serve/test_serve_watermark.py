"""``genlab serve --watermark KEY``: every answer carries the watermark (Kirchenbauer et al.,
2023), greedy and sampled rows alike, and a request alone gets the tokens that
``generate(..., logits_bias=...)`` gives."""

from __future__ import annotations

import pytest

from genlab.cli import main
from genlab.methods.autoregressive.decoding import generate
from genlab.research.watermark import Watermark
from genlab.serve.engine import Engine, SequenceRequest


def served_with(run_dir, *options: str) -> dict:
    """What ``genlab serve RUN OPTIONS`` hands to the server (nothing is served)."""
    import genlab.serve.api

    got: dict = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(genlab.serve.api, "serve", lambda folder, **kw: got.update(kw))
        main(["serve", str(run_dir), *options])
    return got


def answers(engine: Engine, requests: list[SequenceRequest]) -> list[list[int]]:
    tokens: dict[int, list[int]] = {i: [] for i in range(len(requests))}
    engine.submit(requests, lambda e: e.token is not None and tokens[e.index].append(e.token))
    while engine.step():
        pass
    return [tokens[i] for i in range(len(requests))]


def test_served_answers_carry_the_watermark(run_dir, model, tokenizer):
    bias = served_with(run_dir, "--watermark", "k", "--watermark-delta", "4")["logits_bias"]
    assert isinstance(bias, Watermark) and bias.delta == 4.0 and bias.gamma == 0.25
    assert bias.entropy_threshold == 0.0
    gated = served_with(run_dir, "--watermark", "k", "--watermark-entropy", "1.5")["logits_bias"]
    assert gated.entropy_threshold == 1.5
    prompt = [tokenizer.bos_id, *tokenizer.encode("the cat sat")]
    requests = [SequenceRequest(prompt, max_tokens=50, temperature=1.0, seed=s) for s in range(6)]
    requests.append(SequenceRequest(prompt, max_tokens=50, temperature=0.0))
    engine = Engine(model, tokenizer, stop_ids=(), logits_bias=bias)
    plain = answers(Engine(model, tokenizer, stop_ids=()), requests)
    marked = answers(engine, requests)
    detector = Watermark("k")  # the key alone finds it
    z_marked = [detector.score(t, prompt_last=prompt[-1]).z for t in marked]
    z_plain = [detector.score(t, prompt_last=prompt[-1]).z for t in plain]
    assert min(z_marked) > 5.0, z_marked
    assert max(abs(z) for z in z_plain) < 3.5, z_plain
    assert max(abs(Watermark("other").score(t, prompt[-1]).z) for t in marked) < 3.5


@pytest.mark.parametrize("temperature", [0.0, 0.9])
@pytest.mark.parametrize("entropy", [0.0, 2.0])
def test_alone_the_engine_watermarks_as_generate_does(model, tokenizer, temperature, entropy):
    wm = Watermark("k", delta=2.0, entropy_threshold=entropy)
    ids = [tokenizer.bos_id, *tokenizer.encode("hello there")]
    engine = Engine(model, tokenizer, stop_ids=(), logits_bias=wm)
    (got,) = answers(engine, [SequenceRequest(ids, 30, temperature=temperature, seed=3)])
    (ref,) = generate(model, [ids], 30, temperature, seed=3, logits_bias=wm)
    assert got == ref.tokens


def test_serving_without_a_key_adds_no_bias_and_a_bad_gamma_is_one_line(run_dir, capsys):
    assert served_with(run_dir)["logits_bias"] is None
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        served_with(run_dir, "--watermark", "k", "--watermark-gamma", "0")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gamma" in err
