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

import time
from collections.abc import Callable, Mapping
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


class TimeBudget(Callback):
    """Fit the run into ``seconds`` of training: after ``probe`` steps, time them and lower
    ``max_steps`` to the steps that fit, so the learning-rate schedule decays over the budget
    (a run cut off mid-schedule would be compared at a high learning rate). Methods compared
    "at the same training time" each get one. The decided step count is saved with each
    checkpoint, so a resumed run keeps it; the number depends on the machine's speed, so give
    ``max_steps`` alone for a run that must repeat exactly elsewhere."""

    name = "time_budget"

    def __init__(
        self, seconds: float, probe: int = 10, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.seconds, self.probe, self.clock = seconds, probe, clock
        self.steps: int | None = None  # the decided max_steps
        self._tic = 0.0
        self._first = 0

    def on_start(self, trainer: Trainer) -> None:
        if self.steps is not None:
            trainer.config.max_steps = self.steps
        self._first = trainer.step

    def on_step_end(self, trainer: Trainer) -> None:
        done = trainer.step - self._first
        if self.steps is None and done == 1:  # the first step pays for warm-up; time the rest
            self._tic = self.clock()
        elif self.steps is None and done == 1 + self.probe:
            per_step = (self.clock() - self._tic) / self.probe
            fit = trainer.step + int(max(self.seconds - (1 + self.probe) * per_step, 0) / per_step)
            self.steps = max(trainer.step, min(trainer.config.max_steps, fit))
            trainer.config.max_steps = self.steps
        if trainer.step >= trainer.config.max_steps:
            trainer.request_stop()

    def state_dict(self) -> dict[str, Any] | None:
        return {"steps": self.steps}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.steps = state.get("steps")
