"""OpenAI function calling through the official client: tools, tool_choice, response_format,
role: tool messages, streamed calls, the server's own tools, and what is refused."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import httpx
import jsonschema
import openai
import pytest
import torch

from genlab.nets.gpt import GPT, GPTConfig
from genlab.serve.api import create_app
from genlab.serve.engine import Engine
from genlab.serve.server_tools import _run
from genlab.tools.base import Tool
from genlab.tools.calculator import calculator_tool

MODEL = "tiny-chat"
WEATHER_ARGS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "enum": ["Paris", "Rome", "Zürich"]},
        "unit": {"type": "string", "maxLength": 6},
        "days": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3},
    },
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {"name": "weather", "description": "Weather.", "parameters": WEATHER_ARGS},
}
NOW = {"type": "function", "function": {"name": "now"}}
ASK = [{"role": "user", "content": "Weather in Rome?"}]
NAMED = {"type": "function", "function": {"name": "weather"}}


class CallFirst:
    """A planted model: a logits bias that makes it open a tool call as the first token of an
    assistant turn (it writes whatever its grammar lets it after that)."""

    def __init__(self, tokenizer) -> None:
        self.assistant, self.opener = tokenizer.assistant_id, tokenizer.tool_call_id

    def __call__(self, prev: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.clone()
        logits[prev == self.assistant, self.opener] += 100.0
        return logits


@pytest.fixture(scope="module")
def long_model(tokenizer) -> GPT:
    """The serving tests' tiny random GPT with a longer context: the tiny tokenizer spells a
    tool's JSON in hundreds of tokens."""
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=1024, n_layer=2, n_head=2, n_embd=32
    )
    return GPT(config).eval()


class ShortStrings:
    """A planted model that writes strings of sevens, a few long: in a call of the calculator,
    a number it can compute (a random model's strings would run to max_tokens)."""

    def __init__(self, tokenizer) -> None:
        (self.quote,) = tokenizer.encode('"')
        (self.seven,) = tokenizer.encode("7")

    def __call__(self, prev: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.clone()
        logits[:, self.seven] += 8.0
        logits[:, self.quote] += 7.0
        return logits


def client_of(live) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key="none", max_retries=0)


@pytest.fixture(scope="module")
def plain(long_model, tokenizer, live_server):
    engine = Engine(long_model, tokenizer, max_batch=8)
    live = live_server(create_app(engine, model_id=MODEL, grammar_budget_s=2.0), engine)
    return client_of(live)


@pytest.fixture(scope="module")
def caller(long_model, tokenizer, live_server):
    """The planted model that calls a tool whenever it may."""
    engine = Engine(long_model, tokenizer, max_batch=8, logits_bias=CallFirst(tokenizer))
    return client_of(live_server(create_app(engine, model_id=MODEL), engine))


def args_of(reply) -> dict:
    (call,) = reply.choices[0].message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    return json.loads(call.function.arguments)


def test_a_named_tool_choice_always_gives_arguments_that_match_the_schema(plain):
    seen = set()
    for seed in range(5):
        reply = plain.chat.completions.create(
            model=MODEL, messages=ASK, tools=[WEATHER, NOW], tool_choice=NAMED, seed=seed
        )
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        assert choice.message.tool_calls[0].function.name == "weather"
        arguments = args_of(reply)
        jsonschema.validate(arguments, WEATHER_ARGS)
        seen.add(json.dumps(arguments))
    assert len(seen) > 1  # sampled, not fixed


def test_required_calls_one_of_the_tools(plain):
    names = set()
    for seed in range(6):
        reply = plain.chat.completions.create(
            model=MODEL, messages=ASK, tools=[WEATHER, NOW], tool_choice="required", seed=seed
        )
        (call,) = reply.choices[0].message.tool_calls
        names.add(call.function.name)
        if call.function.name == "now":
            assert json.loads(call.function.arguments) == {}
        else:
            jsonschema.validate(json.loads(call.function.arguments), WEATHER_ARGS)
    assert names <= {"weather", "now"}


def test_a_streamed_call_arrives_in_openais_chunks(plain):
    kw = dict(model=MODEL, messages=ASK, tools=[WEATHER], tool_choice=NAMED, seed=3)
    whole = plain.chat.completions.create(**kw)
    chunks = list(plain.chat.completions.create(**kw, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    first = deltas[0].tool_calls[0]
    assert first.index == 0 and first.id.startswith("call_") and first.type == "function"
    assert first.function.name == "weather" and first.function.arguments == ""
    later = [d.tool_calls[0] for d in deltas[1:]]
    assert len(later) > 1 and all(t.index == 0 and t.id is None for t in later)
    streamed = "".join(t.function.arguments for t in later)
    assert streamed == whole.choices[0].message.tool_calls[0].function.arguments
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls" and not any(finishes[:-1])


def test_the_clients_stream_helper_accumulates_the_call(plain):
    with plain.beta.chat.completions.stream(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice=NAMED, seed=4
    ) as stream:
        final = stream.get_final_completion()
    jsonschema.validate(args_of(final), WEATHER_ARGS)


def test_auto_lets_the_model_call_and_the_grammar_write_the_call(caller):
    reply = caller.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], seed=0, n=3)
    for choice in reply.choices:
        assert choice.finish_reason == "tool_calls"
        (call,) = choice.message.tool_calls
        jsonschema.validate(json.loads(call.function.arguments), WEATHER_ARGS)


def test_tool_choice_none_and_no_tools_never_call(caller):
    none = caller.chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="none", max_tokens=10, seed=0
    )
    assert none.choices[0].message.tool_calls is None
    assert none.choices[0].finish_reason in ("stop", "length")


def test_a_tool_result_round_trip(plain, tokenizer):
    call = plain.chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice=NAMED, seed=1
    )
    message = call.choices[0].message
    result = {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "sunny"}
    history = [*ASK, message.model_dump(exclude_none=True), result]
    reply = plain.chat.completions.create(
        model=MODEL, messages=history, tools=[WEATHER], tool_choice="none", max_tokens=5
    )
    # the server laid out exactly what the model wrote, then the result, then a new turn
    template = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [message.tool_calls[0].model_dump()]},
        {"role": "tool", "content": "sunny"},
    ]
    ids = tokenizer.render_prompt(template, tools=[WEATHER])
    assert reply.usage.prompt_tokens == len(ids)
    written = [t for t in ids if t == tokenizer.tool_call_id]
    assert len(written) == 1 and ids[-1] == tokenizer.assistant_id


def test_response_format_json_schema_and_json_object(plain):
    schema = {"name": "forecast", "schema": WEATHER_ARGS, "strict": True}
    for seed in range(4):
        reply = plain.chat.completions.create(
            model=MODEL,
            messages=ASK,
            response_format={"type": "json_schema", "json_schema": schema},
            seed=seed,
        )
        assert reply.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(reply.choices[0].message.content), WEATHER_ARGS)
    reply = plain.chat.completions.create(
        model=MODEL, messages=ASK, response_format={"type": "json_object"}, seed=0
    )
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(reply.choices[0].message.content), dict)
    assert reply.choices[0].message.content.startswith("{")


def test_a_call_cut_by_max_tokens(plain):
    kw = dict(model=MODEL, messages=ASK, tools=[WEATHER], tool_choice=NAMED, seed=2)
    before_name = plain.chat.completions.create(**kw, max_tokens=3)
    assert before_name.choices[0].finish_reason == "length"
    assert before_name.choices[0].message.tool_calls is None
    whole = plain.chat.completions.create(**kw)
    arguments = whole.choices[0].message.tool_calls[0].function.arguments
    short = whole.usage.completion_tokens - 3  # the same tokens, the last three cut
    cut = plain.chat.completions.create(**kw, max_tokens=short)
    assert cut.choices[0].finish_reason == "length"
    (call,) = cut.choices[0].message.tool_calls
    assert arguments.startswith(call.function.arguments) and call.function.arguments != arguments
    chunks = list(plain.chat.completions.create(**kw, max_tokens=short, stream=True))
    pieces = [c.choices[0].delta.tool_calls[0].function.arguments for c in chunks if c.choices
              and c.choices[0].delta.tool_calls]  # fmt: skip
    assert "".join(pieces) == call.function.arguments


# ---- the server's own tools ------------------------------------------------------------------


def recording(tool: Tool, calls: list) -> Tool:
    """``tool``, noting each argument it gets and the result it gives."""

    def run(argument: str) -> str:
        result = tool.run(argument)
        calls.append((argument, result))
        return result

    return dataclasses.replace(tool, run=run)


def server_with(
    tools, long_model, tokenizer, live_server, monkeypatch
) -> tuple[openai.OpenAI, list]:
    """A server of the planted model with its own ``tools``, and the sequences it submits."""
    engine = Engine(long_model, tokenizer, max_batch=8, logits_bias=ShortStrings(tokenizer))
    sent: list = []
    submit = engine.submit
    monkeypatch.setattr(engine, "submit", lambda seqs, on: sent.extend(seqs) or submit(seqs, on))
    app = create_app(engine, model_id=MODEL, server_tools=tools)
    return client_of(live_server(app, engine)), sent


def test_server_tools_run_and_the_model_goes_on(long_model, tokenizer, live_server, monkeypatch):
    calls: list = []
    tools = {"calculator": recording(calculator_tool(), calls)}
    client, sent = server_with(tools, long_model, tokenizer, live_server, monkeypatch)
    kw = dict(
        model=MODEL,
        messages=ASK,
        tool_choice={"type": "function", "function": {"name": "calculator"}},
        seed=1,  # a seed whose call has sevens (others write "", which the calculator refuses)
        max_tokens=80,
    )
    reply = client.chat.completions.create(**kw)
    choice = reply.choices[0]
    assert choice.message.tool_calls is None and choice.finish_reason in ("stop", "length")
    assert calls and len(sent) == len(calls) + 1
    argument, result = calls[0]
    assert argument and set(argument) == {"7"} and result == argument  # computed: 777 is 777
    continued = sent[1].prompt
    tail = [tokenizer.tool_result_id, *tokenizer.encode(result), tokenizer.tool_result_end_id]
    assert continued[-len(tail) - 1 :] == [*tail, tokenizer.assistant_id]
    # every token after the prompt counts: the calls, the results and the answers
    fed = len(sent[-1].prompt) - reply.usage.prompt_tokens
    assert fed < reply.usage.completion_tokens <= fed + sent[-1].max_tokens
    # the same request streamed gives the same answer, and no call
    stream = client.chat.completions.create(
        **kw, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == (choice.message.content or "") and chunks[-1].usage == reply.usage
    assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)


def test_the_calculator_answers_a_call():
    assert _run(calculator_tool(), '{"expression": "2 + 3 * 4"}') == "14"
    assert _run(calculator_tool(), '{"expression": 5}').startswith("error:")
    assert _run(calculator_tool(), '{"expression": "2 +"}').startswith("error:")


def test_a_failing_or_hanging_server_tool_gives_an_error_text(
    long_model, tokenizer, live_server, monkeypatch
):
    def hang(argument: str) -> str:
        time.sleep(5)
        return "late"

    def fail(argument: str) -> str:
        raise RuntimeError("disk on fire")

    tools = {
        "hang": Tool("hang", "Hangs.", "x", hang, timeout_s=0.2),
        "fail": Tool("fail", "Fails.", "x", fail),
    }
    client, sent = server_with(tools, long_model, tokenizer, live_server, monkeypatch)
    for name, says in (("hang", "error: hang took longer than 0.2 s"), ("fail", "disk on fire")):
        sent.clear()
        started = time.monotonic()
        reply = client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tool_choice={"type": "function", "function": {"name": name}},
            seed=1,
            max_tokens=80,
        )
        assert time.monotonic() - started < 4
        assert reply.choices[0].message.tool_calls is None
        assert says in tokenizer.decode(sent[1].prompt)


# ---- refusals --------------------------------------------------------------------------------

LONE = "\ud800"
DEEP: dict = {"type": "object"}
for _ in range(20):
    DEEP = {"type": "object", "properties": {"a": DEEP}}
BAD = [  # (change to a valid request, param, words of the message)
    ({"tools": [{"type": "function", "function": {"name": "no spaces"}}]},
     "tools[0].function.name", "pattern"),
    ({"tools": [{"type": "function", "function": {"name": "x" * 65}}]},
     "tools[0].function.name", "pattern"),
    ({"tools": [{"type": "code", "function": {"name": "f"}}]}, "tools[0].type", "function"),
    ({"tools": [NOW, NOW]}, "tools", "two tools are named 'now'"),
    ({"tools": [NOW] * 129}, "tools", "129"),
    ({"tools": {"name": "f"}}, "tools", "list"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]},
     "tools[0].function.parameters", "dictionary"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": DEEP}}]},
     "tools[0].function.parameters", "deeper than 16"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "description": "x" * 20000}}}]},
     "tools[0].function.parameters", "at most 16384"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "description": LONE}}}]},
     "tools[0].function.parameters", "surrogate"),
    ({"tools": [{"type": "function", "function": {"name": "f", "strict": True, "parameters": {
        "type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}}}}]},
     "tools[0].function.parameters", "minimum"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "now"}}},
     "tool_choice", "no tool named 'now'"),
    ({"tool_choice": "required"}, "tool_choice", "needs tools"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice", '"auto"'),
    ({"tools": [WEATHER], "tool_choice": ["auto"]}, "tool_choice", '"auto"'),
    ({"tools": [WEATHER], "tool_choice": {"type": "function"}}, "tool_choice", "name"),
    ({"parallel_tool_calls": "yes"}, "parallel_tool_calls", "bool"),
    ({"response_format": {"type": "xml"}}, "response_format", "json_schema"),
    ({"response_format": "json"}, "response_format", "json_object"),
    ({"response_format": {"type": "json_schema"}}, "response_format", "json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "a b"}}},
     "response_format", "json_schema.name"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": []}}},
     "response_format", "json_schema.schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "strict": True,
      "schema": {"type": "string", "maxLength": 40}}}},
     "response_format", "did not compile within 2 s"),
    ({"messages": [{"role": "user", "content": None}]}, "messages[0].content", "null only"),
    ({"messages": [{"role": "assistant", "content": None}]}, "messages[0].content", "null only"),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]},
     "messages[0].tool_calls", "only an assistant"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f"}}]}]},
     "messages[0].tool_calls[0].function.arguments", "required"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "param", "says"), BAD, ids=[f"{p}-{i}" for i, (_, p, _) in
                                                              enumerate(BAD)])  # fmt: skip
def test_bad_function_calling_requests_get_a_400_naming_the_field(plain, change, param, says):
    body = {"model": MODEL, "messages": ASK, "max_tokens": 3, **change}
    r = httpx.post(
        f"{plain.base_url}chat/completions",
        content=json.dumps(body).encode(),  # ASCII JSON: it may spell a lone surrogate
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert says in error["message"] and "Traceback" not in r.text


def test_a_schema_outside_the_subset_is_any_object_unless_strict(plain):
    loose = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}}
    tool = {"type": "function", "function": {"name": "f", "parameters": loose}}
    reply = plain.chat.completions.create(
        model=MODEL, messages=ASK, tools=[tool], tool_choice="required", seed=0
    )
    assert isinstance(args_of(reply), dict)


def test_the_server_serves_while_a_hostile_schema_compiles(plain):
    slow = {"type": "string", "pattern": "[ab]*a[ab]{40}"}  # a DFA of 2^40 states
    form = {"type": "json_schema", "json_schema": {"name": "x", "schema": slow, "strict": True}}
    errors: list = []

    def hostile() -> None:
        try:
            plain.chat.completions.create(model=MODEL, messages=ASK, response_format=form)
        except openai.BadRequestError as e:
            errors.append(e)

    worker = threading.Thread(target=hostile)
    worker.start()
    time.sleep(0.3)
    waits = []
    while worker.is_alive():
        started = time.monotonic()
        reply = plain.chat.completions.create(model=MODEL, messages=ASK, max_tokens=3)
        waits.append(time.monotonic() - started)
        assert reply.choices[0].finish_reason in ("stop", "length")
    worker.join()
    (error,) = errors
    assert "did not compile within 2 s" in error.message
    assert error.body["param"] == "response_format.json_schema.schema"
    assert waits and max(waits) < 1.0


def test_the_cli_passes_server_tools(run_dir, tmp_path, monkeypatch):
    import genlab.serve.api
    from genlab.cli import main

    got = {}
    monkeypatch.setattr(genlab.serve.api, "serve", lambda folder, **kw: got.update(kw))
    (tmp_path / "a.txt").write_text("Paris is the capital of France.")
    main(["serve", str(run_dir), "--server-tools", "calculator,search", "--documents",
          str(tmp_path)])  # fmt: skip
    assert sorted(got["server_tools"]) == ["calculator", "search"]
    main(["serve", str(run_dir)])
    assert got["server_tools"] is None
