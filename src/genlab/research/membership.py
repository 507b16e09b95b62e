"""Loss-based membership inference: was this example in the training set?

A model fits what it was trained on better than what it was not, so the per-example loss alone
is an attack (Yeom et al., 2018, "Privacy Risk in Machine Learning: Analyzing the Connection to
Overfitting"): guess "member" when the loss is below a threshold. TOFU (Maini et al., 2024)
reports it against unlearned models: after a perfect unlearning the forget set's losses look
like those of examples never seen, and the attack's AUC between the two is 0.5. This module
gives the losses; the AUC is ``genlab.metrics.roc.auroc(-member_losses, -non_member_losses)``
(a lower loss says member), computed where experiments may import metrics.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from genlab.core.errors import GenlabError
from genlab.methods.autoregressive.scoring import continuation_logprobs

Pair = tuple[Sequence[int], Sequence[int]]  # (context ids, answer ids)


def answer_nll(model: nn.Module, pairs: Sequence[Pair], batch_size: int = 64) -> Tensor:
    """Per-token negative log-likelihood of each answer given its context (N,), in eval mode."""
    if any(len(answer) == 0 for _, answer in pairs):
        raise GenlabError("an example has an empty answer: there is nothing to score")
    was_training = model.training
    model.eval()
    try:
        scores = continuation_logprobs(
            model, [c for c, _ in pairs], [a for _, a in pairs], batch_size
        )
    finally:
        model.train(was_training)
    return torch.stack([-s.mean() for s in scores]) if scores else torch.empty(0)


def membership_losses(
    model: nn.Module, members: Sequence[Pair], non_members: Sequence[Pair]
) -> tuple[Tensor, Tensor]:
    """The attack's scores: answer NLLs of the members and of the non-members."""
    if not members or not non_members:
        raise GenlabError("membership inference needs at least one member and one non-member")
    return answer_nll(model, members), answer_nll(model, non_members)
