"""The answer bodies of the OpenAI API: a whole answer as one JSON object, or its pieces as it is
generated, as server-sent events (``data: {chunk}`` lines ending with ``data: [DONE]``).

Chat completions and completions differ only in how a choice looks (a ``message``, a ``delta`` or
a ``text``), so each gives its choice builders and both share the rest. A sequence that fails
after a stream has begun (its status already sent) ends the stream with an error body.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from genlab.serve.errors import failure
from genlab.serve.sequences import Event
from genlab.serve.submission import Submission

Choice = dict[str, Any]
# (index, new text, finish reason) -> the choice, or the stream's chunks, that say it
ChoiceOf = Callable[[int, str, str | None], Choice]
ChunksOf = Callable[[int, str, str | None], list[Choice]]
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def chat_choice(index: int, text: str, finish: str | None) -> Choice:
    """A whole chat answer's choice: the assistant's message."""
    message = {"role": "assistant", "content": text}
    return {"index": index, "message": message, "logprobs": None, "finish_reason": finish}


def chat_start(n: int) -> list[Choice]:
    """A chat stream's first chunks: each choice's role."""
    return [_delta(i, {"role": "assistant", "content": ""}) for i in range(n)]


def chat_chunks(index: int, text: str, finish: str | None) -> list[Choice]:
    """A chat stream's chunks for a sequence's new text (a delta) and its finish (an empty
    delta)."""
    chunks = [_delta(index, {"content": text})] if text else []
    if finish:
        chunks.append(_delta(index, {}, finish))
    return chunks


def _delta(index: int, delta: dict[str, str], finish: str | None = None) -> Choice:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}


def text_choice(index: int, text: str, finish: str | None) -> Choice:
    """A completion's choice, whole or streamed: the text."""
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish}


def text_chunks(index: int, text: str, finish: str | None) -> list[Choice]:
    """A completion stream's chunk for a sequence's new text and finish, if either."""
    return [text_choice(index, text, finish)] if text or finish else []


def usage(prompts: list[list[int]], finals: dict[int, Event]) -> dict[str, int]:
    prompt = sum(len(p) for p in prompts)
    completion = sum(e.completion_tokens for e in finals.values())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def answer(
    submission: Submission,
    request: Request,
    head: dict[str, Any],
    prompts: list[list[int]],
    choice: ChoiceOf,
) -> Response | dict[str, Any]:
    """``head`` with every sequence's ``choice`` and the usage, once all are done."""
    result = await submission.collect(request)
    if result is None:
        return Response(status_code=499)  # the client closed the connection
    texts, finals = result
    choices = [choice(i, texts[i], finals[i].finish_reason) for i in sorted(finals)]
    return {**head, "choices": choices, "usage": usage(prompts, finals)}


def event_stream(
    submission: Submission,
    head: dict[str, Any],
    prompts: list[list[int]],
    with_usage: bool,
    chunks: ChunksOf,
    start: Sequence[Choice] = (),
) -> StreamingResponse:
    """The ``start`` chunks, then each sequence's ``chunks`` as it goes, then the usage if
    asked for, each chunk being ``head`` with one choice."""
    return StreamingResponse(
        _lines(submission, head, prompts, with_usage, chunks, start),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
    )


async def _lines(
    submission: Submission,
    head: dict[str, Any],
    prompts: list[list[int]],
    with_usage: bool,
    chunks: ChunksOf,
    start: Sequence[Choice],
) -> AsyncIterator[str]:
    for choice in start:
        yield _sse({**head, "choices": [choice]})
    finals: dict[int, Event] = {}
    async with aclosing(submission.batches()) as batches:
        async for events in batches:
            for index, text, final in _merge(events):
                error = final and failure(final)
                if error:
                    yield _sse(error.body())
                    return
                if final:
                    finals[index] = final
                for choice in chunks(index, text, final.finish_reason if final else None):
                    yield _sse({**head, "choices": [choice]})
    if with_usage:
        yield _sse({**head, "choices": [], "usage": usage(prompts, finals)})
    yield "data: [DONE]\n\n"


def _merge(events: list[Event]) -> list[tuple[int, str, Event | None]]:
    """Per sequence (in order of first appearance): its new text joined, and its final event."""
    merged: dict[int, tuple[list[str], list[Event]]] = {}
    for event in events:
        texts, finals = merged.setdefault(event.index, ([], []))
        texts.append(event.text)
        if event.finish_reason:
            finals.append(event)
    return [(i, "".join(t), f[0] if f else None) for i, (t, f) in merged.items()]


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"
