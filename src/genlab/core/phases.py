"""Several losses and optimizers in one training step: the trainer's phases.

A GAN steps its discriminator, then its generator, on each batch (Goodfellow et al., 2014); PPO
steps a policy and a value head on one loss with two learning rates (Schulman et al., 2017). Each
is a list of :class:`Phase`s over named :class:`OptimizerGroup`s, and the trainer runs every phase
with the same accumulation, fp16 loss scaling, clipping, DDP and checkpointing as a plain run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from genlab.core.batches import Batch

StepFn = Callable[[nn.Module, Batch], tuple[torch.Tensor, Mapping[str, Any]]]


@dataclass(frozen=True)
class OptimizerGroup:
    """One optimizer of a run: AdamW over ``module`` (a submodule's name; "" is the whole
    model), with its own learning rate and weight decay (``None``: the run's)."""

    module: str = ""
    lr: float | None = None
    weight_decay: float | None = None


@dataclass(frozen=True)
class Phase:
    """One loss and the optimizers it steps. Most methods have one phase; a GAN has two (the
    discriminator's, then the generator's); PPO one phase stepping the policy's and the value
    head's optimizers. Each phase runs its own forward/backward over the step's micro-batches,
    unscales, clips and steps, so every phase gets accumulation, fp16 loss scaling and DDP."""

    step_fn: StepFn
    optimizers: tuple[str, ...] = ("optimizer",)
    name: str = ""  # prefixes the phase's loss and metrics when there are several phases
