"""Log-probabilities, echo, token-id prompts, n and seeds, as evaluation tools use them."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
import torch

from genlab.methods.autoregressive.decoding import generate
from genlab.methods.autoregressive.scoring import token_logprobs

MODEL = "tiny-chat"
MESSAGES = [{"role": "user", "content": "Tell me about the cat."}]
TEXT = "the cat sat on the mat and the dog ran"


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.api_key, max_retries=0)


def post(server, path: str, body: dict) -> dict:
    r = httpx.post(
        f"{server.url}{path}",
        json={"model": MODEL, **body},
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return r.json()


def stream(server, path: str, body: dict) -> list[dict]:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    chunks = []
    with httpx.stream(
        "POST", f"{server.url}{path}", json={"model": MODEL, **body, "stream": True},
        headers=headers, timeout=60,
    ) as r:  # fmt: skip
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
    return chunks


def library(model, tokenizer, ids: list[int], max_tokens: int, **kw):
    """The library's own generate(): its tokens and their log-probs."""
    stops = [tokenizer.eot_id, tokenizer.eos_id, tokenizer.bos_id]
    (gen,) = generate(model, [ids], max_new_tokens=max_tokens, stop=stops, **kw)
    return gen.tokens, gen.logprobs


def scored(model, ids: list[int]) -> list[float]:
    """genlab's own scoring: the log-prob of each of ids[1:] given the tokens before it."""
    with torch.inference_mode():
        x = torch.tensor([ids])
        return token_logprobs(model, x[:, :-1], x[:, 1:]).logprobs[0].tolist()


def check_alternatives(top: list[float], chosen: float, greedy: bool) -> None:
    assert top == sorted(top, reverse=True)
    assert all(lp <= 0 for lp in [*top, chosen])
    assert chosen <= top[0] + 1e-6
    if greedy:
        assert chosen == top[0]


def test_chat_logprobs_are_the_raw_distributions_and_openai_shaped(
    server, client, model, tokenizer
):
    out = post(
        server,
        "/v1/chat/completions",
        {"messages": MESSAGES, "temperature": 0, "max_tokens": 20, "logprobs": True,
         "top_logprobs": 5},
    )  # fmt: skip
    choice = out["choices"][0]
    content = choice["logprobs"]["content"]
    tokens, logprobs = library(model, tokenizer, tokenizer.render_prompt(MESSAGES), 20,
                               temperature=0)  # fmt: skip
    if choice["finish_reason"] == "stop":  # the end of turn has no entry: not in the message
        tokens, logprobs = tokens[:-1], logprobs[:-1]
    assert (
        len(content)
        == len(tokens)
        == out["usage"]["completion_tokens"] - (choice["finish_reason"] == "stop")
    )
    for entry, token, lp in zip(content, tokens, logprobs, strict=True):
        assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"}
        assert bytes(entry["bytes"]) == tokenizer.decode([token]).encode() or entry[
            "token"
        ].startswith("bytes:")
        assert entry["logprob"] == pytest.approx(lp, abs=1e-5)
        alternatives = entry["top_logprobs"]
        assert len(alternatives) == 5
        assert all(set(a) == {"token", "logprob", "bytes"} for a in alternatives)
        check_alternatives([a["logprob"] for a in alternatives], entry["logprob"], greedy=True)
        assert alternatives[0]["token"] == entry["token"]  # greedy: the likeliest
    text = b"".join(bytes(e["bytes"]) for e in content).decode("utf-8", errors="replace")
    assert text == choice["message"]["content"]

    parsed = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, temperature=0, max_tokens=5, logprobs=True, top_logprobs=2
    )
    first = parsed.choices[0].logprobs.content[0]
    assert first.logprob == content[0]["logprob"] and len(first.top_logprobs) == 2


def test_sampled_logprobs_are_before_temperature(server, model, tokenizer):
    """Log-probs are under the model's raw distribution, not the tempered one sampled from."""
    body = {"messages": MESSAGES, "temperature": 1.5, "seed": 7, "max_tokens": 15,
            "logprobs": True}  # fmt: skip
    out = post(server, "/v1/chat/completions", body)
    content = out["choices"][0]["logprobs"]["content"]
    _, logprobs = library(model, tokenizer, tokenizer.render_prompt(MESSAGES), 15,
                          temperature=1.5, seed=7)  # fmt: skip
    assert [e["logprob"] for e in content] == pytest.approx(logprobs[: len(content)], abs=1e-5)
    assert all(e["top_logprobs"] == [] for e in content)  # logprobs without top_logprobs


def test_streamed_chat_logprobs_equal_the_whole_answers(server):
    body = {"messages": MESSAGES, "temperature": 0.8, "seed": 3, "max_tokens": 25,
            "logprobs": True, "top_logprobs": 3}  # fmt: skip
    whole = post(server, "/v1/chat/completions", body)["choices"][0]["logprobs"]["content"]
    chunks = stream(server, "/v1/chat/completions", body)
    streamed = [
        e
        for c in chunks
        for ch in c["choices"]
        if ch["logprobs"]
        for e in ch["logprobs"]["content"]
    ]
    assert streamed == whole


def test_completion_logprobs_in_the_legacy_format(server, model, tokenizer):
    out = post(server, "/v1/completions",
               {"prompt": TEXT, "temperature": 0, "max_tokens": 12, "logprobs": 3})  # fmt: skip
    choice = out["choices"][0]
    lp = choice["logprobs"]
    assert set(lp) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
    tokens, logprobs = library(model, tokenizer, [tokenizer.bos_id, *tokenizer.encode(TEXT)], 12,
                               temperature=0)  # fmt: skip
    assert lp["tokens"] == [tokenizer.decode([t]) for t in tokens] or any(
        t.startswith("bytes:") for t in lp["tokens"]
    )
    assert lp["token_logprobs"] == pytest.approx(logprobs, abs=1e-5)
    for chosen, top in zip(lp["token_logprobs"], lp["top_logprobs"], strict=True):
        assert 1 <= len(top) <= 3  # two ids may share a spelling
        check_alternatives(list(top.values()), chosen, greedy=True)
    # text_offset: where each token's text starts in the choice's text
    assert lp["text_offset"] == sorted(lp["text_offset"]) and lp["text_offset"][0] == 0
    assert all(0 <= o <= len(choice["text"]) for o in lp["text_offset"])


def test_echo_scores_the_prompt_as_genlab_scores_it(server, model, tokenizer):
    ids = tokenizer.encode(TEXT)
    out = post(server, "/v1/completions",
               {"prompt": TEXT, "echo": True, "max_tokens": 0, "logprobs": 2})  # fmt: skip
    choice = out["choices"][0]
    lp = choice["logprobs"]
    assert choice["text"] == TEXT and choice["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 0
    assert lp["tokens"] == [tokenizer.decode([t]) for t in ids]
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    reference = scored(model, [tokenizer.bos_id, *ids])  # the prompt follows <|bos|>
    assert lp["token_logprobs"][1:] == pytest.approx(reference[1:], abs=1e-5)
    offsets = [len(tokenizer.decode(ids[:i])) for i in range(len(ids))]
    assert lp["text_offset"] == offsets
    for chosen, top in zip(lp["token_logprobs"][1:], lp["top_logprobs"][1:], strict=True):
        check_alternatives(list(top.values()), chosen, greedy=False)
        # lm-evaluation-harness's greedy test: a token is greedy iff it is the likeliest
        assert (chosen == max(top.values())) == (chosen >= max(top.values()) - 1e-9)


def test_echo_with_generation_like_lm_evaluation_harness(server, model, tokenizer):
    """lm-eval's loglikelihood request: token ids, echo, max_tokens 1, logprobs 1, greedy;
    it reads token_logprobs[ctxlen:-1]."""
    context, continuation = tokenizer.encode("the cat sat on"), tokenizer.encode(" the mat")
    ids = context + continuation
    out = post(server, "/v1/completions",
               {"prompt": [ids, ids[:4]], "echo": True, "max_tokens": 1, "logprobs": 1,
                "temperature": 0, "seed": 1234})  # fmt: skip
    first, second = out["choices"]
    assert len(first["logprobs"]["tokens"]) == len(ids) + 1
    assert len(second["logprobs"]["tokens"]) == 4 + 1
    reference = scored(model, [tokenizer.bos_id, *ids])
    got = first["logprobs"]["token_logprobs"][len(context) : -1]
    assert got == pytest.approx(reference[len(context) :], abs=1e-5)
    assert first["text"].startswith(tokenizer.decode(ids))


def test_token_id_prompts_equal_text_prompts(server, tokenizer):
    ids = tokenizer.encode(TEXT)
    kw = {"temperature": 0.9, "seed": 5, "max_tokens": 10, "logprobs": 1}
    by_text = post(server, "/v1/completions", {"prompt": TEXT, **kw})["choices"][0]
    by_ids = post(server, "/v1/completions", {"prompt": ids, **kw})["choices"][0]
    with_bos = post(server, "/v1/completions", {"prompt": [tokenizer.bos_id, *ids], **kw})
    assert by_ids == by_text == with_bos["choices"][0]
    several = post(server, "/v1/completions", {"prompt": [ids, ids[:3]], **kw})
    assert [c["index"] for c in several["choices"]] == [0, 1]
    together = several["choices"][0]  # beside a shorter prompt: the same, to float rounding
    assert together["text"] == by_text["text"]
    assert together["logprobs"]["tokens"] == by_text["logprobs"]["tokens"]
    expected = by_text["logprobs"]["token_logprobs"]
    assert together["logprobs"]["token_logprobs"] == pytest.approx(expected, abs=1e-5)


def test_n_and_seed_give_several_reproducible_choices(server):
    body = {"prompt": ["the cat", "hello"], "temperature": 1.0, "max_tokens": 12, "n": 3,
            "seed": 42, "logprobs": 0}  # fmt: skip
    a = post(server, "/v1/completions", body)["choices"]
    b = post(server, "/v1/completions", body)["choices"]
    assert a == b and [c["index"] for c in a] == list(range(6))
    assert len({c["text"] for c in a[:3]}) == 3  # each choice has its own generator
    assert all(top == {} for c in a for top in c["logprobs"]["top_logprobs"])


def test_streamed_completion_echoes_first_then_generates(server):
    body = {"prompt": TEXT, "echo": True, "max_tokens": 6, "logprobs": 1, "temperature": 0}
    whole = post(server, "/v1/completions", body)["choices"][0]
    chunks = [c["choices"][0] for c in stream(server, "/v1/completions", body)]
    assert chunks[0]["text"] == TEXT
    assert "".join(c["text"] for c in chunks) == whole["text"]
    for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
        assert [x for c in chunks for x in c["logprobs"][key]] == whole["logprobs"][key]
    scoring_only = stream(server, "/v1/completions", {**body, "max_tokens": 0})
    assert [c["choices"][0]["finish_reason"] for c in scoring_only] == [None, "length"]
