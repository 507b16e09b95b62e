"""Hostile requests: each gets an OpenAI error body, and the server keeps serving."""

from __future__ import annotations

import json
import threading

import httpx
import openai
import pytest
import torch
from fastapi.testclient import TestClient

from genlab.cli import main
from genlab.serve.logprobs import TokenTable

MODEL = "tiny-chat"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


def send(server, path: str, body=None, *, content: bytes | None = None, method: str = "POST",
         headers: dict | None = None) -> httpx.Response:  # fmt: skip
    """``body`` as ASCII JSON (so that it may spell lone surrogates), or raw ``content``."""
    if content is None and body is not None:
        content = json.dumps(body).encode()
    headers = {
        "Authorization": f"Bearer {server.api_key}",
        "Content-Type": "application/json",
        **(headers or {}),
    }
    return httpx.request(method, f"{server.url}{path}", content=content, headers=headers,
                         timeout=30)  # fmt: skip


def openai_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in r.text
    return body["error"]


def still_serving(server) -> None:
    r = send(server, "/v1/chat/completions", CHAT)
    assert r.status_code == 200, r.text


LONE = "\ud800"
SURROGATES = [  # (path, body, the field named)
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": LONE}]},
     "messages[0].content"),
    ("/v1/chat/completions",
     {**CHAT, "messages": [{"role": "user", "content": [{"type": "text", "text": "a" + LONE}]}]},
     "messages[0].content"),
    ("/v1/chat/completions", {**CHAT, "stop": ["ok", "\udfff"]}, "stop"),
    ("/v1/chat/completions", {**CHAT, "model": LONE}, "model"),
    ("/v1/chat/completions", {**CHAT, "user": LONE}, "user"),
    ("/v1/completions", {"model": MODEL, "prompt": "x" + LONE}, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": ["fine", LONE]}, "prompt"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "param"), SURROGATES)
def test_lone_surrogates_are_a_400(server, path, body, param):
    error = openai_error(send(server, path, body), 400)
    assert error["param"] == param and "surrogate" in error["message"]
    still_serving(server)


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4 stop sequences"),
        ({"stop": 5}, "stop", "a string or a list of up to 4 strings"),
        ({"stop": ["a", 5]}, "stop", "non-empty string"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content",
         "a string or a list"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
         "messages[0].content", "text only"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]},
         "messages[0].content", "text must be a string"),
    ],
)  # fmt: skip
def test_fields_of_several_shapes_say_what_is_wrong(server, body, param, says):
    error = openai_error(send(server, "/v1/chat/completions", {**CHAT, **body}), 400)
    assert error["param"] == param and says in error["message"]
    assert "Input should be" not in error["message"]


@pytest.mark.parametrize(
    ("prompt", "says"),
    [
        ([1, "a"], "a list of token ids"),
        ([[1, 2], []], "item 1 must be a non-empty list of token ids"),
        ([[1], [True]], "item 1"),
        ({"text": "hi"}, "a string, a list of strings"),
        ([10**9], "outside the vocabulary"),
    ],
)
def test_bad_prompts_say_what_is_wrong(server, prompt, says):
    r = send(server, "/v1/completions", {"model": MODEL, "prompt": prompt, "max_tokens": 2})
    error = openai_error(r, 400)
    assert error["param"] == "prompt" and says in error["message"]


def test_unknown_models_are_a_404(server):
    error = openai_error(send(server, "/v1/chat/completions", {**CHAT, "model": "gpt-9"}), 404)
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "gpt-9" in error["message"] and MODEL in error["message"]
    error = openai_error(send(server, "/v1/models/gpt-9", method="GET"), 404)
    assert error["code"] == "model_not_found"
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.api_key, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-9", prompt="hi", max_tokens=2)
    no_model = {k: v for k, v in CHAT.items() if k != "model"}
    assert send(server, "/v1/chat/completions", no_model).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "content", "status", "says"),
    [
        ("GET", "/nope", None, 404, "Invalid URL (GET /nope)"),
        ("POST", "/v1/embeddings", b"{}", 404, "Invalid URL"),
        ("GET", "/v1/chat/completions", None, 405, "use POST"),
        ("DELETE", "/v1/models", None, 405, "use GET"),
        ("POST", "/v1/chat/completions", b'{"messages": [', 400, "not valid JSON"),
        ("POST", "/v1/chat/completions", b"[" * 30_000 + b"]" * 30_000, 400, ""),
        ("POST", "/v1/chat/completions", b"\xed\xa0\x80", 400, "JSON"),  # UTF-8 of a surrogate
        ("POST", "/v1/chat/completions", b'{"messages": NaN}', 400, ""),
    ],
    ids=["404", "404-post", "405", "405-delete", "cut-json", "deep-json", "bad-utf8", "nan"],
)
def test_every_refusal_has_the_openai_shape(server, method, path, content, status, says):
    error = openai_error(send(server, path, content=content, method=method), status)
    assert says in error["message"]
    still_serving(server)


def test_a_failure_inside_the_server_is_a_500_without_insides(server, tokenizer, monkeypatch):
    def broken(messages):
        raise RuntimeError("secret detail at /home/me/model.py")

    monkeypatch.setattr(tokenizer, "render_prompt", broken)
    error = openai_error(send(server, "/v1/chat/completions", CHAT), 500)
    assert error["type"] == "server_error"
    assert "secret" not in error["message"] and "RuntimeError" not in error["message"]
    monkeypatch.undo()
    still_serving(server)


def test_a_megabyte_message_is_refused_before_it_is_tokenized(server, tokenizer, monkeypatch):
    calls = []
    real = tokenizer.render_prompt
    monkeypatch.setattr(tokenizer, "render_prompt", lambda *a: calls.append(1) or real(*a))
    big = {**CHAT, "messages": [{"role": "user", "content": "é" * 10_000}]}
    error = openai_error(send(server, "/v1/chat/completions", big), 400)
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    big = {"model": MODEL, "prompt": ["hi", "ab" * 30_000]}
    error = openai_error(send(server, "/v1/completions", big), 400)
    assert error["code"] == "context_length_exceeded" and error["param"] == "prompt"
    assert calls == []  # never tokenized
    # text that might fit is tokenized (on a worker thread) and measured exactly
    error = openai_error(send(server, "/v1/chat/completions", {
        **CHAT, "messages": [{"role": "user", "content": "the cat " * 130}]}), 400)  # fmt: skip
    assert error["code"] == "context_length_exceeded" and calls == [1]


def test_the_length_bound_never_refuses_text_that_fits(tokenizer):
    """A token covers at most ``longest`` bytes, so n tokens cover at most n * longest bytes."""
    table = TokenTable(tokenizer)
    texts = ["the cat sat on the mat", "é" * 50, "😀 emoji 😀", "def add(a, b):\n    return",
             " " * 40, "<|eot|><|bos|>", "ab" * 100, "hello there! how are you today?"]  # fmt: skip
    for text in texts:
        assert len(tokenizer.encode(text)) * table.longest >= len(text.encode())


def app_client(model, tokenizer, **kw) -> TestClient:
    from genlab.serve.api import create_app
    from genlab.serve.engine import Engine

    app = create_app(Engine(model, tokenizer, max_batch=2), model_id=MODEL, **kw)
    return TestClient(app, base_url="http://localhost", raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost", True),
        ("localhost:8000", True),
        ("LOCALHOST.:8000", True),
        ("127.0.0.1:8000", True),
        ("[::1]:8000", True),
        ("10.1.2.3", True),  # an IP address: no rebinding can forge it
        ("evil.example", False),
        ("evil.example:8000", False),
        ("localhost.evil.example", False),
        ("127.0.0.1.evil.example", False),
        ("[::1", False),
        ("", False),
        ("chat.example", True),  # --allowed-hosts chat.example
    ],
)
def test_the_host_header_defends_against_dns_rebinding(model, tokenizer, host, allowed):
    with app_client(model, tokenizer, allowed_hosts=["chat.example"]) as client:
        for path in ("/", "/health", "/v1/models"):
            r = client.get(path, headers={"Host": host})
            if allowed:
                assert r.status_code == 200, (host, path)
            else:
                error = openai_error(r, 403)
                assert error["code"] == "host_not_allowed"


def test_any_host_with_a_star(model, tokenizer):
    with app_client(model, tokenizer, allowed_hosts=None) as client:
        assert client.get("/health", headers={"Host": "evil.example"}).status_code == 200


def test_the_cli_passes_allowed_hosts(run_dir, monkeypatch):
    import genlab.serve.api

    got = {}
    monkeypatch.setattr(genlab.serve.api, "serve", lambda folder, **kw: got.update(kw))
    main(["serve", str(run_dir), "--allowed-hosts", "a.example,b.example",
          "--allowed-hosts", "c.example"])  # fmt: skip
    assert got["allowed_hosts"] == ["a.example", "b.example", "c.example"]
    main(["serve", str(run_dir)])
    assert got["allowed_hosts"] == []


def test_the_cli_passes_the_kv_cache_precision(run_dir, monkeypatch, capsys):
    import genlab.serve.api

    got = {}
    monkeypatch.setattr(genlab.serve.api, "serve", lambda folder, **kw: got.update(kw))
    main(["serve", str(run_dir), "--kv-cache", "bf16"])
    assert got["kv_dtype"] == torch.bfloat16
    main(["serve", str(run_dir)])
    assert got["kv_dtype"] is None
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", str(run_dir), "--kv-cache", "fp8"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert "unknown precision 'fp8'" in err and "Traceback" not in err


def test_a_non_ascii_api_key(model, tokenizer):
    key = "clé-🔑-ключ"
    with app_client(model, tokenizer, api_key=key) as client:
        right = {"Authorization": b"Bearer " + key.encode("utf-8")}
        assert client.get("/v1/models", headers=right).status_code == 200
        for wrong in (
            b"Bearer " + key.encode("latin-1", "replace"),
            b"Bearer cl\xe9",
            b"Bearer " + key.encode("utf-8")[:-1],
            b"Basic " + key.encode(),
            b"\xff",
        ):
            r = client.get("/v1/models", headers={"Authorization": wrong})
            assert openai_error(r, 401)["code"] == "invalid_api_key"  # fmt: skip
        assert client.get("/health").status_code == 200  # open: the page reads it


def test_concurrent_hostile_requests_leave_it_serving(server):
    bodies = [c for _, c, _ in SURROGATES] + [{**CHAT, "stop": 5}, {**CHAT, "model": "x"}]
    statuses = []

    def fire(body):
        statuses.append(send(server, "/v1/chat/completions", body).status_code)

    threads = [threading.Thread(target=fire, args=(b,)) for b in bodies * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses and all(s in (400, 404) for s in statuses)
    still_serving(server)
