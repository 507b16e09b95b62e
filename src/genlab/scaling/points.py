"""The runs a fit reads: a JSONL file of ``{"params", "tokens", "loss"}`` lines, or a sweep folder
whose finished points recorded those metrics (``eval_loss`` is taken for ``loss``)."""

from __future__ import annotations

import math
from pathlib import Path

from genlab.core.errors import GenlabError
from genlab.core.sweep import collect
from genlab.data.records import numbered_records

Point = tuple[float, float, float]  # params, tokens, loss


def _number(value: object) -> float | None:
    """``value`` as a float if it is a finite positive number (a bool is not), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number > 0 else None


def read_points(source: str | Path) -> list[Point]:
    """``(params, tokens, loss)`` of every run in ``source``; a bad line names ``file:line``."""
    path = Path(source)
    if path.is_dir():
        rows = [(f"{path}/{i}", r) for i, r in enumerate(collect(path))]
        if not rows:
            raise GenlabError(f"{path} holds no finished sweep points")
    else:
        rows = [(f"{path}:{n}", r) for n, r in numbered_records(path, "scaling points")]
    points = []
    for where, record in rows:
        params, tokens = _number(record.get("params")), _number(record.get("tokens"))
        loss = _number(record.get("loss", record.get("eval_loss")))
        if params is None or tokens is None or loss is None:
            raise GenlabError(
                f'{where} needs positive numbers "params", "tokens" and "loss" (or "eval_loss")'
            )
        points.append((params, tokens, loss))
    return points
