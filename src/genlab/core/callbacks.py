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
    (a run cut off mid-schedule would be compared at a high learning rate). Every ``probe``
    steps the estimate is renewed from all the time spent so far (evaluations, sample grids
    and checkpoints included). Methods compared "at the same training time" each get one.

    The time spent and the decided step count are saved with each checkpoint, so a resumed run
    spends only what is left of the budget. A process's first step (warm-up) is not counted.
    The number of steps depends on the machine's speed: give ``max_steps`` alone for a run
    that must repeat exactly elsewhere."""

    name = "time_budget"

    def __init__(
        self, seconds: float, probe: int = 10, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.seconds, self.probe, self.clock = seconds, probe, clock
        self.steps: int | None = None  # the decided max_steps
        self.spent_before = 0.0  # seconds spent by earlier processes of this run
        self._tic: float | None = None
        self._timed_from = 0
        self._limit = 0

    def on_start(self, trainer: Trainer) -> None:
        self._limit = trainer.config.max_steps  # the budget only ever lowers it
        if self.steps is not None:
            trainer.config.max_steps = self.steps

    def on_step_end(self, trainer: Trainer) -> None:
        if self._tic is None:  # the first step pays for warm-up: the clock starts after it
            self._tic, self._timed_from = self.clock(), trainer.step
        elif (trainer.step - self._timed_from) % self.probe == 0:
            spent = self.clock() - self._tic
            per_step = spent / (trainer.step - self._timed_from)
            left = max(self.seconds - self.spent_before - spent, 0.0)
            fit = trainer.step + int(left / per_step) if per_step > 0 else self._limit
            self.steps = max(trainer.step, min(self._limit, fit))
            trainer.config.max_steps = self.steps
        if trainer.step >= trainer.config.max_steps:
            trainer.request_stop()

    def state_dict(self) -> dict[str, Any] | None:
        spent = 0.0 if self._tic is None else self.clock() - self._tic
        return {"steps": self.steps, "spent": self.spent_before + spent}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.steps, self.spent_before = state.get("steps"), float(state.get("spent", 0.0))
