"""The one scoring function: log-probabilities of given tokens under a language model.

DPO compares sequence log-likelihoods under the policy and a frozen reference (Rafailov et al.,
2023); PPO needs per-token log-probabilities, entropies and the hidden states its value head
reads (Schulman et al., 2017); evaluation measures the KL to a reference; serving returns
``logprobs``; Fast-DetectGPT (Bao et al., 2024) compares a text's log-likelihood with its mean and
variance under the model's own next-token distributions. All of them call :func:`token_logprobs`,
so a change in how a model is scored (temperature, padding, positions) happens in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.nets.gpt import IGNORE_INDEX, positions_from_mask


@dataclass
class TokenScores:
    """Per-token results of :func:`token_logprobs`, each (B, T) except ``hidden`` (B, T, C)."""

    logprobs: Tensor  # log p(target | inputs so far); 0 where the target is IGNORE_INDEX
    entropy: Tensor | None = None  # of the next-token distribution at each position
    variance: Tensor | None = None  # of log p(x) for x drawn from that distribution
    hidden: Tensor | None = None  # the final hidden states that predict each target


def token_logprobs(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    attention_mask: Tensor | None = None,
    temperature: float = 1.0,
    entropy: bool = False,
    variance: bool = False,
    hidden: bool = False,
) -> TokenScores:
    """Score ``targets`` (B, T), the next token after each position of ``inputs`` (B, T).

    ``attention_mask`` (B, T) marks real tokens of left-padded rows (positions then restart at
    each row's first token). Logits are divided by ``temperature``: PPO optimises the policy it
    samples from. ``entropy`` and ``variance`` are the mean and the variance of ``-log p(x)``
    for ``x`` drawn from each position's next-token distribution (padded positions included:
    mask them). ``model`` is called directly (``model(inputs, ...)``) so that a DDP-wrapped
    model synchronises its gradients.
    """
    positions = positions_from_mask(attention_mask) if attention_mask is not None else None
    out = model(inputs, attention_mask=attention_mask, positions=positions, return_hidden=hidden)
    logp_all = F.log_softmax(out[0].float() / temperature, dim=-1)
    scored = targets != IGNORE_INDEX
    picked = logp_all.gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1) * scored
    scores = TokenScores(logprobs=picked, hidden=out[2] if hidden else None)
    if entropy or variance:
        p = logp_all.exp()
        mean = (p * logp_all).sum(-1)  # E[log p(x)] over the distribution: minus its entropy
        scores.entropy = -mean if entropy else None
        scores.variance = (p * (logp_all - mean[..., None]) ** 2).sum(-1) if variance else None
    return scores


def sequence_logprobs(model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
    """``log p(targets)`` summed over each row's scored tokens (B,): DPO's and the KL's unit."""
    return token_logprobs(model, inputs, targets).logprobs.sum(-1)


@torch.inference_mode()
def continuation_logprobs(
    model: nn.Module,
    contexts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    batch_size: int = 64,
) -> list[Tensor]:
    """``log p(continuation token | context, earlier continuation tokens)`` for each pair, one
    tensor per pair (lm-evaluation-harness's ``loglikelihood``): what probes, minimal pairs and
    multiple-choice questions compare. A pair longer than the context window loses its oldest
    context tokens (a continuation longer than the window is scored on its last ``block_size``
    tokens); rows are right-padded, which a causal model never attends to."""
    if len(contexts) != len(continuations):
        raise ValueError(f"{len(contexts)} contexts for {len(continuations)} continuations")
    block = model.config.block_size
    device = next(model.parameters()).device
    out: list[Tensor] = []
    for start in range(0, len(contexts), batch_size):
        pairs = list(
            zip(
                contexts[start : start + batch_size],
                continuations[start : start + batch_size],
                strict=True,
            )
        )
        seqs = [(list(c) + list(x))[-(block + 1) :] for c, x in pairs]
        width = max(len(s) for s in seqs) - 1
        inputs = torch.zeros(len(seqs), width, dtype=torch.long)
        targets = torch.full((len(seqs), width), IGNORE_INDEX, dtype=torch.long)
        scored = [min(len(x), len(s) - 1) for s, (_, x) in zip(seqs, pairs, strict=True)]
        for i, (seq, n) in enumerate(zip(seqs, scored, strict=True)):
            inputs[i, : len(seq) - 1] = torch.tensor(seq[:-1])
            targets[i, len(seq) - 1 - n : len(seq) - 1] = torch.tensor(seq[len(seq) - n :])
        scores = token_logprobs(model, inputs.to(device), targets.to(device)).logprobs.cpu()
        out += [
            scores[i, len(s) - 1 - n : len(s) - 1]
            for i, (s, n) in enumerate(zip(seqs, scored, strict=True))
        ]
    return out
