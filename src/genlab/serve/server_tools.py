"""Tools the server runs itself (``genlab serve --server-tools calculator,search``).

The prompt lists them beside the request's own tools. When the model calls one, the client never
sees the call: the server runs the tool (``genlab.tools.base.call_tool``, which turns a bad
call, an exception or a timeout into the result text ``error: ...``, never a crash), appends
``<|tool_result|>RESULT<|/tool_result|><|assistant|>`` to the sequence and lets the model go on
in a new turn of the same request. The client receives the text the assistant writes around the
calls, as one answer (streamed as it comes), and the ``usage`` of the whole: ``completion_tokens``
counts every token after the prompt, the model's and the results the server put in.

Every turn after the first is ``tool_choice: "auto"`` (a ``required`` or named choice is
honoured by the first call), and after ``MAX_ROUNDS`` server calls the model may no longer call
any. ``max_tokens`` bounds the tokens the model writes over all turns; a sequence that would
outgrow the context ends with ``finish_reason: "length"``. A call of one of the request's own
tools ends the request as usual, with ``tool_calls``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from genlab.serve.calls import read_call
from genlab.serve.engine import Engine
from genlab.serve.errors import ApiError
from genlab.serve.sequences import Event, SequenceRequest
from genlab.serve.submission import Mailbox, Submission
from genlab.tools.base import Tool, call_tool

MAX_ROUNDS = 8  # server-side calls per choice
MAX_RESULT_CHARS = 4096  # of a result's text fed to the model

# (choice, prompt, max_tokens, round) -> the sequence that continues a choice after a result
FollowUp = Callable[[int, list[int], int, int], Awaitable[SequenceRequest]]


@dataclass
class _Choice:
    """How far one choice got: its turn's prompt and tokens, the call it is writing."""

    start: int  # the request's prompt length
    prompt: list[int]
    budget: int  # tokens the model may still write, over all turns
    tokens: list[int] = field(default_factory=list)  # this turn's
    call: str = ""
    held: list[Event] = field(default_factory=list)  # call events until the name is known
    server: bool | None = None  # whether the call is one the server runs (None: not known yet)
    rounds: int = 0


class ToolLoop(Submission):
    """A submission whose calls of the server's ``tools`` are run here (the module docstring).

    ``follow_up`` builds the sequence that continues a choice after a result; tools run on
    ``pool`` (``call_tool`` waits at most a tool's ``timeout_s``).
    """

    def __init__(
        self,
        engine: Engine,
        mailbox: Mailbox,
        sequences: list[SequenceRequest],
        tools: Mapping[str, Tool],
        follow_up: FollowUp,
        pool: ThreadPoolExecutor,
    ) -> None:
        self.tools, self.follow_up, self.pool = tools, follow_up, pool
        self.choices = [_Choice(len(s.prompt), list(s.prompt), s.max_tokens) for s in sequences]
        super().__init__(engine, mailbox, sequences)

    async def settle(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            choice = self.choices[event.index]
            if event.token is not None:
                choice.tokens.append(event.token)
            if event.call is None:
                out.append(self._counted(choice, event))
                continue
            choice.call += event.call
            if choice.server is None:
                call = read_call(choice.call, False)
                if call is None and not event.finish_reason:
                    choice.held.append(event)
                    continue
                choice.server = call is not None and call[0] in self.tools
                held, choice.held = [*choice.held, event], []
                if not choice.server:
                    out.extend(self._counted(choice, e) for e in held[:-1])
                else:  # the text before the call is the client's; the call is not
                    out.extend(replace(e, call=None, token=None) for e in held if e.text)
            if not choice.server:
                out.append(self._counted(choice, event))
            elif event.finish_reason == "tool_calls":
                end = await self._answer(event.index, choice)
                out.extend([end] if end else [])
            elif event.finish_reason:  # cut short inside the server's call
                out.append(self._counted(choice, replace(event, call=None, text="")))
        return out

    def _counted(self, choice: _Choice, event: Event) -> Event:
        """``event`` with the whole request's token counts: after the prompt, everything."""
        if not event.finish_reason:
            return event
        before = len(choice.prompt) - choice.start
        return replace(
            event,
            prompt_tokens=choice.start,
            completion_tokens=before + event.completion_tokens,
        )

    async def _answer(self, index: int, choice: _Choice) -> Event | None:
        """Run the call ``choice`` wrote and send the turn after its result, or end the choice
        (``length``) when no turn fits, or (``error``) when the engine refuses it."""
        call = read_call(choice.call, True)
        assert call is not None and call[0] in self.tools
        prompt = choice.prompt + choice.tokens
        budget = choice.budget - len(choice.tokens)
        loop = asyncio.get_running_loop()
        choice.rounds += 1
        tool = self.tools[call[0]]
        result = await loop.run_in_executor(self.pool, _run, tool, call[1])
        tok = self.engine.tokenizer
        ids = await asyncio.to_thread(tok.encode, result[:MAX_RESULT_CHARS])
        prompt += [tok.tool_result_id, *ids, tok.tool_result_end_id, tok.assistant_id]
        if budget < 1 or len(prompt) >= self.engine.context:
            return self._end(index, choice, "length", generated=len(prompt) - choice.start)
        try:
            next_turn = await self.follow_up(index, prompt, budget, choice.rounds)
            self.send([next_turn], [index])
        except ApiError as e:  # e.g. the engine is full: this choice fails, not the stream
            return self._end(index, choice, "error", error=e.message)
        choice.prompt, choice.budget, choice.tokens = prompt, budget, []
        choice.call, choice.server = "", None
        return None

    def _end(
        self, index: int, choice: _Choice, finish: str, generated: int = 0, error: str | None = None
    ) -> Event:
        """A final event for ``choice`` between two turns."""
        return Event(
            index=index,
            text="",
            token=None,
            finish_reason=finish,
            prompt_tokens=choice.start,
            completion_tokens=generated,
            error=error,
        )


def _run(tool: Tool, arguments: str) -> str:
    """The result of calling ``tool`` with ``arguments`` (a JSON object holding its one string
    parameter), or ``error: ...``."""
    try:
        value = json.loads(arguments).get(tool.parameter)
    except (ValueError, AttributeError):
        value = None
    if not isinstance(value, str):
        return f"error: {tool.name} takes {{{json.dumps(tool.parameter)}: a string}}"
    return call_tool(tool, value)
