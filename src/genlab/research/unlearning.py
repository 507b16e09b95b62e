"""Machine unlearning: make a trained model forget chosen examples without retraining it.

Retraining without the forget set is the exact answer and costs a whole training run; TOFU
(Maini et al., 2024, "TOFU: A Task of Fictitious Unlearning for LLMs") measures how close a few
steps of fine-tuning get. Each step reads a batch of forget examples, and for the methods that
keep knowledge a batch of retain examples, and lowers one of the losses of
:mod:`genlab.research.unlearning_losses` on the answers' log-likelihoods:

- ``ga``: gradient ascent on the forget answers (retain set unused);
- ``graddiff``: gradient ascent on the forget answers plus ``retain_weight`` times descent on
  the retain answers;
- ``npo``: negative preference optimisation (Zhang et al., 2024) against the model as it was
  before the first step, plus ``retain_weight`` times the retain answers' NLL (their NPO-RT;
  ``retain_weight=0`` is plain NPO). The reference's log-likelihoods are computed once before
  training, which is what a frozen copy would give, without the copy.

An example is a pair (context ids, answer ids); only the answer's tokens are scored, through the
one scorer (``sequence_logprobs``). ``layers`` restricts training to the parameters whose names
match (``blocks.3.mlp`` or ``blocks.3.mlp.fc.weight``): the others get ``requires_grad=False``,
are outside the optimizer and stay bit-identical. Dropout is off (eval mode) so that the model
and its reference are scored alike, and the batches are a seeded draw: the same seed gives the
same weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from genlab.core.errors import GenlabError
from genlab.methods.autoregressive.scoring import sequence_logprobs
from genlab.nets.gpt import GPT, IGNORE_INDEX
from genlab.research.membership import Pair
from genlab.research.unlearning_losses import gradient_ascent, gradient_difference, npo, retain_nll

METHODS = ("ga", "graddiff", "npo")


@dataclass
class UnlearnConfig:
    """Which loss, how long, and which parameters may change."""

    # the defaults are NPO's setting chosen in docs/experiments/unlearning.md
    method: str = "npo"  # ga | graddiff | npo
    steps: int = 100  # optimizer steps
    lr: float = 1e-4  # AdamW learning rate, constant, no weight decay
    batch_size: int = 8  # forget (and retain) examples per step
    beta: float = 3.0  # NPO's inverse temperature: small behaves like gradient ascent
    retain_weight: float = 4.0  # weight of the retain NLL (graddiff, npo)
    layers: tuple[str, ...] | None = None  # parameter names or prefixes to train; None = all
    grad_clip: float = 1.0  # gradient norm clip; 0 disables
    seed: int = 0  # draws the batches

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise GenlabError(
                f"unknown unlearning method '{self.method}': use {' or '.join(METHODS)}"
            )
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise GenlabError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.beta <= 0:
            raise GenlabError(f"lr and beta must be > 0, got lr={self.lr}, beta={self.beta}")
        if self.retain_weight < 0 or self.grad_clip < 0:
            raise GenlabError("retain_weight and grad_clip must be >= 0")

    @property
    def uses_retain(self) -> bool:
        return self.method != "ga" and self.retain_weight > 0


def trainable_parameters(model: nn.Module, layers: Sequence[str] | None) -> list[nn.Parameter]:
    """The parameters named by ``layers`` (a name, or a prefix ending at a dot), or all of them.

    A tied tensor (the embedding and the output layer) is trained when either of its names
    matches."""
    named = list(model.named_parameters(remove_duplicate=False))
    if layers is None:
        return list(dict.fromkeys(p for _, p in named))
    chosen: list[nn.Parameter] = []
    for layer in layers:
        hits = [p for n, p in named if n == layer or n.startswith(layer + ".")]
        if not hits:
            raise GenlabError(
                f"layer '{layer}' matches no parameter of the model: give a parameter name or "
                f"a prefix of one ending at a dot (names look like '{named[len(named) // 2][0]}')"
            )
        chosen += hits
    return list(dict.fromkeys(chosen))


def pack(pairs: Sequence[Pair], block_size: int) -> tuple[Tensor, Tensor]:
    """Right-padded (inputs, targets) whose targets are ``IGNORE_INDEX`` except on each answer;
    a pair longer than the context keeps its last ``block_size + 1`` tokens."""
    if any(len(answer) == 0 for _, answer in pairs):
        raise GenlabError("an example has an empty answer: there is nothing to unlearn")
    seqs = [(list(c) + list(a))[-(block_size + 1) :] for c, a in pairs]
    width = max(len(s) for s in seqs) - 1
    inputs = torch.zeros(len(seqs), width, dtype=torch.long)
    targets = torch.full((len(seqs), width), IGNORE_INDEX, dtype=torch.long)
    for i, (seq, (_, answer)) in enumerate(zip(seqs, pairs, strict=True)):
        n = min(len(answer), len(seq) - 1)
        inputs[i, : len(seq) - 1] = torch.tensor(seq[:-1])
        targets[i, len(seq) - 1 - n : len(seq) - 1] = torch.tensor(seq[-n:])
    return inputs, targets


def _batches(n: int, size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Rows of a seeded reshuffle per pass: all ``n`` when ``n <= size``, else full batches."""
    while True:
        order = torch.randperm(n, generator=generator)
        if n <= size:
            yield order
            continue
        for start in range(0, n - size + 1, size):
            yield order[start : start + size]


def _answer_logprobs(model: nn.Module, data: tuple[Tensor, Tensor], rows: Tensor) -> Tensor:
    """Summed answer log-probabilities of ``rows``, cut to the batch's last scored column."""
    inputs, targets = data[0][rows], data[1][rows]
    end = int((targets != IGNORE_INDEX).any(0).nonzero().max()) + 1
    device = next(model.parameters()).device
    return sequence_logprobs(model, inputs[:, :end].to(device), targets[:, :end].to(device))


def _loss(
    cfg: UnlearnConfig, forget_logp: Tensor, ref_logp: Tensor, retain_logp: Tensor | None
) -> Tensor:
    """The method's loss on one batch; ``retain_logp`` is None when the retain set is unused."""
    if cfg.method == "graddiff" and retain_logp is not None:
        return gradient_difference(forget_logp, retain_logp, cfg.retain_weight)
    if cfg.method == "npo":
        loss = npo(forget_logp, ref_logp.to(forget_logp.device), cfg.beta)
    else:
        loss = gradient_ascent(forget_logp)
    return loss if retain_logp is None else loss + cfg.retain_weight * retain_nll(retain_logp)


def unlearn(
    model: GPT,
    forget: Sequence[Pair],
    retain: Sequence[Pair],
    cfg: UnlearnConfig,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Fine-tune ``model`` in place to forget ``forget`` (keeping ``retain`` where the method
    uses it); one record per step (loss, batch log-likelihoods), also passed to ``on_step``."""
    if not forget:
        raise GenlabError("the forget set is empty: nothing to unlearn")
    if cfg.uses_retain and not retain:
        raise GenlabError(
            f"{cfg.method} needs a retain set (or retain_weight=0); the retain set is empty"
        )
    params = trainable_parameters(model, cfg.layers)
    block = model.config.block_size
    forget_data = pack(forget, block)
    retain_data = pack(retain, block) if cfg.uses_retain else None
    was_training = model.training
    flags = {p: p.requires_grad for p in model.parameters()}
    model.eval()
    generator = torch.Generator().manual_seed(cfg.seed)
    forget_rows = _batches(len(forget), cfg.batch_size, generator)
    retain_rows = _batches(len(retain), cfg.batch_size, generator) if retain_data else None
    with torch.no_grad():
        chunks = torch.arange(len(forget)).split(64)
        reference = torch.cat([_answer_logprobs(model, forget_data, c) for c in chunks]).cpu()
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        history: list[dict[str, Any]] = []
        for step in range(cfg.steps):
            rows = next(forget_rows)
            forget_logp = _answer_logprobs(model, forget_data, rows)
            retain_logp = None
            if retain_data is not None and retain_rows is not None:
                retain_logp = _answer_logprobs(model, retain_data, next(retain_rows))
            loss = _loss(cfg, forget_logp, reference[rows], retain_logp)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            record: dict[str, Any] = {
                "step": step + 1,
                "loss": loss.item(),
                "forget_logp": forget_logp.mean().item(),
            }
            if retain_logp is not None:
                record["retain_logp"] = retain_logp.mean().item()
            history.append(record)
            if on_step is not None:
                on_step(record)
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
        model.train(was_training)
    return history
