"""The watermark settings ``genlab generate`` and ``genlab serve`` share, and the bias they build
(``genlab detect`` takes its own: it tests a watermark rather than making one)."""

from __future__ import annotations

import typer

from genlab.research.watermark import Watermark

GAMMA = typer.Option(0.25, help="Green share of the watermark's vocabulary.")
DELTA = typer.Option(2.0, help="Bias the watermark adds to green logits.")
ENTROPY = typer.Option(
    0.0, help="Bias only steps whose next-token entropy (nats) is at least this (SWEET)."
)


def watermark_bias(key: str | None, gamma: float, delta: float, entropy: float) -> Watermark | None:
    """The logits bias of ``--watermark KEY``, or none without a key."""
    return Watermark(key, gamma, delta, entropy) if key else None
