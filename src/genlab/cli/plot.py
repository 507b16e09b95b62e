"""``genlab plot RUN``: training curves (loss, learning rate, throughput) as PNG files."""

from __future__ import annotations

from pathlib import Path

import typer

from genlab.cli._app import app


@app.command()
def plot(
    run: Path = typer.Argument(..., help="Run folder holding metrics.jsonl."),
    out: Path | None = typer.Option(None, "--out", help="Folder for the PNGs (default RUN/plots)."),
) -> None:
    """Draw a run's curves from its metrics.jsonl and print the PNG paths."""
    from genlab.core.plot import plot_run

    for path in plot_run(run, out):
        typer.echo(str(path))
