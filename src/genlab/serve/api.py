"""An OpenAI-compatible HTTP API and a chat page in front of the continuous batching engine.

The routes, JSON bodies, server-sent-event streams (``data: {chunk}`` lines ending with
``data: [DONE]``) and error bodies (``{"error": {"message", "type", "param", "code"}}``) are
those of the OpenAI API, so its official clients work unchanged with ``base_url`` pointed here:

- ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions``
- ``GET /health`` (open, for load balancers and the page) and ``GET /`` (the chat page)

Handlers run on the asyncio loop and never touch the model: they validate, tokenize and
``submit`` to the ``Engine``, whose thread calls back with events that are handed over to the
loop (``call_soon_threadsafe``) into one queue per request. A client that disconnects has its
sequences cancelled, so the engine stops decoding them at its next step. Every refusal is an
OpenAI error body: 400 for bad input (naming the field), 401 for a missing or wrong API key,
413 for an oversized body, 429 when the engine is full.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from genlab.core.device import pick_device
from genlab.core.errors import GenlabError

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
except ModuleNotFoundError as e:  # an optional extra
    raise GenlabError(
        f"serving needs FastAPI and uvicorn ({e.name} is missing): pip install 'genlab[serve]'"
    ) from e

from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.serve.engine import Engine, EngineFull, Event, SequenceRequest
from genlab.serve.schemas import FIELD_NAMES, ChatCompletionRequest, CompletionRequest

log = logging.getLogger(__name__)

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]
DISCONNECT_POLL_S = 0.2


class ApiError(Exception):
    """An error answered with an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        kind: str = "invalid_request_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.kind = kind
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def _param(loc: Sequence[Any]) -> str | None:
    """The field a pydantic error location points at, as ``messages[0].content``.

    Location parts that are not field names (union member tags such as ``list[str]``) are
    skipped.
    """
    param = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            param += f"[{part}]"
        elif part in FIELD_NAMES:
            param += f".{part}" if param else part
    return param or None


def validation_error(exc: RequestValidationError) -> ApiError:
    """The first problem in a request body, as a 400 naming its field."""
    errors = exc.errors()
    first = errors[0] if errors else {"type": "", "loc": (), "msg": "invalid request"}
    if first["type"] == "json_invalid":
        detail = first.get("ctx", {}).get("error", "")
        return ApiError(400, f"the request body is not valid JSON ({detail})".replace(" ()", ""))
    param = _param(first["loc"])
    if param is None:
        return ApiError(400, "the request body must be a JSON object with the request's fields")
    message = first["msg"].removeprefix("Value error, ")
    return ApiError(400, f"{param}: {message}", param)


class _Gate:
    """ASGI middleware in front of the routes: the API key (401) for ``/v1`` paths, then a
    bound on the body size (413), checked before anything is parsed.

    (A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` would hide client disconnects
    from the handlers.)
    """

    def __init__(self, app: ASGIApp, api_key: str | None, limit: int) -> None:
        self.app, self.api_key, self.limit = app, api_key, limit

    def _authorized(self, scope: dict) -> bool:
        if not self.api_key or not scope["path"].startswith("/v1"):
            return True
        headers = dict(scope["headers"])
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.api_key.encode()
        )

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._authorized(scope):
            error = ApiError(
                401,
                "missing or wrong API key: send 'Authorization: Bearer KEY'",
                code="invalid_api_key",
            )
            await error.response()(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > self.limit:
                error = ApiError(413, f"the request body is over {self.limit} bytes")
                await error.response()(scope, receive, send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class _Mailbox:
    """Hands events from the engine's thread to the event loop: they collect during a decoding
    step (one per sequence) and go over together, waking the loop once per step."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[tuple[asyncio.Queue[Event], Event]] = []
        self._scheduled = False

    def post(self, queue: asyncio.Queue[Event], event: Event) -> None:
        with self._lock:
            self._pending.append((queue, event))

    def flush(self) -> None:
        """Deliver what was posted (called by the engine after each step)."""
        with self._lock:
            if not self._pending or self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            with self._lock:
                self._pending.clear()
                self._scheduled = False

    def _deliver(self) -> None:
        with self._lock:
            pending, self._pending, self._scheduled = self._pending, [], False
        for queue, event in pending:
            queue.put_nowait(event)


class _Submission:
    """One request's sequences in the engine, and the queue their events arrive on."""

    def __init__(self, engine: Engine, mailbox: _Mailbox, sequences: list[SequenceRequest]) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.remaining = len(sequences)
        queue = self.queue
        try:
            self.ticket = engine.submit(sequences, lambda event: mailbox.post(queue, event))
        except EngineFull as e:
            raise ApiError(429, str(e), kind="rate_limit_error", code="server_busy") from e
        except GenlabError as e:
            raise ApiError(400, str(e)) from e

    async def batches(self, request: Request | None = None) -> AsyncIterator[list[Event]]:
        """Events as they come; all that queued up at once come together.

        With ``request``, its connection is watched: when the client goes, the sequences are
        cancelled and the iteration ends early. (A streaming response is watched by Starlette,
        which cancels this iteration instead.)
        """
        loop = asyncio.get_running_loop()
        check_at = loop.time() + DISCONNECT_POLL_S
        try:
            while self.remaining:
                if request is None:
                    event = await self.queue.get()
                else:
                    try:
                        wait = max(0.0, check_at - loop.time())
                        event = await asyncio.wait_for(self.queue.get(), wait)
                    except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11
                        if await request.is_disconnected():
                            return
                        check_at = loop.time() + DISCONNECT_POLL_S
                        continue
                events = [event]
                while not self.queue.empty():
                    events.append(self.queue.get_nowait())
                self.remaining -= sum(1 for e in events if e.finish_reason)
                yield events
        finally:
            if self.remaining:
                self.ticket.cancel()


def _failure(event: Event) -> ApiError | None:
    if event.finish_reason == "error":
        return ApiError(500, f"generation failed: {event.error}", kind="server_error")
    if event.finish_reason == "cancelled":
        return ApiError(503, "the server is shutting down", kind="server_error")
    return None


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def create_app(
    engine: Engine,
    *,
    model_id: str,
    api_key: str | None = None,
    max_tokens_cap: int | None = None,
    max_body_bytes: int = 1 << 20,
) -> FastAPI:
    """The FastAPI application serving ``engine``'s model under the name ``model_id``.

    The engine's thread starts and stops with the application. ``max_tokens_cap`` bounds the
    ``max_tokens`` a request may ask for (default: the model's context).
    """
    tokenizer = engine.tokenizer
    cap = max_tokens_cap or engine.context
    if cap < 1:
        raise GenlabError(f"max_tokens_cap must be >= 1, got {cap}")
    created = int(time.time())
    page = resources.files("genlab.serve").joinpath("static/index.html").read_text("utf-8")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.mailbox = _Mailbox(asyncio.get_running_loop())
        engine.start(after_step=app.state.mailbox.flush)
        try:
            yield
        finally:
            engine.stop()

    app = FastAPI(title="genlab serve", version="1", lifespan=lifespan)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc).response()

    app.add_middleware(_Gate, api_key=api_key, limit=max_body_bytes)

    # ---- requests into engine sequences ------------------------------------------------------

    def max_tokens(asked: int | None, param: str, prompt_len: int) -> int:
        if asked is not None and asked > cap:
            raise ApiError(400, f"{param} is {asked} but this server allows at most {cap}", param)
        return asked if asked is not None else max(1, min(cap, engine.context - prompt_len))

    def check_length(ids: list[int], param: str) -> None:
        if len(ids) >= engine.context:
            raise ApiError(
                400,
                f"{param}: the input is {len(ids)} tokens but the model's context is "
                f"{engine.context}; shorten it",
                param,
                code="context_length_exceeded",
            )

    def sequences(
        prompts: list[list[int]], body: Any, limit: int | None, param: str
    ) -> list[SequenceRequest]:
        n = body.n or 1
        if len(prompts) * n > engine.max_batch:
            raise ApiError(
                400,
                f"n: {len(prompts) * n} sequences asked for, but at most {engine.max_batch} "
                "decode together here",
                "n",
            )
        out = []
        for ids in prompts:
            budget = max_tokens(limit, param, len(ids))
            for j in range(n):
                out.append(
                    SequenceRequest(
                        prompt=ids,
                        max_tokens=budget,
                        temperature=1.0 if body.temperature is None else body.temperature,
                        top_p=body.top_p if body.top_p is not None and body.top_p < 1 else None,
                        seed=None if body.seed is None else body.seed + j,
                        stop=body.stops(),
                    )
                )
        return out

    def usage(prompts: list[list[int]], finals: dict[int, Event]) -> dict[str, int]:
        prompt = sum(len(p) for p in prompts)
        completion = sum(e.completion_tokens for e in finals.values())
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    async def collect(
        submission: _Submission, request: Request
    ) -> tuple[dict[int, str], dict[int, Event]] | None:
        """All text and final events, or None when the client went away."""
        texts: dict[int, list[str]] = {}
        finals: dict[int, Event] = {}
        async with aclosing(submission.batches(request)) as batches:
            async for events in batches:
                for event in events:
                    texts.setdefault(event.index, []).append(event.text)
                    if event.finish_reason:
                        error = _failure(event)
                        if error is not None:
                            raise error
                        finals[event.index] = event
        if submission.remaining:
            return None
        return {i: "".join(t) for i, t in texts.items()}, finals

    # ---- routes ------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": model_id,
            "context": engine.context,
            "max_tokens_cap": cap,
            "max_batch": engine.max_batch,
            "api_key_required": bool(api_key),
            **engine.stats(),
        }

    def model_card() -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": created, "owned_by": "genlab"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{name}")
    async def model(name: str) -> dict[str, Any]:
        if name != model_id:
            raise ApiError(404, f"model '{name}' is not served here; use '{model_id}'", "model")
        return model_card()

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(
        body: ChatCompletionRequest, request: Request
    ) -> Response | dict[str, Any]:
        messages = [m.to_template() for m in body.messages]
        try:
            ids = tokenizer.render_prompt(messages)
        except GenlabError as e:
            raise ApiError(400, f"messages: {e}", "messages") from e
        check_length(ids, "messages")
        limit, param = body.max_completion_tokens, "max_completion_tokens"
        if limit is None:
            limit, param = body.max_tokens, "max_tokens"
        submission = _Submission(
            engine, request.app.state.mailbox, sequences([ids], body, limit, param)
        )
        rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": rid, "created": now, "model": model_id}
        if body.stream:
            with_usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(
                chat_stream(submission, head, [ids], with_usage, body.n or 1),
                media_type="text/event-stream",
                headers=SSE_HEADERS,
            )
        result = await collect(submission, request)
        if result is None:
            return Response(status_code=499)  # the client closed the connection
        texts, finals = result
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": texts[i]},
                "logprobs": None,
                "finish_reason": finals[i].finish_reason,
            }
            for i in sorted(finals)
        ]
        return {
            **head,
            "object": "chat.completion",
            "choices": choices,
            "usage": usage([ids], finals),
        }

    async def chat_stream(
        submission: _Submission,
        head: dict[str, Any],
        prompts: list[list[int]],
        with_usage: bool,
        n: int,
    ) -> AsyncIterator[str]:
        head = {**head, "object": "chat.completion.chunk"}

        def chunk(index: int, delta: dict[str, str], finish: str | None = None) -> str:
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            return _sse({**head, "choices": [choice]})

        for i in range(n):
            yield chunk(i, {"role": "assistant", "content": ""})
        finals: dict[int, Event] = {}
        async with aclosing(submission.batches()) as batches:
            async for events in batches:
                for index, text, final in _merge(events):
                    error = final and _failure(final)
                    if error:
                        yield _sse(error.body())
                        return
                    if text:
                        yield chunk(index, {"content": text})
                    if final:
                        finals[index] = final
                        yield chunk(index, {}, final.finish_reason)
        if with_usage:
            yield _sse({**head, "choices": [], "usage": usage(prompts, finals)})
        yield "data: [DONE]\n\n"

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Response | dict[str, Any]:
        prompts = [[tokenizer.bos_id, *ids] for ids in tokenizer.encode_batch(body.prompts())]
        for ids in prompts:
            check_length(ids, "prompt")
        submission = _Submission(
            engine,
            request.app.state.mailbox,
            sequences(prompts, body, body.max_tokens, "max_tokens"),
        )
        rid, now = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": rid, "object": "text_completion", "created": now, "model": model_id}
        if body.stream:
            with_usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(
                completion_stream(submission, head, prompts, with_usage),
                media_type="text/event-stream",
                headers=SSE_HEADERS,
            )
        result = await collect(submission, request)
        if result is None:
            return Response(status_code=499)
        texts, finals = result
        choices = [
            {
                "index": i,
                "text": texts[i],
                "logprobs": None,
                "finish_reason": finals[i].finish_reason,
            }
            for i in sorted(finals)
        ]
        return {**head, "choices": choices, "usage": usage(prompts, finals)}

    async def completion_stream(
        submission: _Submission,
        head: dict[str, Any],
        prompts: list[list[int]],
        with_usage: bool,
    ) -> AsyncIterator[str]:
        def chunk(index: int, text: str, finish: str | None = None) -> str:
            choice = {"index": index, "text": text, "logprobs": None, "finish_reason": finish}
            return _sse({**head, "choices": [choice]})

        finals: dict[int, Event] = {}
        async with aclosing(submission.batches()) as batches:
            async for events in batches:
                for index, text, final in _merge(events):
                    error = final and _failure(final)
                    if error:
                        yield _sse(error.body())
                        return
                    if text or final:
                        yield chunk(index, text, final.finish_reason if final else None)
                    if final:
                        finals[index] = final
        if with_usage:
            yield _sse({**head, "choices": [], "usage": usage(prompts, finals)})
        yield "data: [DONE]\n\n"

    return app


def _merge(events: list[Event]) -> list[tuple[int, str, Event | None]]:
    """Per sequence (in order of first appearance): its new text joined, and its final event."""
    merged: dict[int, tuple[list[str], list[Event]]] = {}
    for event in events:
        texts, finals = merged.setdefault(event.index, ([], []))
        texts.append(event.text)
        if event.finish_reason:
            finals.append(event)
    return [(i, "".join(t), f[0] if f else None) for i, (t, f) in merged.items()]


def serve(
    folder: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "auto",
    max_batch: int = 16,
    max_queue: int = 64,
    max_tokens_cap: int | None = None,
    api_key: str | None = None,
    seed: int = 0,
    log_level: str = "info",
) -> None:
    """Load the GPT checkpoint in ``folder`` and serve it until interrupted."""
    try:
        import uvicorn
    except ModuleNotFoundError as e:
        raise GenlabError(
            f"serving needs FastAPI and uvicorn ({e.name} is missing): pip install 'genlab[serve]'"
        ) from e
    folder = Path(folder)
    model, tokenizer = load_gpt(folder, device=pick_device(device))
    engine = Engine(model, tokenizer, max_batch=max_batch, max_queue=max_queue, seed=seed)
    app = create_app(
        engine, model_id=folder.resolve().name, api_key=api_key, max_tokens_cap=max_tokens_cap
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)
