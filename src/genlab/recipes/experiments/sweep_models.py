"""The scaling sweep's models, for the experiments that probe them by size and data.

The emergence, calibration, u-shaped and knowledge-vs-language experiments train nothing of
their own: they evaluate the run folders of ``genlab scaling sweep`` (trained here if missing,
reused otherwise) and the scaling-laws experiment's held-out run where it exists, so that all
five share one set of GPTs that differ only in shape and tokens. This module lists those
models and scores texts with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from genlab.core.device import pick_device
from genlab.core.sweep import collect, point_dir
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.methods.autoregressive.scoring import continuation_logprobs
from genlab.nets.gpt import GPT
from genlab.recipes.experiments.report import SWEEPS_DIR
from genlab.recipes.scaling import (
    HELD_OUT,
    TRAIN_POINT,
    ScalingSweepConfig,
    fixed_settings,
    run_beside,
    run_scaling_sweep,
)


def default_sweep() -> ScalingSweepConfig:
    """The sweep the five scale experiments share: the CPU grid, two runs at a time."""
    return ScalingSweepConfig(out=str(Path(SWEEPS_DIR) / "scaling"), parallel=2)


@dataclass(frozen=True)
class SweepModel:
    """One trained GPT of the sweep: its shape, what it trained on, and where it is."""

    layers: int
    width: int
    params: int  # non-embedding N
    tokens: int
    flops: float
    loss: float  # held-out, at the end of training
    folder: Path
    held_out: bool = False  # the scaling-laws experiment's extra run
    seconds: float = 0.0  # its training time, as recorded

    @property
    def shape(self) -> str:
        return f"{self.layers} x {self.width}"

    @property
    def label(self) -> str:
        return f"{self.shape}, {self.tokens / 1e6:.2g}M tokens" + (
            " (held out)" if self.held_out else ""
        )

    def summary(self) -> dict[str, object]:
        """What a page's JSON says of the model."""
        keys = ("label", "shape", "params", "tokens", "flops", "loss")
        return {k: getattr(self, k) for k in keys}

    def open(self, device: str = "cpu") -> tuple[GPT, Tokenizer]:
        return load_gpt(self.folder, device=pick_device(device))


def sweep_models(sweep: ScalingSweepConfig) -> list[SweepModel]:
    """Every run of the sweep (trained first where missing) and the finished runs in the
    held-out folder beside it, from the highest held-out loss to the lowest: the order of
    capability. Runs of one compute differ a lot (a small model on many tokens beats a big one
    on few), while abilities track the pretraining loss across sizes and budgets (Du et al.,
    2024, "Understanding Emergent Abilities of Language Models from the Loss Perspective")."""
    rows = run_scaling_sweep(sweep)
    fixed = fixed_settings(sweep)
    point_keys = ("layers", "heads", "width", "budget")
    models = [
        _model(row, point_dir(sweep.out, TRAIN_POINT, {k: row[k] for k in point_keys}, fixed))
        for row in rows
    ]
    held = Path(f"{sweep.out}-{HELD_OUT}")
    for row in collect(held):
        folder = point_dir(held, TRAIN_POINT, {k: row[k] for k in point_keys}, fixed)
        if folder.is_dir():
            models.append(_model(row, folder, held_out=True))
    return sorted(models, key=lambda m: -m.loss)


def extra_models(sweep: ScalingSweepConfig, points: list[dict], suffix: str) -> list[SweepModel]:
    """Runs of the sweep's kind at other points (trained where missing), in the folder
    ``OUT-SUFFIX`` beside the sweep, so that its own table and fits never include them."""
    out, fixed = Path(f"{sweep.out}-{suffix}"), fixed_settings(sweep)
    rows = run_beside(sweep, points, suffix, sweep.parallel)
    return [
        _model(r, point_dir(out, TRAIN_POINT, p, fixed)) for r, p in zip(rows, points, strict=True)
    ]


def _model(row: dict, folder: Path, held_out: bool = False) -> SweepModel:
    return SweepModel(
        layers=int(row["layers"]),
        width=int(row["width"]),
        params=int(row["params"]),
        tokens=int(row["tokens"]),
        flops=float(row["flops"]),
        loss=float(row["loss"]),
        folder=folder / "run",
        held_out=held_out,
        seconds=float(row.get("seconds", 0.0)),
    )


def by_size(models: Sequence[SweepModel]) -> list[SweepModel]:
    """One model per shape, all trained on the same number of tokens: the largest budget every
    swept shape reached (so that size is the only difference), held-out runs left out."""
    swept = [m for m in models if not m.held_out]
    shapes = {m.shape for m in swept}
    common = max(
        t for t in {m.tokens for m in swept} if {m.shape for m in swept if m.tokens == t} == shapes
    )
    return sorted((m for m in swept if m.tokens == common), key=lambda m: m.params)


def score(
    model: GPT, tokenizer: Tokenizer, prompts: Sequence[str], continuations: Sequence[str]
) -> list[torch.Tensor]:
    """Per-token log-probabilities of each continuation after its prompt (which starts a
    document, after ``<|bos|>``), as the pretraining text would have it."""
    contexts = [[tokenizer.bos_id, *tokenizer.encode(p)] for p in prompts]
    return continuation_logprobs(model, contexts, [tokenizer.encode(c) for c in continuations])


def prefers(
    model: GPT,
    tokenizer: Tokenizer,
    good: Sequence[str],
    bad: Sequence[str],
    prompts: Sequence[str] | None = None,
) -> list[bool]:
    """For each pair: does the model give ``good`` the higher total log-probability, after its
    prompt where given (a minimal pair without one: BLiMP's comparison of whole sentences)?"""
    prompts = [""] * len(good) if prompts is None else prompts
    good_lp = score(model, tokenizer, prompts, good)
    bad_lp = score(model, tokenizer, prompts, bad)
    return [float(g.sum()) > float(b.sum()) for g, b in zip(good_lp, bad_lp, strict=True)]
