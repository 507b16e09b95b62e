"""``genlab nar``: train a mask-predict translator (or its autoregressive baseline) and translate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genlab.cli._app import app, say
from genlab.cli.options import config_command
from genlab.core.device import pick_device
from genlab.recipes.nar import NARConfig, open_hybrid, open_translator, train_nar

nar = typer.Typer(
    help="Non-autoregressive translation: mask-predict (CMLM) against an autoregressive GPT.",
    no_args_is_help=True,
)
app.add_typer(nar, name="nar")


@nar.command()
@config_command(NARConfig)
def train(
    cfg: NARConfig,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
) -> None:
    """Train a CMLM (--model cmlm) or a GPT with the source as prefix (--model ar)."""
    metrics = train_nar(cfg, resume=resume)
    say(
        f"done: {int(metrics['step'])} steps, {int(metrics['params']):,} parameters; validation "
        f"BLEU {metrics['val_bleu']:.1f}, exact match {100 * metrics['val_exact']:.1f}%"
    )
    say(f'translate with: genlab nar translate {cfg.out} --text "..."')


@nar.command()
def translate(
    run: Annotated[Path, typer.Argument(help="A run folder written by 'genlab nar train'.")],
    text: Annotated[
        list[str], typer.Option("--text", help="A sentence to translate (repeat for several).")
    ],
    iterations: Annotated[
        int, typer.Option("--iterations", min=1, help="CMLM: mask-predict passes (1: one-shot).")
    ] = 10,
    length_beam: Annotated[
        int, typer.Option("--length-beam", min=1, help="CMLM: length candidates per sentence.")
    ] = 3,
    beam: Annotated[int, typer.Option("--beam", min=1, help="AR: beam width (1: greedy).")] = 1,
    hybrid: Annotated[
        Path | None,
        typer.Option(
            "--hybrid",
            help="An AR run (same data) that writes the first --prefix-tokens words; RUN, a "
            "CMLM, fills in the rest with mask-predict.",
        ),
    ] = None,
    prefix_tokens: Annotated[
        int, typer.Option("--prefix-tokens", min=0, help="Hybrid: words the AR run writes.")
    ] = 2,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, mps.")] = "auto",
) -> None:
    """Translate sentences with a trained run, one line each."""
    if hybrid is not None:
        translator = open_hybrid(run, hybrid, prefix_tokens, pick_device(device))
    else:
        translator = open_translator(run, pick_device(device))
    for line in translator.translate(text, iterations, length_beam, beam):
        typer.echo(line)
