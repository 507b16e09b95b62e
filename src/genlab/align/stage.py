"""The shell every supervised stage of the recipe shares: tensors in, a trained run folder out.

SFT, the reward model and DPO each turn their records into tensors and a step function; the rest
(seeded batches of the training and held-out tensors, the trainer, the tokenizer and world record
written beside the weights) is the same, so it lives here once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import Tensor, nn

from genlab.core.batches import TensorBatchSource
from genlab.core.phases import StepFn
from genlab.core.train_config import TrainConfig
from genlab.core.trainer import Trainer
from genlab.data.tokenizer import Tokenizer


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
    extra_files: Mapping[str, bytes] | None = None,
    resume: bool = False,
) -> Trainer:
    """A trainer over ``train`` (held-out loss on ``held_out``) writing a ``kind`` run folder
    that carries the tokenizer and ``extra_files``."""
    return Trainer(
        model,
        step_fn,
        TensorBatchSource(train, seed=config.seed),
        config,
        out,
        eval_data=TensorBatchSource(held_out, seed=config.seed + 1),
        model_kind=kind,
        model_config=model.config.to_dict(),  # type: ignore[operator]
        extra_files={
            **tokenizer.files(model.config.block_size),  # type: ignore[union-attr]
            **(extra_files or {}),
        },
        resume=resume,
    )
