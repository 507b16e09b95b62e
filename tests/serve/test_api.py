"""The OpenAI-compatible API, through the official openai client and raw HTTP."""

from __future__ import annotations

import contextlib
import time

import httpx
import openai
import pytest

from genlab.cli import main
from genlab.methods.autoregressive.decoding import generate


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.api_key, max_retries=0)


def reference(model, tokenizer, ids: list[int], max_tokens: int, **kw):
    """What the library's own generate() gives: (text, finish_reason, completion tokens)."""
    stops = [tokenizer.eot_id, tokenizer.eos_id, tokenizer.bos_id]
    (gen,) = generate(model, [ids], max_new_tokens=max_tokens, stop=stops, **kw)
    body = gen.tokens[:-1] if gen.finish_reason == "stop" else gen.tokens
    return tokenizer.decode(body, skip_special=True), gen.finish_reason, len(gen.tokens)


MODEL = "tiny-chat"  # the run folder's name
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Tell me about the cat."},
]


def test_models_and_health(client, server, run_dir):
    assert [m.id for m in client.models.list()] == [run_dir.name]
    assert client.models.retrieve(run_dir.name).owned_by == "genlab"
    health = server.health()
    assert health["status"] == "ok" and health["model"] == run_dir.name
    assert health["context"] == 256 and health["max_tokens_cap"] == 64


def test_chat_completion_matches_the_library(client, model, tokenizer):
    out = client.chat.completions.create(
        model="tiny-chat", messages=MESSAGES, temperature=0, max_tokens=40
    )
    ids = tokenizer.render_prompt(MESSAGES)
    text, finish, n = reference(model, tokenizer, ids, 40, temperature=0)
    assert out.object == "chat.completion" and out.id.startswith("chatcmpl-")
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].message.content == text
    assert out.choices[0].finish_reason == finish
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (len(ids), n)
    assert out.usage.total_tokens == len(ids) + n


def test_streamed_chat_sends_the_same_text(client):
    kw = dict(model=MODEL, messages=MESSAGES, temperature=0.9, seed=3, max_tokens=40)
    whole = client.chat.completions.create(**kw)
    chunks = list(
        client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True})
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces) == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == whole.choices[0].finish_reason and not any(finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


def test_streamed_text_arrives_while_it_is_generated(slow_server):
    client = openai.OpenAI(base_url=f"{slow_server.url}/v1", api_key="none", max_retries=0)
    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, temperature=1.0, seed=0, max_tokens=12, stream=True
    )
    arrivals = [time.monotonic() for c in stream if c.choices and c.choices[0].delta.content]
    # one token per SLOW_STEP_S (20 ms): the pieces come one by one, not all at the end
    assert len(arrivals) >= 6
    assert arrivals[-1] - arrivals[0] > 0.1


def test_seeds_reproduce_and_n_gives_several_choices(client):
    kw = dict(model=MODEL, messages=MESSAGES, temperature=1.0, max_tokens=30, n=3)
    a = client.chat.completions.create(**kw, seed=11)
    b = client.chat.completions.create(**kw, seed=11)
    c = client.chat.completions.create(**kw, seed=12)
    texts = [ch.message.content for ch in a.choices]
    assert [ch.index for ch in a.choices] == [0, 1, 2]
    assert texts == [ch.message.content for ch in b.choices]
    assert len(set(texts)) == 3  # each choice has its own generator
    assert texts[1:] == [ch.message.content for ch in c.choices][:2]  # seed + index


def test_completions_plain_streamed_and_stopped(client, model, tokenizer):
    ids = [tokenizer.bos_id, *tokenizer.encode("the dog ran")]
    text, finish, n = reference(model, tokenizer, ids, 30, temperature=0)
    out = client.completions.create(model=MODEL, prompt="the dog ran", max_tokens=30, temperature=0)
    assert out.object == "text_completion"
    assert (out.choices[0].text, out.choices[0].finish_reason) == (text, finish)
    assert out.usage.completion_tokens == n and len(text) > 11
    streamed = client.completions.create(
        model=MODEL, prompt="the dog ran", max_tokens=30, temperature=0, stream=True
    )
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks) == text
    assert chunks[-1].choices[0].finish_reason == finish
    stop = text[8:11]
    stopped = client.completions.create(
        model=MODEL, prompt="the dog ran", max_tokens=30, temperature=0, stop=[stop]
    )
    assert stopped.choices[0].text == text[: text.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"


def test_several_prompts_in_one_completion_request(client):
    out = client.completions.create(
        model=MODEL, prompt=["the cat", "hello"], max_tokens=5, temperature=0, n=2
    )
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    assert out.choices[0].text == out.choices[1].text  # greedy: the same twice
    one = client.completions.create(model=MODEL, prompt="hello", max_tokens=5, temperature=0)
    assert out.choices[2].text == one.choices[0].text


def test_concurrent_clients_get_what_they_get_alone(client):
    import concurrent.futures

    prompts = [f"the cat {w}" for w in ("sat", "ran", "is", "and the dog", "hello")]

    def ask(p: str) -> str:
        out = client.completions.create(
            model=MODEL, prompt=p, max_tokens=25, temperature=0.7, seed=1
        )
        return out.choices[0].text

    alone = [ask(p) for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(ask, prompts))
    assert together == alone


def post(server, path: str, body=None, *, content: bytes | None = None, key: str | None = ""):
    key = server.api_key if key == "" else key
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if content is not None:
        headers["Content-Type"] = "application/json"
        return httpx.post(f"{server.url}{path}", content=content, headers=headers, timeout=30)
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=30)


CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
BAD_CHATS = [  # (change to a valid request, the field the 400 must name)
    ({"temperature": "hot"}, "temperature"),
    ({"temperature": 2.5}, "temperature"),
    ({"temperature": -0.1}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"max_tokens": 65}, "max_tokens"),  # the server's cap is 64
    ({"max_completion_tokens": 1000}, "max_completion_tokens"),
    ({"max_tokens": "10"}, "max_tokens"),
    ({"messages": []}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user"}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": "word " * 400}]}, "messages"),  # > context
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stop": ""}, "stop"),
    ({"n": 0}, "n"),
    ({"n": 9}, "n"),  # more than the 8 sequences decoded together
    ({"seed": 2**64}, "seed"),
    ({"stream": "yes"}, "stream"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"top_logprobs": 2}, "top_logprobs"),  # without logprobs: true
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
]


@pytest.mark.parametrize(("change", "param"), BAD_CHATS, ids=[p for _, p in BAD_CHATS])
def test_bad_chat_requests_get_a_400_naming_the_field(server, change, param):
    r = post(server, "/v1/chat/completions", {**CHAT, **change})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert param.split("[")[0] in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": [1, -2, 3]}, "prompt"),
        ({"prompt": []}, "prompt"),
        ({"prompt": "the " * 300}, "prompt"),
        ({"prompt": "hi", "logprobs": 6}, "logprobs"),
        ({"prompt": "hi", "max_tokens": 0}, "max_tokens"),  # 0 only scores, with echo
    ],
)
def test_bad_completion_requests_get_a_400_naming_the_field(server, body, param):
    r = post(server, "/v1/completions", {"model": MODEL, "max_tokens": 3, **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


@pytest.mark.parametrize(
    "content",
    [b'{"messages": [', b"", b"[1, 2]", b"\xff\xfe"],
    ids=["cut", "empty", "list", "bytes"],
)
def test_malformed_bodies_get_a_400_and_the_server_keeps_serving(server, content):
    r = post(server, "/v1/chat/completions", content=content)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] is None
    assert "JSON" in error["message"]
    ok = post(server, "/v1/chat/completions", CHAT)
    assert ok.status_code == 200 and ok.json()["choices"][0]["finish_reason"] in ("stop", "length")


def test_oversized_bodies_get_a_413(server):
    r = post(server, "/v1/completions", {"model": MODEL, "prompt": "x" * 70000})
    assert r.status_code == 413
    assert "bytes" in r.json()["error"]["message"]


def test_the_api_key_is_required_when_set(server, client):
    for key in (None, "wrong"):
        r = post(server, "/v1/chat/completions", CHAT, key=key)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{server.url}/v1/models").status_code == 401
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    assert httpx.get(f"{server.url}/health").status_code == 200  # open: the page reads it
    assert httpx.get(f"{server.url}/").status_code == 200


def long_chat(max_tokens: int = 200) -> dict:
    return {**CHAT, "max_tokens": max_tokens, "temperature": 0}


def test_a_full_engine_answers_429_then_recovers(slow_server):
    url = f"{slow_server.url}/v1/chat/completions"
    with httpx.Client(timeout=30) as http, contextlib.ExitStack() as streams:
        for _ in range(3):  # 2 decoding + 1 waiting fill it
            r = streams.enter_context(
                http.stream("POST", url, json={**long_chat(), "stream": True})
            )
            assert r.status_code == 200
        full = http.post(url, json=long_chat())
        assert full.status_code == 429
        assert full.json()["error"]["type"] == "rate_limit_error"
    slow_server.wait_idle()
    r = httpx.post(url, json=long_chat(3), timeout=30)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3


def test_a_client_that_disconnects_stops_being_decoded(slow_server):
    url = f"{slow_server.url}/v1/chat/completions"
    before = slow_server.wait_idle()
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", url, json={**long_chat(), "stream": True}) as r:
            events = 0
            for line in r.iter_lines():
                events += line.startswith("data:")
                if events == 4:  # the role chunk and 3 pieces of text: then hang up
                    break
        # a non-streamed request whose client gives up waiting
        with pytest.raises(httpx.ReadTimeout):
            http.post(url, json=long_chat(), timeout=0.5)
    t0 = time.monotonic()
    after = slow_server.wait_idle()
    assert time.monotonic() - t0 < 2  # 200 tokens each would take 4 s
    assert after["cancelled"] - before["cancelled"] == 2
    assert after["generated_tokens"] - before["generated_tokens"] < 100


def test_cli_refuses_a_missing_run_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", str(tmp_path / "nope")])
    assert exit_info.value.code == 2
    assert "run folder not found" in capsys.readouterr().err
