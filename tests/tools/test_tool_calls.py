"""Calling tools: the call syntax, the OpenAI schema, failures and hangs as ``error:`` results
within the timeout, and the toolbox that builds the tools by name."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from genlab.core.errors import GenlabError
from genlab.data.tinyworld.world import World
from genlab.tools import (
    TOOL_NAMES,
    Tool,
    ToolError,
    call_tool,
    format_call,
    parse_call,
    run_call,
    toolbox,
)
from genlab.tools.base import MAX_REASON


def _tool(run, timeout_s: float = 1.0) -> Tool:
    return Tool("probe", "A tool for tests.", "text", run, timeout_s)


@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True), st.text())
def test_parse_call_inverts_format_call(name: str, args: str) -> None:
    assert parse_call(format_call(name, args)) == (name, args)


def test_call_syntax() -> None:
    assert format_call("calculator", "345 + 678") == "calculator(345 + 678)"
    assert parse_call("  calculator((1 + 2) * 3) ") == ("calculator", "(1 + 2) * 3")
    assert parse_call("search()") == ("search", "")
    for text in ["calculator", "calculator(1", "(1)", "1abc(2)", "a b(1)", "a.b(1)", "", ")("]:
        assert parse_call(text) is None, text


def test_schema_is_openai_function_calling() -> None:
    tool = Tool("add", "Add numbers.", "terms", str, parameter_description="Numbers, e.g. 1 2.")
    assert tool.schema() == {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add numbers.",
            "parameters": {
                "type": "object",
                "properties": {"terms": {"type": "string", "description": "Numbers, e.g. 1 2."}},
                "required": ["terms"],
                "additionalProperties": False,
            },
        },
    }
    bare = _tool(str).schema()["function"]["parameters"]["properties"]["text"]
    assert bare == {"type": "string", "description": "The text."}
    for tool in toolbox(["calculator", "calendar"]).values():
        schema = tool.schema()
        assert json.loads(json.dumps(schema)) == schema
        assert schema["function"]["parameters"]["required"] == [tool.parameter]


def test_failures_become_error_text() -> None:
    def bad_call(args: str) -> str:
        raise ToolError("no such thing")

    def crash(args: str) -> str:
        raise RuntimeError("boom\non two lines")

    def exits(args: str) -> str:
        raise SystemExit(3)

    assert call_tool(_tool(str.upper), "ok") == "OK"
    assert call_tool(_tool(bad_call), "x") == "error: no such thing"
    assert call_tool(_tool(crash), "x") == "error: probe failed: RuntimeError: boom on two lines"
    assert call_tool(_tool(exits), "x") == "error: probe failed: SystemExit: 3"
    assert call_tool(_tool(len), "four") == "error: probe returned int, not text"
    long = call_tool(_tool(lambda a: (_ for _ in ()).throw(ToolError("x" * 1000))), "")
    assert long.startswith("error: xxx") and len(long) == len("error: ") + MAX_REASON


def test_a_hanging_tool_times_out() -> None:
    release = threading.Event()
    hang = _tool(lambda args: "late" if release.wait(30) else "never", timeout_s=0.2)
    start = time.perf_counter()
    try:
        assert call_tool(hang, "x") == "error: probe took longer than 0.2 s"
        assert time.perf_counter() - start < 0.2 + 0.5
    finally:
        release.set()  # let the abandoned thread end


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork of a threaded process
def test_a_forked_child_calls_tools() -> None:
    """A forked child has none of its parent's idle workers' threads: it starts its own."""
    tool = toolbox(["calculator"])["calculator"]
    assert call_tool(tool, "1 + 1") == "2"  # leaves an idle worker in this process
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, call_tool(tool, "2 + 2").encode())
        os._exit(0)
    os.close(write)
    assert os.read(read, 100) == b"4"
    os.close(read)
    os.waitpid(pid, 0)


def test_timeout_must_be_positive() -> None:
    with pytest.raises(GenlabError, match="tool 'probe' needs a positive timeout_s, got 0"):
        _tool(str, timeout_s=0)


def test_run_call() -> None:
    tools = toolbox(["calculator", "calendar"])
    assert run_call(tools, "calculator(345 + 678)") == "1023"
    assert run_call(tools, "calendar(weekday of 5 March 2024)") == "Tuesday"
    assert run_call(tools, "calculator(1 / 0)") == "error: division by zero"
    assert run_call(tools, "weather(Oslo)") == "error: unknown tool weather"
    assert run_call(tools, "what is 2 + 2") == "error: not a call"


def test_toolbox_builds_the_named_tools(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("The capital of Norland is Vorilia.")
    world = World(seed=0, size=16)
    tools = toolbox(TOOL_NAMES, world=world, documents=tmp_path / "docs", index_dir=tmp_path / "ix")
    assert list(tools) == list(TOOL_NAMES)
    assert all(tools[n].name == n for n in TOOL_NAMES)
    country = world.countries[0]
    assert run_call(tools, f"lookup(capital of {country})") == world.value(country, "capital")
    assert run_call(tools, "search(capital of Norland)") == "[1] The capital of Norland is Vorilia."
    # the index is built once: the saved one answers without the documents
    again = toolbox(["search"], index_dir=tmp_path / "ix")
    assert run_call(again, "search(Vorilia)") == "[1] The capital of Norland is Vorilia."
    assert list(toolbox(["calculator", "calculator"])) == ["calculator"]


@pytest.mark.parametrize(
    ("names", "options", "message"),
    [
        (
            ["weather"],
            {},
            "unknown tool 'weather'; choose from calculator, calendar, lookup, search",
        ),
        (["lookup"], {}, "the lookup tool needs world="),
        (["search"], {}, "the search tool needs documents="),
    ],
)
def test_toolbox_refusals(names: list[str], options: dict, message: str) -> None:
    with pytest.raises(GenlabError, match=message):
        toolbox(names, **options)
