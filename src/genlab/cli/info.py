"""``genlab info``: what genlab sees on this machine (versions, devices, threads)."""

from __future__ import annotations

import platform

import torch
import typer

import genlab
from genlab.cli._app import app


@app.command()
def info() -> None:
    """Print genlab, Python and torch versions and the devices genlab can use."""
    typer.echo(f"genlab {genlab.__version__}")
    typer.echo(f"python {platform.python_version()} on {platform.machine()}")
    typer.echo(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            typer.echo(f"cuda:{i} {torch.cuda.get_device_name(i)}")
    else:
        typer.echo("cuda: not available")
    typer.echo(f"mps: {'available' if torch.backends.mps.is_available() else 'not available'}")
