"""The answer bodies of the OpenAI API: a whole answer as one JSON object, or its pieces as it is
generated, as server-sent events (``data: {chunk}`` lines ending with ``data: [DONE]``).

Chat completions and completions differ only in how a choice looks (a ``message`` or a
``delta`` with log-prob entries; a ``text`` with log-prob lists and the echoed prompt), so each
has its ``Choices`` and both share the rest. A sequence that fails after a stream has begun (its
status already sent) ends the stream with an error body.

A chat choice that calls a tool has ``message.tool_calls`` (one call: ``id``, ``type``,
``function.name`` and ``function.arguments``, a JSON string), its ``content`` null unless text
came before the call, and ``finish_reason: "tool_calls"``. Streamed, the call goes out as OpenAI
sends it: a ``delta.tool_calls`` chunk with ``index`` 0, the ``id``, ``type`` and name (and empty
arguments) once the name is written, then chunks of argument text as it comes, holding back one
character, which may be the call's closing brace. A call cut short by ``max_tokens`` keeps the
arguments written so far (``finish_reason: "length"``); one cut before its name is dropped.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from genlab.data.tokenizer import Tokenizer
from genlab.serve.calls import call_id, read_call
from genlab.serve.errors import failure
from genlab.serve.logprobs import LegacyLogprobs, TokenTable
from genlab.serve.sequences import Event, Scores
from genlab.serve.submission import Submission

Choice = dict[str, Any]
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class Choices(Protocol):
    """How one endpoint's choices look, whole or streamed."""

    def start(self) -> list[Choice]:
        """A stream's first chunks, before any token."""
        ...

    def whole(self, index: int, events: Sequence[Event], finish: str | None) -> Choice:
        """Choice ``index`` of a whole answer, from all its events."""
        ...

    def chunks(self, index: int, events: Sequence[Event], finish: str | None) -> list[Choice]:
        """A stream's chunks for choice ``index``'s new events and its finish, if any."""
        ...


def _text(events: Sequence[Event]) -> str:
    return "".join(e.text for e in events)


class ChatChoices:
    """Chat choices: the assistant's message, or its deltas; ``table`` when log-probs are
    asked for (the ``stop_ids`` that end a message have none: they are not part of it, nor are
    a tool call's tokens)."""

    def __init__(self, n: int, table: TokenTable | None, stop_ids: frozenset[int]) -> None:
        self.n, self.table, self.stop_ids = n, table, stop_ids
        self._calls: dict[int, _CallStream] = {}

    def start(self) -> list[Choice]:
        return [_delta(i, {"role": "assistant", "content": ""}) for i in range(self.n)]

    def _logprobs(self, events: Sequence[Event]) -> dict[str, Any] | None:
        content = [e for e in events if e.call is None]
        return self.table.chat(content, self.stop_ids) if self.table else None

    def whole(self, index: int, events: Sequence[Event], finish: str | None) -> Choice:
        text = _text(events)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if any(e.call is not None for e in events):
            call = read_call("".join(e.call or "" for e in events), finish == "tool_calls")
            if call is not None:
                name, arguments = call
                function = {"name": name, "arguments": arguments}
                message["content"] = text or None
                message["tool_calls"] = [
                    {"id": call_id(), "type": "function", "function": function}
                ]
        logprobs = self._logprobs(events)
        return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish}

    def chunks(self, index: int, events: Sequence[Event], finish: str | None) -> list[Choice]:
        text = _text(events)
        logprobs = self._logprobs(events)
        chunks = []
        if text or (logprobs and logprobs["content"]):
            chunks.append(_delta(index, {"content": text}, logprobs=logprobs))
        if any(e.call is not None for e in events):
            stream = self._calls.setdefault(index, _CallStream())
            for delta in stream.deltas("".join(e.call or "" for e in events), finish):
                chunks.append(_delta(index, {"tool_calls": [delta]}))
        if finish:
            chunks.append(_delta(index, {}, finish))
        return chunks


class _CallStream:
    """One choice's streamed call: its text so far, its id once named, arguments sent."""

    def __init__(self) -> None:
        self.text, self.id, self.sent = "", "", 0

    def deltas(self, piece: str, finish: str | None) -> list[dict[str, Any]]:
        self.text += piece
        call = read_call(self.text, finish == "tool_calls")
        if call is None:
            return []
        name, arguments = call
        deltas: list[dict[str, Any]] = []
        if not self.id:
            self.id = call_id()
            function = {"name": name, "arguments": ""}
            deltas.append({"index": 0, "id": self.id, "type": "function", "function": function})
        end = len(arguments) if finish else len(arguments) - 1
        if end > self.sent:
            function = {"arguments": arguments[self.sent : end]}
            deltas.append({"index": 0, "function": function})
            self.sent = end
        return deltas


def _delta(
    index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None
) -> Choice:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}


@dataclass(frozen=True)
class Echo:
    """A prompt given back in front of its completions: its text, its tokens and their scores
    (None for the first)."""

    text: str
    tokens: list[int]
    scores: list[Scores | None]


class TextChoices:
    """Completion choices: ``n`` per prompt (choice ``i`` continues prompt ``i // n``), with the
    prompt echoed in front when ``echoes`` are given and log-prob lists when ``logprobs`` is not
    None."""

    def __init__(
        self,
        n: int,
        tokenizer: Tokenizer,
        table: TokenTable,
        logprobs: int | None,
        echoes: list[Echo] | None,
    ) -> None:
        self.n, self.tokenizer, self.table = n, tokenizer, table
        self.logprobs, self.echoes = logprobs, echoes
        self._lists: dict[int, LegacyLogprobs] = {}

    def _legacy(self, index: int) -> LegacyLogprobs | None:
        if self.logprobs is None:
            return None
        if index not in self._lists:
            lists = self._lists[index] = LegacyLogprobs(self.table, self.tokenizer)
            if self.echoes:
                echo = self.echoes[index // self.n]
                for token, scores in zip(echo.tokens, echo.scores, strict=True):
                    lists.add(token, scores)
        return self._lists[index]

    def _choice(self, index: int, text: str, events: Sequence[Event], finish: str | None) -> Choice:
        legacy = self._legacy(index)
        if legacy is not None:
            legacy.add_events(events)
        logprobs = legacy.take() if legacy is not None else None
        return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}

    def start(self) -> list[Choice]:
        if not self.echoes:
            return []
        count = len(self.echoes) * self.n
        return [self._choice(i, self.echoes[i // self.n].text, (), None) for i in range(count)]

    def whole(self, index: int, events: Sequence[Event], finish: str | None) -> Choice:
        echoed = self.echoes[index // self.n].text if self.echoes else ""
        return self._choice(index, echoed + _text(events), events, finish)

    def chunks(self, index: int, events: Sequence[Event], finish: str | None) -> list[Choice]:
        text = _text(events)
        if not (text or finish or (self.logprobs is not None and events)):
            return []
        return [self._choice(index, text, events, finish)]


def usage(prompts: list[list[int]], finals: Sequence[Event]) -> dict[str, int]:
    prompt = sum(len(p) for p in prompts)
    completion = sum(e.completion_tokens for e in finals)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def answer(
    submission: Submission | None,
    request: Request,
    head: dict[str, Any],
    prompts: list[list[int]],
    choices: Choices,
    count: int,
) -> Response | dict[str, Any]:
    """``head`` with every sequence's choice and the usage, once all are done.

    Without a ``submission`` (nothing to generate: a prompt only scored), the ``count`` choices
    end at once with ``length``.
    """
    if submission is None:
        body = [choices.whole(i, (), "length") for i in range(count)]
        return {**head, "choices": body, "usage": usage(prompts, ())}
    events = await submission.collect(request)
    if events is None:
        return Response(status_code=499)  # the client closed the connection
    finals = [events[i][-1] for i in sorted(events)]
    body = [choices.whole(f.index, events[f.index], f.finish_reason) for f in finals]
    return {**head, "choices": body, "usage": usage(prompts, finals)}


def event_stream(
    submission: Submission | None,
    head: dict[str, Any],
    prompts: list[list[int]],
    with_usage: bool,
    choices: Choices,
    count: int,
) -> StreamingResponse:
    """The start chunks, then each sequence's chunks as it goes, then the usage if asked for,
    each chunk being ``head`` with one choice (``count`` choices end at once without a
    ``submission``)."""
    return StreamingResponse(
        _lines(submission, head, prompts, with_usage, choices, count),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


async def _lines(
    submission: Submission | None,
    head: dict[str, Any],
    prompts: list[list[int]],
    with_usage: bool,
    choices: Choices,
    count: int,
) -> AsyncIterator[str]:
    for choice in choices.start():
        yield _sse({**head, "choices": [choice]})
    finals: list[Event] = []
    if submission is None:
        for i in range(count):
            for choice in choices.chunks(i, (), "length"):
                yield _sse({**head, "choices": [choice]})
    else:
        async with aclosing(submission.batches()) as batches:
            async for events in batches:
                for index, new in _by_sequence(events).items():
                    final = new[-1] if new[-1].finish_reason else None
                    error = final and failure(final)
                    if error:
                        yield _sse(error.body())
                        return
                    if final:
                        finals.append(final)
                    finish = final.finish_reason if final else None
                    for choice in choices.chunks(index, new, finish):
                        yield _sse({**head, "choices": [choice]})
    if with_usage:
        yield _sse({**head, "choices": [], "usage": usage(prompts, finals)})
    yield "data: [DONE]\n\n"


def _by_sequence(events: list[Event]) -> dict[int, list[Event]]:
    """The events of each sequence (in order of first appearance)."""
    grouped: dict[int, list[Event]] = {}
    for event in events:
        grouped.setdefault(event.index, []).append(event)
    return grouped


def _sse(obj: Any) -> str:
    # ASCII JSON, as the error bodies: whatever a text holds, the line encodes.
    return f"data: {json.dumps(obj)}\n\n"
