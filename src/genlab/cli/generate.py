"""``genlab generate``: continue a prompt with a GPT checkpoint, streaming to stdout."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from genlab.cli._app import app
from genlab.cli.watermark_options import DELTA, ENTROPY, GAMMA, watermark_bias
from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.data.tinyworld import World
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.methods.autoregressive.decoding import stream
from genlab.recipes.toolformer import TOOLS_FILE
from genlab.tools.generate import generate_with_tools
from genlab.tools.toolbox import toolbox


def tool_names(run: Path, tools: str, world: int) -> tuple[list[str], int]:
    """The tools and world of ``--tools``: a list of names, or ``run`` for the run's own."""
    if tools != "run":
        return [t.strip() for t in tools.split(",") if t.strip()], world
    path = run / TOOLS_FILE
    if not path.is_file():
        raise GenlabError(f"{run} has no {TOOLS_FILE}: name the tools (--tools calculator,...)")
    about = json.loads(path.read_text())
    return list(about["tools"]), int(about["world"])


@app.command()
def generate(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="GPT run or model folder."),
    prompt: str = typer.Option("", "--prompt", "-p", help="Text to continue ('' starts fresh)."),
    max_new_tokens: int = typer.Option(100, min=1, help="Tokens to generate at most."),
    temperature: float = typer.Option(0.8, min=0.0, help="0 decodes greedily."),
    top_k: int | None = typer.Option(None, min=1, help="Sample from the k likeliest tokens."),
    top_p: float | None = typer.Option(None, min=0.0, max=1.0, help="Nucleus sampling mass."),
    repetition_penalty: float = typer.Option(1.0, min=0.0, help="1.0 disables it."),
    seed: int = typer.Option(0, help="Same seed, same text."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1, mps."),
    watermark: str | None = typer.Option(
        None, metavar="KEY", help="Watermark the text with KEY (find it: genlab detect)."
    ),
    watermark_gamma: float = GAMMA,
    watermark_delta: float = DELTA,
    watermark_entropy: float = ENTROPY,
    tools: str | None = typer.Option(
        None,
        metavar="NAMES",
        help="Run the tool calls the model writes (Toolformer): comma-separated names "
        "(calculator, calendar, lookup), or 'run' for those its genlab toolformer run names.",
    ),
    world: int = typer.Option(0, help="The TinyWorld the lookup tool answers from (--tools)."),
) -> None:
    """Continue PROMPT token by token and print the text as it comes."""
    bias = watermark_bias(watermark, watermark_gamma, watermark_delta, watermark_entropy)
    model, tok = load_gpt(checkpoint, device=pick_device(device))
    ids = [tok.bos_id, *tok.encode(prompt)]
    if tools is not None:
        names, world = tool_names(checkpoint, tools, world)
        answer = generate_with_tools(
            model,
            tok,
            [ids],
            toolbox(names, world=World(world)),
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
        )[0]
        for call, result in answer.calls:
            sys.stdout.write(f"[{call} -> {result}]\n")
        sys.stdout.write(prompt + answer.text + "\n")
        return
    decoder = tok.stream_decoder()
    sys.stdout.write(prompt)
    sys.stdout.flush()
    for token, _ in stream(
        model,
        ids,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        stop=list(tok.stop_ids),
        seed=seed,
        logits_bias=bias,
    ):
        if token in tok.stop_ids:
            break
        sys.stdout.write(decoder.push(token))
        sys.stdout.flush()
    sys.stdout.write(decoder.flush() + "\n")
