"""What every experiment writes: a markdown page with its table, figure and command.

Experiments are reproducible records, so the page states the exact command that made it, the
settings that are not in the table (sample counts, sampler, machine) and the date; the figure is
a PNG beside it drawn with matplotlib's object API (no global pyplot state, no display).
"""

from __future__ import annotations

import io
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes, atomic_write_json
from genlab.core.logging import read_metrics
from genlab.data.images import save_grid

DOCS_DIR = Path("docs/experiments")
SWEEPS_DIR = Path("runs/experiments")  # a run folder per setting, reused on a rerun


def new_figure(width: float = 9.0, height: float = 4.0) -> Figure:
    fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def write_results(
    out_dir: Path, name: str, results: object, strips: Sequence[torch.Tensor]
) -> None:
    """The experiment's measurements as ``NAME.json`` and its sample strips (one row of images
    per setting, in table order) as ``NAME_samples.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / f"{name}.json", results)
    save_grid(torch.cat(list(strips)), out_dir / f"{name}_samples.png", nrow=8, scale=3)


def load_average() -> str:
    """The machine's 1/5/15-minute load averages ("?" where the system has none): a page's
    timings on a shared machine need them."""
    return "/".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def machine() -> str:
    """The hardware the timings come from, in words."""
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu}, {torch.get_num_threads()} torch thread(s), {os.cpu_count()} core(s) seen"


def write_page(
    path: str | os.PathLike,
    title: str,
    question: str,
    table: str,
    figure: str | None,
    settings: Sequence[str],
    findings: Sequence[str] = (),
    command: str = "",
) -> Path:
    """The experiment's page: question, table, figure, settings and the command that made it
    (``command``, as the user typed it; ``genlab experiment`` passes its own)."""
    parts = [f"# {title}", "", question, "", table, ""]
    if figure:
        parts += [f"![{title}]({figure})", ""]
    if findings:
        parts += ["## What it shows", "", *[f"- {f}" for f in findings], ""]
    parts += ["## Settings", "", *[f"- {s}" for s in settings]]
    parts += [f"- machine: {machine()}", f"- written {time.strftime('%Y-%m-%d %H:%M')}", ""]
    if command:
        parts += ["## Command", "", "```", command, "```", ""]
    atomic_write_bytes(path, "\n".join(parts).encode())
    return Path(path)


def training_seconds(run: Path) -> tuple[float, int]:
    """Seconds the run trained for and its steps, from its last metrics record."""
    records = [r for r in read_metrics(run / "metrics.jsonl") if "time_s" in r]
    if not records:
        raise GenlabError(f"{run}/metrics.jsonl has no timed record: is the run finished?")
    return float(records[-1]["time_s"]), int(records[-1]["step"])
