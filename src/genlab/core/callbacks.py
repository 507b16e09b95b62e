"""Callbacks: what a training run does besides its steps, composed instead of subclassed.

A weight average (EMA), sample grids, evaluation hooks and adapter-only checkpoints are each a
:class:`Callback` given to the :class:`~genlab.core.trainer.Trainer`; any number combine, which
a chain of trainer subclasses cannot. A callback with state (an EMA's update count, PPO's KL
coefficient) returns it from :meth:`Callback.state_dict` as JSON: the trainer stores it in the
checkpoint's ``state.json`` under the callback's ``name`` and hands it back on resume, so a
resumed run continues exactly. Tensors a callback keeps (an EMA's shadow weights) it writes
itself in :meth:`Callback.on_checkpoint`, which runs before the checkpoint is published.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from genlab.core.distributed import dist_info
from genlab.core.io import atomic_save_tensors

if TYPE_CHECKING:
    from genlab.core.trainer import Trainer


class Callback:
    """A hook into the training loop; override what you need. Every rank calls every hook."""

    name = ""  # key of this callback's state in state.json; required when state_dict is used

    def on_start(self, trainer: Trainer) -> None:
        """After set-up and resume (``trainer.step`` is the step training starts from)."""

    def on_step_end(self, trainer: Trainer) -> None:
        """After each optimizer step (``trainer.step`` counts it)."""

    def on_evaluate(self, trainer: Trainer) -> Mapping[str, float] | None:
        """At each evaluation, after the evaluation loss; return metrics to log."""
        return None

    def on_checkpoint(self, trainer: Trainer) -> None:
        """Before checkpoint ``trainer.step`` is written: write this callback's own files."""

    def on_checkpoint_end(self, trainer: Trainer, path: Path) -> None:
        """After checkpoint ``trainer.step`` was written to ``path``."""

    def state_dict(self) -> dict[str, Any] | None:
        """JSON state saved with every checkpoint (``None``: nothing to save)."""
        return None

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (called on resume, before ``on_start``)."""


class EvalHook(Callback):
    """Call ``fn(model, step)`` at each evaluation (e.g. to sample text); log what it returns."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def on_evaluate(self, trainer: Trainer) -> Mapping[str, float] | None:
        return self.fn(trainer.model, trainer.step)


ADAPTER_FILE = "trainable.safetensors"


def trainable_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train (``requires_grad``), by name: an adapter without its base."""
    return {
        n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad
    }


class TrainableCheckpoint(Callback):
    """Write only the trainable parameters (an adapter, a soft prompt) beside each checkpoint,
    as ``RUN/checkpoints/step_N/trainable.safetensors`` and ``RUN/trainable.safetensors``: kilobytes
    per task where the full checkpoint is the whole base model."""

    def on_checkpoint_end(self, trainer: Trainer, path: Path) -> None:
        if not dist_info().is_main:
            return
        tensors = trainable_tensors(trainer.model)
        meta = {"kind": "trainable", "step": str(trainer.step)}
        atomic_save_tensors(path / ADAPTER_FILE, tensors, metadata=meta)
        atomic_save_tensors(trainer.run_dir / ADAPTER_FILE, tensors, metadata=meta)
