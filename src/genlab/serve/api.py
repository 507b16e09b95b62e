"""An OpenAI-compatible HTTP API and a chat page in front of the continuous batching engine.

The routes, JSON bodies, server-sent-event streams and error bodies are those of the OpenAI API,
so its official clients work unchanged with ``base_url`` pointed here:

- ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions``
- ``GET /health`` (open, for load balancers and the page) and ``GET /`` (the chat page)

A route validates (``schemas``), tokenizes and turns the request into engine sequences; the
rest has a module each: the key and size check in front of the routes (``gate``), the hand-over
of events from the engine's thread (``submission``), the answer bodies and streams
(``responses``) and the error bodies (``errors``): 400 for bad input (naming the field), 401 for
a missing or wrong API key, 413 for an oversized body, 429 when the engine is full.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from genlab.core.device import pick_device
from genlab.core.errors import GenlabError

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
except ModuleNotFoundError as e:  # an optional extra
    raise GenlabError(
        f"serving needs FastAPI and uvicorn ({e.name} is missing): pip install 'genlab[serve]'"
    ) from e

from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.serve.engine import Engine, SequenceRequest
from genlab.serve.errors import ApiError, validation_error
from genlab.serve.gate import Gate
from genlab.serve.responses import (
    answer,
    chat_choice,
    chat_chunks,
    chat_start,
    event_stream,
    text_choice,
    text_chunks,
)
from genlab.serve.schemas import ChatCompletionRequest, CompletionRequest
from genlab.serve.submission import Mailbox, Submission


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
        app.state.mailbox = Mailbox(asyncio.get_running_loop())
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

    app.add_middleware(Gate, api_key=api_key, limit=max_body_bytes)

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

    def submit(
        request: Request, prompts: list[list[int]], body: Any, limit: int | None, param: str
    ) -> Submission:
        """Each prompt's ``n`` sequences, submitted to the engine."""
        n = body.n or 1
        if len(prompts) * n > engine.max_batch:
            raise ApiError(
                400,
                f"n: {len(prompts) * n} sequences asked for, but at most {engine.max_batch} "
                "decode together here",
                "n",
            )
        sequences = []
        for ids in prompts:
            budget = max_tokens(limit, param, len(ids))
            for j in range(n):
                sequences.append(
                    SequenceRequest(
                        prompt=ids,
                        max_tokens=budget,
                        temperature=1.0 if body.temperature is None else body.temperature,
                        top_p=body.top_p if body.top_p is not None and body.top_p < 1 else None,
                        seed=None if body.seed is None else body.seed + j,
                        stop=body.stops(),
                    )
                )
        return Submission(engine, request.app.state.mailbox, sequences)

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
        submission = submit(request, [ids], body, limit, param)
        rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": rid, "created": now, "model": model_id}
        if body.stream:
            chunk_head = {**head, "object": "chat.completion.chunk"}
            start = chat_start(body.n or 1)
            return event_stream(
                submission, chunk_head, [ids], body.include_usage(), chat_chunks, start
            )
        head = {**head, "object": "chat.completion"}
        return await answer(submission, request, head, [ids], chat_choice)

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Response | dict[str, Any]:
        prompts = [[tokenizer.bos_id, *ids] for ids in tokenizer.encode_batch(body.prompts())]
        for ids in prompts:
            check_length(ids, "prompt")
        submission = submit(request, prompts, body, body.max_tokens, "max_tokens")
        rid, now = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": rid, "object": "text_completion", "created": now, "model": model_id}
        if body.stream:
            return event_stream(submission, head, prompts, body.include_usage(), text_chunks)
        return await answer(submission, request, head, prompts, text_choice)

    return app


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
