"""``genlab serve``: an OpenAI-compatible API and a chat page for a GPT checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from genlab.cli._app import app
from genlab.core.errors import GenlabError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.command()
def serve(
    run: Path = typer.Argument(
        ..., help="GPT run or model folder (config.json, weights, tokenizer)."
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
) -> None:
    """Serve RUN at http://HOST:PORT: the chat page at /, the OpenAI API under /v1."""
    from genlab.serve.api import serve as run_server

    if not run.is_dir():
        raise GenlabError(f"run folder not found: {run}")
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
    )
