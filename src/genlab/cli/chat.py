"""``genlab chat``: talk to a chat model in the terminal, token by token, or answer one message.

The conversation is kept as chat messages and rendered by the model's chat template at every
turn, so the model sees exactly the layout it was fine-tuned on. When the conversation outgrows
the context, the oldest turns are dropped (the system prompt stays).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from genlab.cli._app import app
from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.methods.autoregressive.decoding import stream
from genlab.nets.gpt import GPT

HELP = "Type a message; /reset starts over, /quit (or Ctrl-D) leaves."


def fit_prompt(
    tokenizer: Tokenizer, messages: list[dict[str, Any]], max_len: int
) -> tuple[list[int], list[dict[str, Any]]]:
    """The prompt ids of ``messages`` in at most ``max_len`` tokens, dropping the oldest turns
    after the system prompt; returns the ids and the messages kept."""
    kept = list(messages)
    while True:
        ids = tokenizer.render_prompt(kept)
        if len(ids) <= max_len:
            return ids, kept
        first = 1 if kept and kept[0]["role"] == "system" else 0
        if len(kept) - first <= 1:
            raise GenlabError(
                f"the message is {len(ids)} tokens with its context, more than the model's "
                f"{max_len}: write a shorter one"
            )
        del kept[first]


def reply(
    model: GPT,
    tokenizer: Tokenizer,
    messages: list[dict[str, Any]],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float | None,
    seed: int,
) -> tuple[str, list[dict[str, Any]]]:
    """Stream the assistant's answer to ``messages`` to stdout; return it and the messages kept."""
    room = min(max_new_tokens, model.config.block_size // 2)
    ids, kept = fit_prompt(tokenizer, messages, model.config.block_size - room)
    decoder = tokenizer.stream_decoder(skip_special=True)
    ends = set(tokenizer.stop_ids)
    pieces = []
    for token, _ in stream(
        model,
        ids,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=sorted(ends),
        seed=seed,
    ):
        if token in ends:
            break
        piece = decoder.push(token)
        pieces.append(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()
    tail = decoder.flush()
    sys.stdout.write(tail + "\n")
    sys.stdout.flush()
    return ("".join(pieces) + tail).strip(), kept


@app.command("chat")
def chat_cmd(
    run: Path = typer.Argument(..., help="A chat model folder (an SFT, RLHF or DPO run)."),
    message: str | None = typer.Option(
        None, "--message", "-m", help="Answer this one message and exit (for scripts)."
    ),
    system: str | None = typer.Option(None, help="System prompt that opens the conversation."),
    max_new_tokens: int = typer.Option(128, min=1, help="Longest answer, in tokens."),
    temperature: float = typer.Option(0.0, min=0.0, help="0 answers greedily."),
    top_p: float | None = typer.Option(None, min=0.0, max=1.0, help="Nucleus sampling mass."),
    seed: int = typer.Option(0, help="Same seed, same answers."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, mps."),
) -> None:
    """Chat with a model in the terminal, streaming its answers."""
    model, tokenizer = load_gpt(run, device=pick_device(device))
    opening = [{"role": "system", "content": system}] if system else []
    settings = {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
    }
    if message is not None:
        messages = [*opening, {"role": "user", "content": message}]
        reply(model, tokenizer, messages, seed=seed, **settings)
        return
    typer.echo(f"chatting with {run}. {HELP}")
    messages = list(opening)
    turn = 0
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            typer.echo("")
            return
        if not line:
            continue
        if line == "/quit":
            return
        if line == "/reset":
            messages = list(opening)
            typer.echo("(conversation reset)")
            continue
        if line.startswith("/"):
            typer.echo(f"unknown command {line}. {HELP}")
            continue
        messages.append({"role": "user", "content": line})
        sys.stdout.write("assistant> ")
        answer, messages = reply(model, tokenizer, messages, seed=seed + turn, **settings)
        messages.append({"role": "assistant", "content": answer})
        turn += 1
