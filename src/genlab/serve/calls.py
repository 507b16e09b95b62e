"""Function calling: what a chat request's tools let the model write, and its calls read back.

The prompt lists the tools (``genlab.data.chat_template``: a system turn, one function's JSON a
line), and a call is written ``<|tool_call|>{"name": "NAME", "arguments": {...}}<|/tool_call|>``.
What the model may write in one assistant turn is a grammar (``Turn``, a ``Constraint`` the
engine applies to the logits), set by ``tool_choice``:

- ``"none"``: text only; the call markers are masked.
- ``"auto"`` (the default with tools): text, and a call wherever the model opens one. From the
  opening token on, the grammar writes the call: the name is one of the tools and the arguments
  follow that function's ``parameters``. So every call parses, whatever the model's size; only
  ``max_tokens`` can cut one short (``finish_reason: "length"``).
- ``"required"`` or ``{"type": "function", "function": {"name": ...}}``: the opening token is the
  only one allowed at first, then a call of any tool, or of that one.

One call at most per assistant turn (``parallel_tool_calls`` is accepted and changes nothing): the
turn ends with the call's closing token. ``response_format`` makes the content JSON that follows
its schema (``json_object``, or a ``json_schema`` without ``schema``: any JSON object, nesting at
most two deep, which compiles in a fraction of a second where the unbounded one takes seconds);
with tools in ``auto``, the model may still call a tool instead, at the first token.

A schema becomes a regular expression (``genlab.methods.autoregressive.constrained``, which
accepts a subset of JSON Schema). One outside it is a 400 when it is ``strict``; otherwise the
arguments (or content) are any JSON object, and the server logs why. A function without
``parameters`` takes ``{}``.

Compiling a regular expression against the vocabulary can take time exponential in the schema
(a string's ``maxLength`` of 32 takes over a minute; a pattern like ``[ab]*a[ab]{40}`` needs a
DFA of 2^40 states), so
``Grammars`` compiles each new one first in a forked child given ``budget_s`` seconds and a
memory bound, and refuses it (a 400) if the child does not finish; then in the server, on a
thread of its own, never on the event loop or the engine's thread.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.data.chat_template import CALL_ARGUMENTS, CALL_CLOSE, CALL_OPEN
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.constrained import (
    Constraint,
    json_schema_regex,
    regex_constraint,
)
from genlab.serve.errors import ApiError
from genlab.serve.schemas import ChatCompletionRequest
from genlab.tools.base import Tool

log = logging.getLogger(__name__)

# Any JSON object whose values are scalars, lists of scalars or objects of scalars; at most one
# space between tokens, as the schemas' grammars write them.
_STRING = r'"(?:[^"\\\x00-\x1F\x7F-\x9F]|\\["\\/bfnrt])*"'
_SCALAR = rf"(?:{_STRING}|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null)"
_S = "[ ]?"


def _object(value: str) -> str:
    member = rf"{_STRING}{_S}:{_S}{value}"
    return rf"\{{{_S}(?:{member}(?:{_S},{_S}{member})*)?{_S}\}}"


_LIST = rf"\[{_S}(?:{_SCALAR}(?:{_S},{_S}{_SCALAR})*)?{_S}\]"
JSON_OBJECT = _object(rf"(?:{_SCALAR}|{_LIST}|{_object(_SCALAR)})")
NO_ARGUMENTS = rf"\{{{_S}\}}"

HEADER = re.compile(re.escape(CALL_OPEN) + r'"([A-Za-z0-9_-]{1,64})"' + re.escape(CALL_ARGUMENTS))
MAX_GRAMMARS = 256  # patterns remembered as compiling in time
CHILD_MEMORY = 2 << 30  # bytes a trial compilation may add to the server's address space


def literal(text: str) -> str:
    """``text`` as a regular expression (Rust ``regex`` syntax) that matches it alone."""
    return re.sub(r"([\\.+*?()|\[\]{}^$#&\-~])", r"\\\1", text)


def call_pattern(arguments: Mapping[str, str]) -> str:
    """The call of any of the functions ``arguments`` names (name -> its arguments' regex)."""
    branches = "|".join(
        literal(json.dumps(name) + CALL_ARGUMENTS) + f"(?:{pattern})"
        for name, pattern in arguments.items()
    )
    return literal(CALL_OPEN) + f"(?:{branches})" + literal(CALL_CLOSE)


def read_call(text: str, closed: bool) -> tuple[str, str] | None:
    """(name, arguments) of a call's text once its name is written, else None; ``closed``: the
    call is complete, and its last character closes the call, not the arguments."""
    header = HEADER.match(text)
    if header is None:
        return None
    arguments = text[header.end() :]
    return header.group(1), arguments[:-1] if closed else arguments


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


class Turn:
    """One assistant turn's grammar: content, then at most one call (the module docstring).

    ``free`` is what content outside a grammar may hold: every token but the call markers, the
    opener included when the turn may call, or nothing but the opener when it must. ``content``
    (ending with ``<|eot|>``) replaces it when the content must be JSON, and gives way to a call
    at its first token only. Once ``opener`` is taken, ``call`` (ending with the closing token)
    rules.
    """

    def __init__(
        self,
        free: Tensor,
        opener: int,
        content: Constraint | None = None,
        call: Constraint | None = None,
    ) -> None:
        self.free, self.opener, self.content, self.call = free, opener, content, call
        self.calling = False
        self.started = False

    def allowed(self) -> Tensor:
        if self.calling:
            assert self.call is not None
            return self.call.allowed()
        if self.content is None:
            return self.free
        allowed = self.content.allowed()
        if self.call is not None and not self.started:
            allowed = allowed.clone()
            allowed[self.opener] = True
        return allowed

    def advance(self, token: int) -> None:
        if self.calling:
            assert self.call is not None
            self.call.advance(token)
        elif token == self.opener and self.call is not None:
            self.calling = True
        elif self.content is not None:
            self.content.advance(token)
        self.started = True

    def is_complete(self) -> bool:
        if self.calling:
            assert self.call is not None
            return self.call.is_complete()
        return self.content is None or self.content.is_complete()


class Grammars:
    """Compiles grammars over one tokenizer within a time budget (the module docstring); holds
    the masks of free content (``no_calls``, ``may_call``, ``must_call``). Call ``constraint`` on
    ``executor``, its one thread: a compilation may take ``budget_s`` seconds, and trials run one
    at a time."""

    def __init__(self, tokenizer: Tokenizer, budget_s: float = 5.0) -> None:
        self.tokenizer, self.budget_s = tokenizer, budget_s
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="genlab-grammar")
        self._timely: OrderedDict[tuple[str, int], None] = OrderedDict()
        opener, closer = tokenizer.tool_call_id, tokenizer.tool_call_end_id
        self.no_calls = torch.ones(tokenizer.vocab_size, dtype=torch.bool)
        self.no_calls[[opener, closer]] = False
        self.may_call = self.no_calls.clone()
        self.may_call[opener] = True
        self.must_call = torch.zeros(tokenizer.vocab_size, dtype=torch.bool)
        self.must_call[opener] = True

    def regex(self, schema: Mapping[str, Any]) -> str:
        """``json_schema_regex(schema)`` (its pattern checks compile too), within the budget."""
        self._timed(("schema", json.dumps(schema)), lambda: json_schema_regex(schema))
        return json_schema_regex(schema)

    def constraint(self, pattern: str, end_id: int) -> Constraint:
        """A fresh constraint for ``pattern``, compiled within the budget."""

        def build() -> Constraint:
            return regex_constraint(self.tokenizer, pattern, end_ids=[end_id])

        self._timed(("regex", pattern, str(end_id)), build)
        return build()

    def _timed(self, key: tuple[str, ...], work: Callable[[], object]) -> None:
        """Run ``work()`` in a forked child first, unless ``key``'s did before;
        ``GenlabError`` if it fails or takes longer than the budget (without ``fork``, e.g. on
        Windows, there is no trial)."""
        if key in self._timely:
            self._timely.move_to_end(key)
            return
        if "fork" not in multiprocessing.get_all_start_methods():
            return
        context = multiprocessing.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_trial, args=(send, work), daemon=True)
        child.start()
        send.close()
        child.join(self.budget_s)
        if child.exitcode is None:
            child.kill()
            child.join()
            raise GenlabError(
                f"its grammar did not compile within {self.budget_s:g} s; simplify the schema "
                "(long maxLength or maxItems and patterns cost the most)"
            )
        try:
            message = receive.recv() if receive.poll() else None
        except EOFError:
            message = None
        receive.close()
        if message is None:  # it died before it could say: out of memory
            raise GenlabError("its grammar did not compile (out of memory)")
        if message:
            raise GenlabError(message)
        self._timely[key] = None
        if len(self._timely) > MAX_GRAMMARS:
            self._timely.popitem(last=False)


def _trial(send: Any, work: Callable[[], object]) -> None:
    """``work()`` in a forked child with a bounded address space: sends ``""`` or the
    error, then leaves at once (a child forked from a worker thread fails Python's own
    shutdown, so its exit code says nothing)."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (size + CHILD_MEMORY, size + CHILD_MEMORY))
    except (ImportError, OSError, ValueError):  # no /proc or no limits here: time bounds it
        pass
    try:
        work()
        send.send("")
    except Exception as e:  # whatever it is, the parent says it in a 400
        send.send(str(e) or f"its grammar did not compile ({type(e).__name__})")
    os._exit(0)


@dataclass(frozen=True)
class Plan:
    """What a chat request's tools, ``tool_choice`` and ``response_format`` mean for its turns.

    ``listed``: the tools the prompt lists (the request's, then the server's); ``arguments``:
    each function's arguments regex; ``choice``: ``none``, ``auto``, ``required`` or a
    function's name; ``content``: the content's regex (None: free text); ``server``: the
    server's own tools among them.
    """

    listed: list[dict[str, Any]] = field(default_factory=list)
    arguments: dict[str, str] = field(default_factory=dict)
    choice: str = "none"
    content: str | None = None
    server: Mapping[str, Tool] = field(default_factory=dict)

    @property
    def constrained(self) -> bool:
        """Whether its turns have a grammar (without tools or a format they decode freely)."""
        return bool(self.listed) or self.content is not None

    def fields(self, grammars: Grammars, choice: str | None = None) -> dict[str, Any]:
        """A turn's ``SequenceRequest`` fields (grammar, call token, stop token) under
        ``choice`` (default: the request's); blocking, so on ``grammars.executor``."""
        if not self.constrained:
            return {}
        choice = choice or self.choice
        calls = {} if choice == "none" else self.arguments
        if choice not in ("none", "auto", "required"):
            calls = {choice: self.arguments[choice]}
        tok = grammars.tokenizer
        try:
            content = grammars.constraint(self.content, tok.eot_id) if self.content else None
        except GenlabError as e:
            raise ApiError(400, f"response_format: {e}", "response_format") from e
        try:
            call = grammars.constraint(call_pattern(calls), tok.tool_call_end_id) if calls else None
        except GenlabError as e:
            raise ApiError(400, f"tools: {e}", "tools") from e
        free = grammars.may_call if calls else grammars.no_calls
        if choice not in ("none", "auto"):
            free = grammars.must_call
        return {
            "constraint": Turn(free, tok.tool_call_id, content, call),
            "call_id": tok.tool_call_id if calls else None,
            "stop_ids": (tok.tool_call_end_id,) if calls else (),
        }


def plan(body: ChatCompletionRequest, server: Mapping[str, Tool], grammars: Grammars) -> Plan:
    """The request's plan, or a 400 naming the field that cannot be honoured; blocking when the
    request has schemas (``grammars.regex``), so then on ``grammars.executor``."""
    tools = body.tools or []
    listed = [tool.listed() for tool in tools]
    arguments = {}
    for i, tool in enumerate(tools):
        function = tool.function
        where = f"tools[{i}].function.parameters"
        arguments[function.name] = _regex(
            grammars, function.parameters, function.strict, where, False
        )
    for name, tool in server.items():
        if name in arguments:
            raise ApiError(
                400, f"tools: '{name}' is the name of a tool this server runs; rename it", "tools"
            )
        schema = tool.schema()
        listed.append(schema)
        arguments[name] = _regex(grammars, schema["function"]["parameters"], True, name, False)
    choice = body.tool_choice or ("auto" if arguments else "none")
    if isinstance(choice, dict):
        choice = choice["function"]["name"]
        if choice not in arguments:
            raise ApiError(
                400, f"tool_choice: no tool named '{choice[:64]}' is given", "tool_choice"
            )
    elif choice == "required" and not arguments:
        raise ApiError(400, "tool_choice: 'required' needs tools", "tool_choice")
    content = None
    form = body.response_format
    if form is not None and form["type"] == "json_object":
        content = JSON_OBJECT
    elif form is not None and form["type"] == "json_schema":
        spec = form["json_schema"]
        where = "response_format.json_schema.schema"
        content = _regex(grammars, spec.get("schema"), spec.get("strict"), where, True)
    return Plan(listed, arguments, choice, content, server)


def _regex(
    grammars: Grammars,
    schema: Mapping[str, Any] | None,
    strict: bool | None,
    where: str,
    any_json: bool,
) -> str:
    """The regex of what ``schema`` allows (None: any JSON object if ``any_json``, else
    ``{}``); a schema outside the grammar's subset is a 400 when ``strict``, else any object."""
    if schema is None:
        return JSON_OBJECT if any_json else NO_ARGUMENTS
    try:
        return grammars.regex(schema)
    except GenlabError as e:
        if strict:
            param = where if "." in where else "tools"
            raise ApiError(400, f"{where}: {e}", param) from e
        log.info("%s: %s; any JSON object is allowed instead", where, e)
        return JSON_OBJECT
