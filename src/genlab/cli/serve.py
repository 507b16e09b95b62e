"""``genlab serve``: an OpenAI-compatible API and a chat page for a GPT checkpoint, and for
adapters on it (``--adapter NAME=RUN_FOLDER``), each a model of its own name; with
``--server-tools``, tools the server runs itself when the model calls them. A diffusion run,
as RUN or beside a GPT (``--image-model``), answers ``POST /v1/images/generations``."""

from __future__ import annotations

from pathlib import Path

import typer

from genlab.cli._app import app
from genlab.cli.watermark_options import DELTA, ENTROPY, GAMMA, watermark_bias
from genlab.core.errors import GenlabError
from genlab.tools.toolbox import RetrieverName, toolbox

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def adapter_folders(options: list[str]) -> dict[str, Path]:
    """``NAME=RUN_FOLDER`` options as name -> folder (one-line errors for bad ones)."""
    folders: dict[str, Path] = {}
    for option in options:
        name, eq, folder = option.partition("=")
        if not eq or not name or not folder or "." in name:
            raise GenlabError(
                f"--adapter wants NAME=RUN_FOLDER (a name without '.'), got '{option}'"
            )
        if name in folders:
            raise GenlabError(f"--adapter names '{name}' twice")
        if not Path(folder).is_dir():
            raise GenlabError(f"adapter folder not found: {folder}")
        folders[name] = Path(folder)
    return folders


@app.command()
def serve(
    run: Path = typer.Argument(
        ...,
        help="GPT run or model folder (config.json, weights, tokenizer), or a diffusion run "
        "(served alone at /v1/images/generations).",
    ),
    host: str = typer.Option("127.0.0.1", help="Address to listen on; 0.0.0.0 opens it to all."),
    port: int = typer.Option(8000, min=0, max=65535, help="TCP port."),
    max_batch: int = typer.Option(16, min=1, help="Sequences decoded together at most."),
    max_queue: int = typer.Option(
        64, min=0, help="Sequences waiting for a place at most; beyond it requests get 429."
    ),
    max_tokens_cap: int | None = typer.Option(
        None, min=1, help="Largest max_tokens a request may ask for (default: the context)."
    ),
    api_key: str | None = typer.Option(
        None, envvar="GENLAB_API_KEY", help="Key clients must send as 'Authorization: Bearer KEY'."
    ),
    allowed_hosts: list[str] | None = typer.Option(
        None,
        help="Host names the server answers to besides localhost, IP addresses and --host "
        "(comma-separated or repeated; '*' for any): a defence against DNS rebinding.",
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1, mps."),
    seed: int = typer.Option(0, help="Seeds requests that give none: same order, same answers."),
    log_level: str = typer.Option("info", help="uvicorn log level: debug, info, warning, error."),
    adapter: list[str] | None = typer.Option(
        None,
        help="NAME=RUN_FOLDER: serve that adapter run (made for RUN) as model NAME beside the "
        "base; repeat for more. Requests for different adapters share a batch.",
    ),
    watermark: str | None = typer.Option(
        None, metavar="KEY", help="Watermark every answer with KEY (find it: genlab detect)."
    ),
    watermark_gamma: float = GAMMA,
    watermark_delta: float = DELTA,
    watermark_entropy: float = ENTROPY,
    server_tools: list[str] | None = typer.Option(
        None,
        help="Tools the server runs itself when the model calls them, the client seeing only "
        "the answer (comma-separated or repeated): calculator, calendar, search.",
    ),
    documents: Path | None = typer.Option(
        None,
        help="Folder of .txt, .md or .jsonl documents that the search tool searches (its index "
        "built once, kept in DOCUMENTS/.index).",
    ),
    retriever: RetrieverName = typer.Option(
        "bm25",
        help="How the search tool finds passages in --documents: bm25 (shared words) or dense "
        "(sentence embeddings, from the dense extra).",
    ),
    image_model: Path | None = typer.Option(
        None,
        help="A diffusion run served beside the GPT RUN at /v1/images/generations, as the model "
        "named after its folder.",
    ),
    kv_cache: str = typer.Option(
        "auto",
        help="Precision of the KV cache: auto (the model's), fp32, bf16 or fp16. bf16 halves its "
        "memory and what a batched step reads (faster batches where the CPU or GPU has bf16 "
        "units); answers may differ by rounding.",
    ),
) -> None:
    """Serve RUN at http://HOST:PORT: the chat page at /, the OpenAI API under /v1."""
    from genlab.core.device import precision_dtype
    from genlab.serve.api import serve as run_server

    if not run.is_dir():
        raise GenlabError(f"run folder not found: {run}")
    kv_dtype = precision_dtype(kv_cache)
    if image_model is not None and not image_model.is_dir():
        raise GenlabError(f"image model folder not found: {image_model}")
    adapters = adapter_folders(adapter or [])
    names = [n.strip() for names in server_tools or () for n in names.split(",") if n.strip()]
    tools = toolbox(names, documents=documents, retriever=retriever) if names else None
    bias = watermark_bias(watermark, watermark_gamma, watermark_delta, watermark_entropy)
    if not api_key and host not in LOOPBACK:
        typer.echo(
            f"genlab: warning: serving on {host} without --api-key; anyone who can reach it can "
            "use it",
            err=True,
        )
    typer.echo(f"genlab: serving {run} at http://{host}:{port}/ (API under /v1)", err=True)
    run_server(
        run,
        host=host,
        port=port,
        device=device,
        max_batch=max_batch,
        max_queue=max_queue,
        max_tokens_cap=max_tokens_cap,
        api_key=api_key,
        allowed_hosts=[h.strip() for hosts in allowed_hosts or () for h in hosts.split(",")],
        seed=seed,
        log_level=log_level,
        adapters=adapters,
        logits_bias=bias,
        server_tools=tools,
        image_model=image_model,
        kv_dtype=kv_dtype,
    )
