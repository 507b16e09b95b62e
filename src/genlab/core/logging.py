"""Training logs: ``metrics.jsonl`` in the run folder, TensorBoard when installed, a progress bar.

``metrics.jsonl`` is the record every plot and report reads: one JSON object per line, each with
``step`` and flat numeric fields (``loss``, ``lr``, ``eval_loss``, ``tokens_per_s``, ...). Lines
are flushed as written, so a killed run keeps what it logged; on resume the lines past the
checkpoint's step are dropped (``MetricsLogger(..., resume_step=N)``; TensorBoard's
``purge_step`` does the same to its events) so the curve has no doubled segment. Only rank 0 writes; the other ranks get disabled loggers and bars, so the
calling code needs no ``if rank == 0``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes

# Metrics that are counts: summed over micro-batches and processes (not averaged), and turned
# into throughput.
COUNTS = ("tokens", "samples")

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def _tensorboard_writer(log_dir: Path, purge_step: int | None) -> Any | None:
    """A ``SummaryWriter`` when the ``tensorboard`` package is installed, else ``None``."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (or of a run folder holding one).

    A half-written last line (the run was killed while writing it) is skipped; a corrupt line
    elsewhere is an error naming its number.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.is_file():
        raise GenlabError(f"no metrics found: {path} does not exist (is this a genlab run folder?)")
    lines = path.read_text().splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break
            raise GenlabError(f"{path} line {i + 1} is not valid JSON ({e})") from e
        if isinstance(record, dict) and "step" in record:
            records.append(record)
    return records


class MetricsLogger:
    """Append metric records to ``run_dir/metrics.jsonl`` and, if installed, to TensorBoard.

    ``resume_step=N`` first drops the records past step ``N`` (a resumed run redoes those
    steps). ``enabled=False`` (non-zero ranks) makes every method a no-op.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        enabled: bool = True,
        tensorboard: bool = True,
        resume_step: int | None = None,
    ):
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self._file = None
        self._tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.is_file():
            kept = [r for r in read_metrics(self.path) if r["step"] <= resume_step]
            atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())
        self._file = self.path.open("a")
        if tensorboard:
            purge = None if resume_step is None else resume_step + 1
            self._tb = _tensorboard_writer(self.path.parent / TENSORBOARD_DIR, purge)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Write one record ``{"step": step, **metrics}`` (non-finite values become null)."""
        if not self.enabled or self._file is None:
            return
        record: dict[str, Any] = {"step": step}
        for key, value in metrics.items():
            value = float(value)
            record[key] = value if math.isfinite(value) else None
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and value is not None:
                    self._tb.add_scalar(key, value, step)
            self._tb.flush()

    def close(self) -> None:
        """Close the files (idempotent); later :meth:`log` calls are no-ops."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


class ProgressBar:
    """A console bar over optimizer steps with loss, throughput and ETA (rank 0 only)."""

    def __init__(self, total: int, initial: int = 0, enabled: bool = True, desc: str = "train"):
        self._bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit="step",
            dynamic_ncols=True,
            disable=not enabled,
            file=sys.stderr,
        )

    def update(self, steps: int = 1, **postfix: float | str) -> None:
        """Advance by ``steps``; the keyword values (``loss=2.1``) replace the shown ones."""
        if postfix:
            shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in postfix.items()}
            self._bar.set_postfix(shown, refresh=False)
        self._bar.update(steps)

    def write(self, line: str) -> None:
        """Print a line above the bar (eval results) without breaking it."""
        if not self._bar.disable:
            self._bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()


class MetricsWindow:
    """The trainer's sums over the steps since the last log line: mean loss/metrics and throughput."""

    def __init__(self) -> None:
        self.steps = 0
        self.loss = 0.0
        self.seconds = 0.0
        self.samples = 0
        self.metrics: dict[str, float] = {}

    def add(self, loss: float, metrics: Mapping[str, float], samples: int, seconds: float) -> None:
        self.steps += 1
        self.loss += loss
        self.seconds += seconds
        self.samples += samples
        for key, value in metrics.items():
            self.metrics[key] = self.metrics.get(key, 0.0) + value

    def rates(self) -> dict[str, float]:
        seconds = max(self.seconds, 1e-9)
        out = {"samples_per_s": self.samples / seconds}
        if "tokens" in self.metrics:
            out["tokens_per_s"] = self.metrics["tokens"] / seconds
        return out

    def rate_postfix(self) -> dict[str, str]:
        rates = self.rates()
        if "tokens_per_s" in rates:
            return {"tok/s": f"{rates['tokens_per_s']:.0f}"}
        return {"samples/s": f"{rates['samples_per_s']:.1f}"}

    def summary(self) -> dict[str, float]:
        means = {k: v / self.steps for k, v in self.metrics.items() if k not in COUNTS}
        return {"loss": self.loss / self.steps, **means, **self.rates()}
