"""The one scoring function: log-probabilities of given tokens under a language model.

DPO compares sequence log-likelihoods under the policy and a frozen reference (Rafailov et al.,
2023); PPO needs per-token log-probabilities, entropies and the hidden states its value head
reads (Schulman et al., 2017); evaluation measures the KL to a reference; serving returns
``logprobs``. All of them call :func:`token_logprobs`, so a change in how a model is scored
(temperature, padding, positions) happens in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from genlab.nets.gpt import IGNORE_INDEX, positions_from_mask


@dataclass
class TokenScores:
    """Per-token results of :func:`token_logprobs`, each (B, T) except ``hidden`` (B, T, C)."""

    logprobs: Tensor  # log p(target | inputs so far); 0 where the target is IGNORE_INDEX
    entropy: Tensor | None = None  # of the next-token distribution at each position
    hidden: Tensor | None = None  # the final hidden states that predict each target


def token_logprobs(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    attention_mask: Tensor | None = None,
    temperature: float = 1.0,
    entropy: bool = False,
    hidden: bool = False,
) -> TokenScores:
    """Score ``targets`` (B, T), the next token after each position of ``inputs`` (B, T).

    ``attention_mask`` (B, T) marks real tokens of left-padded rows (positions then restart at
    each row's first token). Logits are divided by ``temperature``: PPO optimises the policy it
    samples from. ``model`` is called directly (``model(inputs, ...)``) so that a DDP-wrapped
    model synchronises its gradients.
    """
    positions = positions_from_mask(attention_mask) if attention_mask is not None else None
    out = model(inputs, attention_mask=attention_mask, positions=positions, return_hidden=hidden)
    logp_all = F.log_softmax(out[0].float() / temperature, dim=-1)
    scored = targets != IGNORE_INDEX
    picked = logp_all.gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1) * scored
    return TokenScores(
        logprobs=picked,
        entropy=-(logp_all.exp() * logp_all).sum(-1) if entropy else None,
        hidden=out[2] if hidden else None,
    )


def sequence_logprobs(model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
    """``log p(targets)`` summed over each row's scored tokens (B,): DPO's and the KL's unit."""
    return token_logprobs(model, inputs, targets).logprobs.sum(-1)
