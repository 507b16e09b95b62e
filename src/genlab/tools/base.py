"""A tool is a named function from one string to one string, called so that it cannot hurt.

Toolformer (Schick et al., 2023) writes an API call into text as ``Name(args)`` and the call's
result after it; the model learns where a result helps it predict what follows. Whatever the
model writes between the parentheses reaches the tool, so :func:`call_tool` treats every argument
as hostile: a bad call, an exception or a call that runs too long all become the result text
``error: <reason>``, never a crash and never a wait longer than the tool's ``timeout_s``.

Calls run on daemon worker threads, reused from call to call (a hand-off costs microseconds; a
new thread per call costs ten times more). When a call overruns, the caller stops waiting and
abandons its worker, which ends once the call returns: Python cannot stop a thread, so a hung
call keeps running in the background. The timeout is a safety net, not the bound: the tools here
bound their own work (input length, nesting, number sizes) so that no argument keeps the
interpreter busy, and a C-level computation that holds the lock (a huge power, say) could not
be interrupted anyway.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from genlab.core.errors import GenlabError

MAX_REASON = 200  # characters of an error's reason that reach the result text


class ToolError(Exception):
    """A bad call (unparsable argument, unknown name, division by zero): its message becomes the
    result text ``error: <message>``."""


@dataclass(frozen=True)
class Tool:
    """One tool: its name in calls, what it does (one sentence), its one string argument and
    the function that answers it (which raises :class:`ToolError` on a bad argument).

    ``parameter_description`` says what the argument looks like, with an example, for the
    OpenAI schema; without one the schema names the parameter only.
    """

    name: str
    description: str
    parameter: str
    run: Callable[[str], str]
    timeout_s: float = 1.0
    parameter_description: str = ""

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise GenlabError(
                f"tool {self.name!r} needs a positive timeout_s, got {self.timeout_s}"
            )

    def schema(self) -> dict[str, Any]:
        """The tool in OpenAI's function-calling format (``tools=[...]`` of chat completions)."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": {
                    "type": "object",
                    "properties": {
                        self.parameter: {
                            "type": "string",
                            "description": self.parameter_description or f"The {self.parameter}.",
                        }
                    },
                    "required": [self.parameter],
                    "additionalProperties": False,
                },
            },
        }


def _error(reason: str) -> str:
    reason = " ".join(reason.split())
    if len(reason) > MAX_REASON:
        reason = reason[: MAX_REASON - 3] + "..."
    return f"error: {reason}"


def _answer(tool: Tool, args: str) -> str:
    """The tool's result text, or ``error: ...`` for anything it raises (in the worker thread,
    so even ``SystemExit`` is only a failed call)."""
    try:
        result = tool.run(args)
    except ToolError as e:
        return _error(str(e) or "bad call")
    except BaseException as e:  # a bug in the tool must not end the caller's run
        return _error(f"{tool.name} failed: {type(e).__name__}: {e}")
    if not isinstance(result, str):
        return _error(f"{tool.name} returned {type(result).__name__}, not text")
    return result


class _Worker:
    """A daemon thread that answers one call at a time; told to stop with ``None``."""

    def __init__(self) -> None:
        self.inbox: queue.SimpleQueue[tuple[Tool, str] | None] = queue.SimpleQueue()
        self.outbox: queue.SimpleQueue[str] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="genlab-tool", daemon=True).start()

    def _serve(self) -> None:
        while (job := self.inbox.get()) is not None:
            self.outbox.put(_answer(*job))


_idle: list[_Worker] = []  # workers whose last call finished in time
os.register_at_fork(after_in_child=_idle.clear)  # a forked child has none of their threads


def call_tool(tool: Tool, args: str) -> str:
    """Run ``tool`` on ``args``: its result text, or ``error: <reason>`` when the call is bad,
    the tool raises, or it has not answered after ``tool.timeout_s`` seconds. Never raises."""
    try:
        worker = _idle.pop()
    except IndexError:
        worker = _Worker()
    worker.inbox.put((tool, args))
    try:
        result = worker.outbox.get(timeout=tool.timeout_s)
    except queue.Empty:
        worker.inbox.put(None)  # abandoned: it stops once the overrunning call returns
        return _error(f"{tool.name} took longer than {tool.timeout_s:g} s")
    _idle.append(worker)
    return result


def format_call(name: str, args: str) -> str:
    """A call as Toolformer writes it: ``calculator(345 + 678)``."""
    return f"{name}({args})"


def parse_call(text: str) -> tuple[str, str] | None:
    """``(name, args)`` of ``NAME(ARGS)`` (surrounding spaces ignored; ``ARGS`` may hold
    parentheses), or ``None`` when ``text`` is not a call of an identifier."""
    text = text.strip()
    open_at = text.find("(")
    if open_at < 0 or not text.endswith(")"):
        return None
    name = text[:open_at]
    if not name.isidentifier():
        return None
    return name, text[open_at + 1 : -1]
