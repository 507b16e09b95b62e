"""Editing a fact by fine-tuning one MLP's output matrix, with or without a norm constraint.

The baseline ROME is measured against (Meng et al., 2022), from Zhu et al. (2020, "Modifying
Memories in Transformer Models"): minimise the new object's negative log-likelihood after the
edit prompt, training only one layer's MLP output matrix. Unconstrained (``linf=None``), the
weights move as far as the loss asks, and the change spreads to every input that layer sees;
constrained (FT+L), each weight stays within ``linf`` of its original value (projected after
every step), which limits the damage and, as the paper found, also the edit's reach.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.nets.gpt import GPT


@dataclass
class FinetuneEditConfig:
    """One layer's MLP output matrix, trained for ``steps`` Adam steps."""

    layer: int = 1
    steps: int = 25
    lr: float = 5e-3
    linf: float | None = None  # FT+L: the largest change of any weight; None: unconstrained


@dataclass
class WeightDelta:
    """The change an edit made to one weight matrix, kept so the edit can be undone exactly."""

    layer: int
    delta: Tensor

    @torch.no_grad()
    def revert(self, model: GPT) -> None:
        weight = model.blocks[self.layer].mlp.proj.weight
        weight -= self.delta.to(weight)


def finetune_edit(
    model: GPT, prompts: Sequence[Sequence[int]], target: Sequence[int], cfg: FinetuneEditConfig
) -> WeightDelta:
    """Train the layer so that each prompt (ids) continues with ``target`` (ids); in place."""
    if not 0 <= cfg.layer < len(model.blocks):
        raise GenlabError(f"layer must be in 0..{len(model.blocks) - 1}, got {cfg.layer}")
    if not prompts or not target:
        raise GenlabError("an edit needs at least one prompt and a non-empty target")
    if cfg.linf is not None and cfg.linf <= 0:
        raise GenlabError(f"linf must be > 0 (or None for no constraint), got {cfg.linf}")
    device = model.wte.weight.device
    rows = [list(p) + list(target) for p in prompts]
    width = max(len(r) for r in rows) - 1
    inputs = torch.zeros(len(rows), width, dtype=torch.long)
    targets = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (row, p) in enumerate(zip(rows, prompts, strict=True)):
        inputs[i, : len(row) - 1] = torch.tensor(row[:-1])
        targets[i, len(p) - 1 : len(row) - 1] = torch.tensor(list(target))
    inputs, targets = inputs.to(device), targets.to(device)

    weight = model.blocks[cfg.layer].mlp.proj.weight
    original = weight.detach().clone()
    was_training = model.training
    model.eval()
    trainable = {id(weight)}
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(id(p) in trainable)
    optimizer = torch.optim.Adam([weight], lr=cfg.lr)
    try:
        for _ in range(cfg.steps):
            _, loss = model(inputs, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if cfg.linf is not None:
                with torch.no_grad():
                    weight.copy_(original + (weight - original).clamp(-cfg.linf, cfg.linf))
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)
    return WeightDelta(cfg.layer, (weight.detach() - original).cpu())
