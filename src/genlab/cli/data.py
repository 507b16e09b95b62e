"""``genlab data``: write the built-in data sets to folders, as plain files with a dataset card."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from genlab.cli._app import app
from genlab.core.errors import GenlabError
from genlab.data.images import DigitsDataset, ShapesDataset, export_images, save_grid
from genlab.data.tinyworld import DEFAULT_HELD_OUT, TinyWorldConfig, write_tinyworld
from genlab.data.tinyworld.documents import DocumentsConfig, write_document_set

data = typer.Typer(
    help="Write built-in data (TinyWorld text, built-in images) to a folder, with a dataset card.",
    no_args_is_help=True,
)
app.add_typer(data, name="data")


@data.command()
def tinyworld(
    out: Annotated[Path, typer.Option("--out", help="Folder to write (created if missing).")],
    seed: Annotated[int, typer.Option("--seed", help="World and sampling seed.")] = 0,
    size: Annotated[
        int, typer.Option("--size", help="Number of people; the world scales with it.")
    ] = 64,
    corpus_chars: Annotated[
        int,
        typer.Option("--corpus-chars", help="Characters of pretraining text (whole documents)."),
    ] = 2_000_000,
    train_per_family: Annotated[
        int, typer.Option("--train-per-family", help="Training examples per tuned task family.")
    ] = 200,
    eval_per_family: Annotated[
        int,
        typer.Option(
            "--eval-per-family", help="Validation, test and held-out examples per family."
        ),
    ] = 50,
    demonstrations: Annotated[
        int, typer.Option("--demonstrations", help="SFT demonstrations.")
    ] = 2000,
    pairs: Annotated[int, typer.Option("--pairs", help="Preference pairs.")] = 2000,
    noise: Annotated[
        float, typer.Option("--noise", help="Probability that a preference pair is flipped.")
    ] = 0.1,
    tool_docs: Annotated[
        int, typer.Option("--tool-docs", help="Tool-shaped text paragraphs.")
    ] = 500,
    held_out: Annotated[
        str,
        typer.Option(
            "--held-out", help="Comma-separated task families kept out of tuning ('' for none)."
        ),
    ] = ",".join(DEFAULT_HELD_OUT),
) -> None:
    """Write TinyWorld (corpus, facts, tasks, demonstrations, pairs, tool text) and its card."""
    config = TinyWorldConfig(
        seed=seed,
        size=size,
        corpus_chars=corpus_chars,
        train_per_family=train_per_family,
        eval_per_family=eval_per_family,
        demonstrations=demonstrations,
        pairs=pairs,
        noise=noise,
        tool_docs=tool_docs,
        held_out=tuple(f.strip() for f in held_out.split(",") if f.strip()),
    )
    counts = write_tinyworld(out, config)
    tasks = {split: sum(c.values()) for split, c in counts["tasks"].items()}
    typer.echo(
        f"TinyWorld -> {out}: {counts['corpus_documents']} documents "
        f"({counts['corpus_characters']} characters), {counts['facts']} facts, tasks "
        + ", ".join(f"{split} {n}" for split, n in tasks.items())
        + f", {counts['demonstrations']} demonstrations, {counts['preference_pairs']} pairs, "
        f"{counts['tool_text_documents']} tool-text paragraphs; see {out / 'README.md'}"
    )


@data.command("documents")
def documents(
    out: Annotated[Path, typer.Option("--out", help="Folder to write (created if missing).")],
    seed: Annotated[
        int, typer.Option("--seed", help="The documents' world (not the one the model learned).")
    ] = DocumentsConfig.seed,
    size: Annotated[int, typer.Option("--size", help="People in that world.")] = (
        DocumentsConfig.size
    ),
) -> None:
    """Write OUT/documents/ (an encyclopedia of an unseen TinyWorld, for ``genlab chat
    --retrieve``) and OUT/questions/{train,validation,test}.jsonl (answers and evidence)."""
    counts = write_document_set(out, DocumentsConfig(seed=seed, size=size))
    typer.echo(f"documents -> {out}: " + ", ".join(f"{n} {what}" for what, n in counts.items()))


class ImageKind(str, Enum):
    shapes = "shapes"
    digits = "digits"


@data.command("images")
def images(
    out: Annotated[Path, typer.Option("--out", help="Folder to write.")],
    kind: Annotated[ImageKind, typer.Option("--kind", help="Which built-in images.")] = (
        ImageKind.shapes
    ),
    n: Annotated[int, typer.Option("--n", help="How many (digits: at most 1797).")] = 1000,
    size: Annotated[int, typer.Option("--size", help="Side in pixels: 16, 32 or 64.")] = 32,
    seed: Annotated[int, typer.Option("--seed", help="Which shapes (digits come in order).")] = 0,
) -> None:
    """Write images/*.png, captions.jsonl (caption and attributes per image) and
    contact_sheet.png (the first 64) to OUT."""
    if n < 1:
        raise GenlabError(f"--n must be at least 1, got {n}")
    if kind is ImageKind.shapes:
        dataset = ShapesDataset(n, size=size, seed=seed)
    else:
        dataset = DigitsDataset(size=size)
        if n > len(dataset):
            raise GenlabError(
                f"digits has {len(dataset)} images: ask for --n {len(dataset)} or fewer"
            )
    files = export_images(dataset, out, n)
    sheet = [dataset[i].image for i in range(min(64, len(files)))]
    save_grid(sheet, out / "contact_sheet.png", nrow=8, scale=max(1, 64 // size))
    typer.echo(f"{len(files)} {kind.value} images of {size}x{size} -> {out}")
    typer.echo(f"captions: {out / 'captions.jsonl'}, contact sheet: {out / 'contact_sheet.png'}")
