"""AdamW with decay on matrices only, and the warmup + cosine learning-rate schedule.

AdamW (Loshchilov & Hutter, 2019, "Decoupled Weight Decay Regularization") applies weight decay
directly to the weights instead of through the gradient. As in GPT-2/3 and nanoGPT, only tensors
with two or more dimensions (matmul and embedding weights, conv kernels) are decayed: biases and
normalisation gains are few, and pulling them to zero only hurts.

The schedule is a linear warmup (Goyal et al., 2017) followed by a cosine decay to a floor
(Loshchilov & Hutter, 2017, SGDR; the GPT-3 and Chinchilla recipe). It is a pure function of the
step, so a resumed run recomputes it and needs no scheduler state; set it each step with
:func:`set_lr`. Everything here takes plain modules and optimizers, so a loop with several
networks (a GAN's generator and discriminator) builds one optimizer per network.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

_FUSED_DEVICES = ("cuda", "cpu", "mps", "xpu")


def param_groups(
    params: nn.Module | Iterable[tuple[str, nn.Parameter]], weight_decay: float
) -> list[dict]:
    """Two AdamW groups: tensors with >= 2 dims get ``weight_decay``, the rest none.

    ``params`` is a module or ``named_parameters()``-style pairs; frozen parameters are left out.
    """
    named = params.named_parameters() if isinstance(params, nn.Module) else params
    decay, no_decay = [], []
    for _, p in named:
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_adamw(
    params: nn.Module | Iterable[tuple[str, nn.Parameter]],
    lr: float,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    device_type: str = "cpu",
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`, using the fused kernel where this build has one.

    ``fused=None`` picks it on devices with a fused AdamW and falls back to the multi-tensor
    (``foreach``) path elsewhere; pass ``fused=False`` for sharded (FSDP) parameters.
    """
    groups = param_groups(params, weight_decay)
    if fused is None:
        fused = device_type in _FUSED_DEVICES
    kwargs = {"fused": True} if fused else {"foreach": True}
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        if not fused:
            raise
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=True)


def warmup_cosine(step: int, max_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """LR multiplier for the 0-based optimizer ``step``: linear warmup, then cosine to ``min_ratio``.

    Step ``warmup_steps - 1`` reaches 1.0; step ``max_steps`` (one past the last) reaches
    ``min_ratio``; past it the floor holds, so a run extended by resuming keeps a sane rate.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate (the schedule is recomputed each step, not stored)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
