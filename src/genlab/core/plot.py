"""Training curves as PNG files, drawn from a run's ``metrics.jsonl``.

One figure per quantity a reader compares across steps: the losses (train and eval, and any
other ``*loss`` a step function reports, e.g. a GAN's two), the learning-rate schedule, the
throughput and the gradient norm. It uses matplotlib's object API with the Agg canvas, so it
touches no global pyplot state and needs no display.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes
from genlab.core.logging import METRICS_FILE, read_metrics

PLOTS_DIR = "plots"
# file name, title, y-axis label, which metric keys go on it, log-scale y
_FIGURES = (
    ("loss.png", "Loss", "loss", lambda k: k.endswith("loss"), False),
    ("lr.png", "Learning rate", "lr", lambda k: k == "lr", False),
    ("throughput.png", "Throughput", "per second", lambda k: k.endswith("_per_s"), False),
    ("grad_norm.png", "Gradient norm (before clipping)", "norm", lambda k: k == "grad_norm", True),
)


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pairs = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot_run(run: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Write the run's curves as PNGs into ``out_dir`` (default ``RUN/plots``); return the paths."""
    run = Path(run)
    if not run.is_dir():
        raise GenlabError(f"run folder not found: {run}")
    records = read_metrics(run / METRICS_FILE)
    if not records:
        raise GenlabError(f"{run / METRICS_FILE} has no records yet: nothing to plot")
    out = Path(out_dir) if out_dir is not None else run / PLOTS_DIR
    keys = sorted({k for r in records for k in r if k != "step"})
    written = []
    for filename, title, ylabel, wanted, log_y in _FIGURES:
        chosen = sorted((k for k in keys if wanted(k)), key=lambda k: (k != "loss", k))
        if not chosen:
            continue
        fig = Figure(figsize=(7, 4), dpi=120, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for key in chosen:
            steps, values = _series(records, key)
            marker = "o" if len(steps) <= 30 else None
            label = "train loss" if key == "loss" else key.replace("_per_s", "/s").replace("_", " ")
            ax.plot(steps, values, label=label, marker=marker, markersize=3)
        ax.set(title=f"{title}: {run.name}", xlabel="step", ylabel=ylabel)
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        atomic_write_bytes(out / filename, buffer.getvalue())
        written.append(out / filename)
    return written
