"""``genlab tokenizer``: train a byte-level BPE tokenizer and see how it splits text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genlab.cli._app import app
from genlab.data.tokenizer import Tokenizer

tokenizer_app = typer.Typer(
    help="Train byte-level BPE tokenizers and inspect how they split text.",
    no_args_is_help=True,
)
app.add_typer(tokenizer_app, name="tokenizer")


@tokenizer_app.command()
def train(
    data: Annotated[
        list[Path],
        typer.Option("--data", help="A text file or a folder of .txt files; repeat for more."),
    ],
    vocab_size: Annotated[int, typer.Option("--vocab-size", help="Ids in all, specials included.")],
    out: Annotated[Path, typer.Option("--out", help="Tokenizer JSON file to write.")],
    min_frequency: Annotated[
        int, typer.Option("--min-frequency", help="Merge only pairs seen this often.")
    ] = 2,
) -> None:
    """Learn BPE merges from text files (deterministic: the same files give the same tokenizer)."""
    tok = Tokenizer.train(data, vocab_size=vocab_size, min_frequency=min_frequency)
    tok.save(out)
    typer.echo(f"tokenizer with {tok.vocab_size} ids ({len(tok.special)} special) -> {out}")


@tokenizer_app.command()
def encode(
    text: Annotated[str, typer.Argument(help="Text to encode.")],
    tokenizer: Annotated[Path, typer.Option("--tokenizer", help="Tokenizer JSON or folder.")],
) -> None:
    """Print the ids of TEXT, separated by spaces."""
    typer.echo(" ".join(map(str, Tokenizer.load(tokenizer).encode(text))))


@tokenizer_app.command()
def decode(
    ids: Annotated[list[int], typer.Argument(help="Token ids.")],
    tokenizer: Annotated[Path, typer.Option("--tokenizer", help="Tokenizer JSON or folder.")],
) -> None:
    """Print the text of IDS, special tokens spelled out."""
    typer.echo(Tokenizer.load(tokenizer).decode(ids))
