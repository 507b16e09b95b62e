"""The shell every supervised stage of the recipe shares: tensors in, a trained run folder out.

SFT, the reward model and DPO each turn their records into tensors and a step function; the rest
(seeded batches of the training and held-out tensors, the trainer, the tokenizer and world record
written beside the weights) is the same, so it lives here once. What SFT and DPO train from
their starting GPT is a ``Tune``: the whole GPT (``whole``), or an adapter around it that
``genlab.recipes.stages`` builds from ``genlab.adapt`` (which this layer does not import).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from genlab.core.batches import TensorBatchSource
from genlab.core.callbacks import Callback
from genlab.core.phases import StepFn
from genlab.core.train_config import TrainConfig
from genlab.core.trainer import Trainer
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import KIND
from genlab.nets.gpt import GPT


@dataclass(frozen=True)
class Tuned:
    """What a stage trains from its starting GPT: ``module`` is stepped and saved as a folder of
    ``kind`` (its ``config.to_dict()`` in ``config.json``); within ``reference()`` the GPT
    computes what it did before training (DPO's frozen reference); ``callbacks`` join the run."""

    module: nn.Module
    kind: str
    reference: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
    callbacks: tuple[Callback, ...] = ()


# the starting GPT and its folder -> what trains
Tune = Callable[[GPT, str], Tuned]


def whole(model: GPT, folder: str) -> Tuned:
    """Full fine-tuning: every weight trains and the run is a GPT folder."""
    return Tuned(model, KIND)


def fine_tuning(max_steps: int, lr: float, warmup_steps: int) -> TrainConfig:
    """A stage's trainer settings: 32 rows a step, no weight decay (a short fine-tune from a
    good start), held-out loss every 100 steps, one checkpoint kept (at the end)."""
    return TrainConfig(
        max_steps=max_steps,
        batch_size=32,
        lr=lr,
        warmup_steps=warmup_steps,
        weight_decay=0.0,
        eval_every=100,
        eval_batches=4,
        checkpoint_every=0,
        keep_last=1,
    )


def stage_trainer(
    model: nn.Module,
    step_fn: StepFn,
    train: tuple[Tensor, ...],
    held_out: tuple[Tensor, ...],
    config: TrainConfig,
    out: str | Path,
    kind: str,
    tokenizer: Tokenizer,
    block_size: int,
    extra_files: Mapping[str, bytes] | None = None,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
) -> Trainer:
    """A trainer over ``train`` (held-out loss on ``held_out``) writing a ``kind`` run folder
    that carries the tokenizer (for a context of ``block_size``) and ``extra_files``."""
    return Trainer(
        model,
        step_fn,
        TensorBatchSource(train, seed=config.seed),
        config,
        out,
        eval_data=TensorBatchSource(held_out, seed=config.seed + 1),
        model_kind=kind,
        model_config=model.config.to_dict(),  # type: ignore[operator]
        extra_files={**tokenizer.files(block_size), **(extra_files or {})},
        callbacks=callbacks,
        resume=resume,
    )
