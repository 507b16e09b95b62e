"""The Typer application that every verb module registers its commands on."""

import os

import typer

app = typer.Typer(
    name="genlab",
    help="Generative AI end to end on PyTorch: train, sample, align and measure models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """genlab: build, train and measure generative models. Add --debug for tracebacks."""


def say(text: str) -> None:
    """Print a verb's closing line once: under torchrun, from rank 0 only."""
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(text)
