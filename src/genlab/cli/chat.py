"""``genlab chat``: talk to a chat model in the terminal, token by token, or answer one message.

The conversation is kept as chat messages and rendered by the model's chat template at every
turn, so the model sees exactly the layout it was fine-tuned on. When the conversation outgrows
the context, the oldest turns are dropped (the system prompt stays).

With ``--retrieve DOCS`` the model answers from a folder of documents, as WebGPT does (Nakano et
al., 2021): its ``search(...)`` calls run over the folder's BM25 index, or with ``--retriever
dense`` its sentence embeddings (built once, kept in ``DOCS/.index``), their passages are forced
into its context, and the answer's ``[n]`` citations are printed with the passages they point to
and their files.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from genlab.cli._app import app
from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.core.io import read_json
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.methods.autoregressive.decoding import stream
from genlab.nets.gpt import GPT
from genlab.recipes.retrieval import SETTINGS_FILE
from genlab.tools.cited import CitedAnswer, answer_with_citations
from genlab.tools.retrieval import Searcher
from genlab.tools.toolbox import RetrieverName, documents_retriever

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


def retrieved_reply(
    model: GPT,
    tokenizer: Tokenizer,
    retriever: Searcher,
    messages: list[dict[str, Any]],
    k: int,
) -> tuple[str, list[dict[str, Any]]]:
    """Answer ``messages`` from the documents and print the answer, the searches and the cited
    passages; return the answer and the messages kept. The prompt keeps to a quarter of the
    context: the passages need the rest."""
    _, kept = fit_prompt(tokenizer, messages, model.config.block_size // 4)
    answer = answer_with_citations(model, tokenizer, retriever, [kept], k=k)[0]
    typer.echo(answer.text)
    typer.echo(citations_text(answer))
    return answer.text, kept


def trained_k(run: Path) -> int:
    """The passages per search a retrieval run was trained with (3 for any other run)."""
    settings = run / SETTINGS_FILE
    return int(read_json(settings, "retrieval settings")["k"]) if settings.is_file() else 3


def citations_text(answer: CitedAnswer) -> str:
    """The searches made and each cited passage with its file, one per line."""
    lines = [f"  call: {call}" for call, _ in answer.calls]
    cited = zip(answer.citations, answer.passages, strict=True)
    lines += [f"  [{n}] {p.source}: {p.text}" for n, p in cited]
    return "\n".join(lines or ["  (no search, no citation)"])


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
    retrieve: Path | None = typer.Option(
        None,
        help="Answer from this folder of .txt/.md/.jsonl documents: the model's searches run "
        "over it and its numbered citations are shown (greedy; the passages take the context room).",
    ),
    passages: int | None = typer.Option(
        None,
        min=1,
        help="Passages a search returns (with --retrieve; default: the k the run was trained "
        "with, in its retrieval.json, else 3).",
    ),
    retriever: RetrieverName = typer.Option(
        "bm25",
        help="How --retrieve finds passages: bm25 (shared words) or dense (sentence embeddings, "
        "from the dense extra).",
    ),
) -> None:
    """Chat with a model in the terminal, streaming its answers (or answering from documents)."""
    model, tokenizer = load_gpt(run, device=pick_device(device))
    index = documents_retriever(retrieve, retriever) if retrieve is not None else None
    k = passages or trained_k(run)
    opening = [{"role": "system", "content": system}] if system else []
    settings = {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
    }

    def answer(messages: list[dict[str, Any]], turn: int) -> tuple[str, list[dict[str, Any]]]:
        if index is not None:
            return retrieved_reply(model, tokenizer, index, messages, k)
        return reply(model, tokenizer, messages, seed=seed + turn, **settings)

    if message is not None:
        answer([*opening, {"role": "user", "content": message}], 0)
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
        text, messages = answer(messages, turn)
        messages.append({"role": "assistant", "content": text})
        turn += 1
