"""An OpenAI-compatible HTTP API and a chat page in front of the continuous batching engine.

The routes, JSON bodies, server-sent-event streams and error bodies are those of the OpenAI API,
so its official clients work unchanged with ``base_url`` pointed here:

- ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions``
- ``POST /v1/images/generations`` with a diffusion run served (``genlab.serve.images``), beside
  a GPT or alone
- ``GET /health`` (open, for load balancers and the page) and ``GET /`` (the chat page)

A route validates (``schemas``), tokenizes (on a worker thread, after refusing text too long to
fit the context from its length alone, so that no request stalls the event loop) and turns the
request into engine sequences; the rest has a module each: the host, key and size checks in
front of the routes (``gate``), the hand-over of events from the engine's thread
(``submission``), the answer bodies and streams (``responses``), log-probabilities and the
scoring of echoed prompts (``logprobs``) and the error bodies (``errors``): 400 for bad input
(naming the field), 401 for a missing or wrong API key, 403 for a host not answered to, 404 for
an unknown model or route, 413 for an oversized body, 429 when the engine is full, 500 (no
traceback) when the server itself fails.

With adapters loaded into the base (``load_model``), a request's ``model`` picks one: the base's
own name picks the base, an adapter's name that adapter, and requests for different adapters
share the engine's batches (S-LoRA/Punica style, ``genlab.serve.engine``).

Chat completions take OpenAI's function calling (``tools``, ``tool_choice``, ``response_format``;
``genlab.serve.calls``: each turn's grammar, compiled off the event loop) and may run tools of
the server's own (``genlab.serve.server_tools``).

Without a text engine (an image model alone) the text routes answer every request with a 404
that names the image model and its route, as OpenAI answers a chat request for an image model.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from genlab.adapt.adapted import adapter_config, attach
from genlab.adapt.inject import adapter_names, set_adapters
from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.data.tokenizer import Tokenizer
from genlab.nets.gpt import GPT

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, Response
    from starlette.exceptions import HTTPException
except ModuleNotFoundError as e:  # an optional extra
    raise GenlabError(
        f"serving needs FastAPI and uvicorn ({e.name} is missing): pip install 'genlab[serve]'"
    ) from e

from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.methods.autoregressive.decoding import LogitsBias
from genlab.serve.calls import Grammars, plan
from genlab.serve.engine import Engine, SequenceRequest
from genlab.serve.errors import ApiError, http_error, server_error, validation_error
from genlab.serve.gate import Gate
from genlab.serve.images import ImageGenerator, is_image_run
from genlab.serve.logprobs import TokenTable, score_prompt
from genlab.serve.responses import ChatChoices, Echo, TextChoices, answer, event_stream
from genlab.serve.schemas import ChatCompletionRequest, CompletionRequest, ImageGenerationRequest
from genlab.serve.server_tools import MAX_ROUNDS, ToolLoop
from genlab.serve.submission import Mailbox, Submission
from genlab.tools.base import Tool


def create_app(
    engine: Engine | None,
    *,
    model_id: str | None = None,
    api_key: str | None = None,
    max_tokens_cap: int | None = None,
    max_body_bytes: int = 1 << 20,
    allowed_hosts: Iterable[str] | None = (),
    server_tools: Mapping[str, Tool] | None = None,
    grammar_budget_s: float = 5.0,
    images: ImageGenerator | None = None,
) -> FastAPI:
    """The FastAPI application serving ``engine``'s model under the name ``model_id``, and
    each of the engine's adapters under its own name; and ``images``' diffusion model under
    its name, beside them or alone (``engine`` None).

    The engine's and the image model's threads start and stop with the application.
    ``max_tokens_cap`` bounds the ``max_tokens`` a request may ask for (default: the model's
    context). ``allowed_hosts`` are the ``Host`` names answered besides ``localhost`` and IP
    addresses (None: any name).
    ``server_tools`` (name -> tool) run on the server when the model calls them;
    ``grammar_budget_s`` is the time a request's new grammar may take to compile.
    """
    text_names: tuple[str, ...] = ()
    if engine is None and images is None:
        raise GenlabError("nothing to serve: give a text engine, an image model or both")
    if engine is not None:  # the text routes' state (they refuse every request without it)
        if not model_id:
            raise GenlabError("name the text model: model_id")
        text_names = (model_id, *engine.adapters)
        tokenizer = engine.tokenizer
        table = TokenTable(tokenizer)
        if model_id in engine.adapters:
            raise GenlabError(f"an adapter is named '{model_id}' like the base model: rename it")
        cap = max_tokens_cap or engine.context
        if cap < 1:
            raise GenlabError(f"max_tokens_cap must be >= 1, got {cap}")
        grammars = Grammars(tokenizer, grammar_budget_s)
    if images is not None and images.name in text_names:
        raise GenlabError(
            f"the image model is named '{images.name}' like a text model: rename its folder"
        )
    served = (*text_names, *([images.name] if images is not None else []))
    created = int(time.time())
    page = resources.files("genlab.serve").joinpath("static/index.html").read_text("utf-8")
    server_tools = dict(server_tools or {})
    tool_pool = ThreadPoolExecutor(4, thread_name_prefix="genlab-tool")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.mailbox = Mailbox(asyncio.get_running_loop())
        if engine is not None:
            engine.start(after_step=app.state.mailbox.flush)
        if images is not None:
            images.start()
        try:
            yield
        finally:
            if engine is not None:
                engine.stop()
                grammars.executor.shutdown(wait=False, cancel_futures=True)
            if images is not None:
                images.stop()
            tool_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="genlab serve", version="1", lifespan=lifespan)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        return validation_error(exc).response()

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, server_error)
    app.add_middleware(Gate, api_key=api_key, limit=max_body_bytes, hosts=allowed_hosts)

    # ---- requests into engine sequences ------------------------------------------------------

    def not_found(name: str) -> ApiError:
        listed = ", ".join(f"'{n}'" for n in served)
        return ApiError(
            404,
            f"the model '{name[:100]}' does not exist here; this server serves {listed}",
            "model",
            code="model_not_found",
        )

    def check_model(name: str | None) -> str | None:
        """The adapter the text model ``name`` runs with (None: the base; no name: the base).
        Every text route calls it first: without a text engine it refuses every request."""
        if images is not None and (engine is None or name == images.name):
            alone = "" if engine is not None else "this server serves no text model; "
            raise ApiError(
                404,
                f"{alone}'{images.name}' is an image model, not a chat or completions model: "
                "ask POST /v1/images/generations",
                "model",
            )
        assert engine is not None
        if name is None or name == model_id:
            return None
        if name in engine.adapters:
            return name
        raise not_found(name)

    def max_tokens(asked: int | None, param: str, prompt_len: int) -> int:
        if asked is not None and asked > cap:
            raise ApiError(400, f"{param} is {asked} but this server allows at most {cap}", param)
        return asked if asked is not None else max(1, min(cap, engine.context - prompt_len))

    def too_long(param: str, tokens: str) -> ApiError:
        return ApiError(
            400,
            f"{param}: the input is {tokens} tokens but the model's context is "
            f"{engine.context}; shorten it",
            param,
            code="context_length_exceeded",
        )

    def check_text_size(texts: list[str], room: int, param: str) -> None:
        """Refuse, untokenized, text that cannot be ``room`` tokens or fewer: a token covers at
        most ``table.longest`` bytes, and a character takes at least one byte."""
        limit = room * table.longest
        size = sum(len(t) for t in texts)
        if size <= limit:
            size = sum(len(t.encode("utf-8")) for t in texts)
        if size > limit:
            raise too_long(param, f"at least {-(-size // table.longest)}")

    def check_length(ids: list[int], param: str) -> None:
        if len(ids) >= engine.context:
            raise too_long(param, str(len(ids)))

    def sequences(
        prompts: list[list[int]],
        body: Any,
        limit: int | None,
        param: str,
        logprobs: int | None,
        adapter: str | None,
        turns: list[dict[str, Any]] | None = None,
    ) -> list[SequenceRequest]:
        """Each prompt's ``n`` sequences (sequence ``k`` with the grammar fields ``turns[k]``)."""
        out = []
        for ids in prompts:
            budget = max_tokens(limit, param, len(ids))
            for j in range(body.n or 1):
                out.append(
                    SequenceRequest(
                        prompt=ids,
                        max_tokens=budget,
                        temperature=1.0 if body.temperature is None else body.temperature,
                        top_p=body.top_p if body.top_p is not None and body.top_p < 1 else None,
                        seed=None if body.seed is None else body.seed + j,
                        stop=body.stops(),
                        logprobs=logprobs,
                        adapter=adapter,
                        **(turns[len(out)] if turns else {}),
                    )
                )
        return out

    def check_count(prompts: int, n: int | None) -> None:
        if prompts * (n or 1) > engine.max_batch:
            raise ApiError(
                400,
                f"n: {prompts * (n or 1)} sequences asked for, but at most {engine.max_batch} "
                "decode together here",
                "n",
            )

    # ---- routes ------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """The text model (``model`` null when none is served) and the image model
        (``image_model``, null when none is)."""
        text: dict[str, Any] = {"model": None}
        if engine is not None:
            text = {
                "model": model_id,
                "adapters": list(engine.adapters),
                "context": engine.context,
                "max_tokens_cap": cap,
                "max_batch": engine.max_batch,
            }
        return {
            "status": "ok",
            **text,
            "api_key_required": bool(api_key),
            **(engine.stats() if engine is not None else {}),
            "image_model": images.stats() if images is not None else None,
        }

    def model_card(name: str) -> dict[str, Any]:
        card = {"id": name, "object": "model", "created": created, "owned_by": "genlab"}
        if engine is not None and name in engine.adapters:
            return {**card, "parent": model_id}  # as vLLM's LoRAs
        return card

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card(n) for n in served]}

    @app.get("/v1/models/{name}")
    async def model(name: str) -> dict[str, Any]:
        if name not in served:
            raise not_found(name)
        return model_card(name)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(
        body: ChatCompletionRequest, request: Request
    ) -> Response | dict[str, Any]:
        adapter = check_model(body.model)
        check_count(1, body.n)
        loop = asyncio.get_running_loop()
        if body.tools or body.response_format or server_tools:  # schemas: off the loop
            calls = await loop.run_in_executor(
                grammars.executor, plan, body, server_tools, grammars
            )
        else:
            calls = plan(body, server_tools, grammars)
        messages = [m.to_template() for m in body.messages]
        texts = [m["content"] for m in messages] + [json.dumps(t) for t in calls.listed]
        texts += [c["function"]["arguments"] for m in messages for c in m.get("tool_calls", ())]
        check_text_size(texts, engine.context - 1, "messages")
        try:
            ids = await asyncio.to_thread(tokenizer.render_prompt, messages, calls.listed)
        except GenlabError as e:
            raise ApiError(400, f"messages: {e}", "messages") from e
        check_length(ids, "messages")
        limit, param = body.max_completion_tokens, "max_completion_tokens"
        if limit is None:
            limit, param = body.max_tokens, "max_tokens"
        n = body.n or 1
        turns = None
        if calls.constrained:
            turns = await loop.run_in_executor(
                grammars.executor, lambda: [calls.fields(grammars) for _ in range(n)]
            )
        logprobs = body.logprob_count()
        first = sequences([ids], body, limit, param, logprobs, adapter, turns)
        submission: Submission
        if calls.server and calls.choice != "none":

            async def follow_up(j: int, prompt: list[int], budget: int, k: int) -> SequenceRequest:
                """Choice ``j``'s turn after its ``k``-th server call."""
                choice = "auto" if k < MAX_ROUNDS else "none"
                fields = await loop.run_in_executor(
                    grammars.executor, calls.fields, grammars, choice
                )
                seed = None if body.seed is None else body.seed + j + 16 * k
                return replace(first[j], prompt=prompt, max_tokens=budget, seed=seed, **fields)

            mailbox = request.app.state.mailbox
            submission = ToolLoop(engine, mailbox, first, server_tools, follow_up, tool_pool)
        else:
            submission = Submission(engine, request.app.state.mailbox, first)
        rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        head = {"id": rid, "created": now, "model": adapter or model_id}
        choices = ChatChoices(n, table if body.logprobs else None, engine.stop_ids)
        if body.stream:
            chunk_head = {**head, "object": "chat.completion.chunk"}
            return event_stream(submission, chunk_head, [ids], body.include_usage(), choices, n)
        head = {**head, "object": "chat.completion"}
        return await answer(submission, request, head, [ids], choices, n)

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Response | dict[str, Any]:
        adapter = check_model(body.model)
        given = body.prompts()
        check_count(len(given), body.n)
        if body.max_tokens == 0 and not body.echo:
            raise ApiError(
                400, "max_tokens: 0 generates nothing; with echo it scores the prompt", "max_tokens"
            )
        if isinstance(given[0], str):
            texts = [str(p) for p in given]
            check_text_size(texts, engine.context - 2, "prompt")  # after <|bos|>
            encoded = await asyncio.to_thread(tokenizer.encode_batch, texts)
        else:
            encoded = [list(map(int, p)) for p in given]  # type: ignore[arg-type]
            texts = None
            for ids in encoded:
                if max(ids) >= tokenizer.vocab_size:
                    raise ApiError(
                        400,
                        f"prompt: token id {max(ids)} is outside the vocabulary "
                        f"(0..{tokenizer.vocab_size - 1})",
                        "prompt",
                    )
        # Every prompt is continued after <|bos|> (one that starts with it is taken as it is).
        prompts = [
            ids if ids[:1] == [tokenizer.bos_id] else [tokenizer.bos_id, *ids] for ids in encoded
        ]
        for ids in prompts:
            check_length(ids, "prompt")
        max_tokens(body.max_tokens, "max_tokens", 0)  # refused before the prompts are scored
        echoes = None
        if body.echo:
            # on the engine's thread, the only one that runs the model
            scored = engine.call(
                lambda model: echo_prompts(model, prompts, encoded, texts, body.logprobs or 0),
                adapter,
            )
            echoes = await asyncio.wrap_future(scored)
        submission = None
        if body.max_tokens != 0:
            submission = Submission(
                engine,
                request.app.state.mailbox,
                sequences(prompts, body, body.max_tokens, "max_tokens", body.logprobs, adapter),
            )
        rid, now = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        head = {
            "id": rid,
            "object": "text_completion",
            "created": now,
            "model": adapter or model_id,
        }
        n = body.n or 1
        choices = TextChoices(n, tokenizer, table, body.logprobs, echoes)
        count = len(prompts) * n
        if body.stream:
            return event_stream(submission, head, prompts, body.include_usage(), choices, count)
        return await answer(submission, request, head, prompts, choices, count)

    @app.post("/v1/images/generations")
    async def image_generations(body: ImageGenerationRequest) -> dict[str, Any]:
        if images is None:
            raise ApiError(
                404,
                "this server serves no image model; serve a diffusion run (genlab serve RUN "
                "--image-model DIFFUSION_RUN)",
                "model",
                code="model_not_found",
            )
        if body.model is not None and body.model != images.name:
            if body.model in text_names:
                raise ApiError(
                    404,
                    f"'{body.model}' is a text model, not an image model; this server draws "
                    f"images with '{images.name}'",
                    "model",
                )
            raise not_found(body.model)
        return await images.generate(body)

    def echo_prompts(
        model: GPT,
        prompts: list[list[int]],
        given: list[list[int]],
        texts: list[str] | None,
        top: int,
    ) -> list[Echo]:
        """Each prompt as given, with its tokens scored by ``model``."""
        return [
            Echo(
                text=texts[i] if texts is not None else tokenizer.decode(ids, skip_special=True),
                tokens=ids,
                scores=score_prompt(
                    model, prompt, len(prompt) - len(ids), top, tokenizer.vocab_size
                ),
            )
            for i, (prompt, ids) in enumerate(zip(prompts, given, strict=True))
        ]

    return app


def load_model(
    folder: str | os.PathLike,
    adapters: Mapping[str, str | os.PathLike] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[GPT, Tokenizer]:
    """Load the GPT in ``folder`` once and inject each adapter run folder of ``adapters``
    (name -> folder) into it; the base alone acts until rows choose (one-line errors: a soft
    prompt, or an adapter whose shapes do not fit this base)."""
    model, tokenizer = load_gpt(folder, device=device)
    if not adapters:
        return model, tokenizer
    if adapter_names(model):
        raise GenlabError(
            f"{folder} already holds an adapter: serve its base with --adapter NAME={folder}"
        )
    for name, path in adapters.items():
        if adapter_config(path).adapter.method == "prompt":
            raise GenlabError(
                f"adapter '{name}' ({path}) is a soft prompt, which shifts every position after "
                f"it, so it cannot share a batch with other requests; serve it alone: genlab "
                f"serve {path}"
            )
        attach(model, path, name)
    set_adapters(model, None)
    return model, tokenizer


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
    allowed_hosts: Iterable[str] = (),
    seed: int = 0,
    log_level: str = "info",
    adapters: Mapping[str, str | os.PathLike] | None = None,
    logits_bias: LogitsBias | None = None,
    server_tools: Mapping[str, Tool] | None = None,
    image_model: str | os.PathLike | None = None,
    kv_dtype: torch.dtype | None = None,
) -> None:
    """Load the GPT checkpoint in ``folder`` (with ``adapters``: name -> adapter run folder,
    each served under its name; see ``load_model``) and serve it until interrupted;
    ``logits_bias`` (e.g. a watermark) changes every sequence's logits before each choice;
    ``server_tools`` run on the server when the model calls them (``server_tools`` module);
    ``kv_dtype`` is the engine's KV cache's (default: the model's).

    A diffusion run as ``folder`` is served alone at ``POST /v1/images/generations``; one as
    ``image_model`` is served there beside the GPT. Each model is named after its folder.

    Requests must name ``localhost``, an IP address, ``host`` or one of ``allowed_hosts`` in
    their ``Host`` header; ``*`` among ``allowed_hosts`` lets any name through.
    """
    try:
        import uvicorn
    except ModuleNotFoundError as e:
        raise GenlabError(
            f"serving needs FastAPI and uvicorn ({e.name} is missing): pip install 'genlab[serve]'"
        ) from e
    folder = Path(folder)
    chosen = pick_device(device)
    engine = None
    if is_image_run(folder):
        if image_model is not None:
            raise GenlabError(
                f"{folder} is an image model already; --image-model adds one to a GPT run"
            )
        if adapters or logits_bias is not None or server_tools or kv_dtype is not None:
            raise GenlabError(
                f"{folder} is an image model: --adapter, --watermark, --server-tools and "
                "--kv-cache are for a GPT run"
            )
        image_model = folder
    else:
        model, tokenizer = load_model(folder, adapters, device=chosen)
        engine = Engine(
            model,
            tokenizer,
            max_batch=max_batch,
            max_queue=max_queue,
            seed=seed,
            adapters=list(adapters or ()),
            logits_bias=logits_bias,
            kv_dtype=kv_dtype,
        )
    images = None
    if image_model is not None:
        if not is_image_run(image_model):
            raise GenlabError(f"--image-model {image_model} is not a diffusion run")
        images = ImageGenerator.load(image_model, chosen, max_waiting=max_queue, seed=seed)
    hosts = list(allowed_hosts)
    app = create_app(
        engine,
        model_id=folder.resolve().name if engine is not None else None,
        api_key=api_key,
        max_tokens_cap=max_tokens_cap,
        allowed_hosts=None if "*" in hosts else [host, *hosts],
        server_tools=server_tools,
        images=images,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)
