"""Unlearning losses over per-example answer log-likelihoods ``log pi(y|x)`` (B,).

Each takes the summed log-probabilities of the answer tokens (``sequence_logprobs``), so the
three methods that TOFU compares (Maini et al., 2024, "TOFU: A Task of Fictitious Unlearning for
LLMs") differ in one line each:

- gradient ascent: maximise the forget answers' negative log-likelihood. Unbounded: the loss
  falls without end as ``log pi`` goes to minus infinity, which is why it ruins the model
  ("catastrophic collapse", Zhang et al., 2024).
- gradient difference: ascent on the forget set plus ordinary descent on a retain set
  (Liu et al., 2022, "Continual Learning and Private Unlearning").
- NPO (Zhang et al., 2024, "Negative Preference Optimization: From Catastrophic Collapse to
  Effective Unlearning"): DPO with only a rejected answer,
  ``-(2/beta) log sigmoid(-beta (log pi - log pi_ref))``. It is bounded below by 0, so its
  gradient fades once an answer is unlikely, and as ``beta -> 0`` its gradient is gradient
  ascent's.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def gradient_ascent(forget_logp: Tensor) -> Tensor:
    """Mean ``log pi(y|x)`` of the forget answers: minimising it raises their NLL."""
    return forget_logp.mean()


def retain_nll(retain_logp: Tensor) -> Tensor:
    """Mean negative log-likelihood of the retain answers: ordinary descent keeps them."""
    return -retain_logp.mean()


def gradient_difference(forget_logp: Tensor, retain_logp: Tensor, retain_weight: float) -> Tensor:
    """Gradient ascent on the forget answers plus ``retain_weight`` times descent on the retain."""
    return gradient_ascent(forget_logp) + retain_weight * retain_nll(retain_logp)


def npo(forget_logp: Tensor, ref_logp: Tensor, beta: float) -> Tensor:
    """NPO's loss, mean over the forget answers; ``ref_logp`` is the frozen model's ``log pi``.

    Equal to ``(2/beta) log 2`` where the model is the reference; its gradient with respect to
    each ``log pi`` is ``2 sigmoid(beta (log pi - log pi_ref)) / B``, which is gradient ascent's
    ``1 / B`` times a weight in (0, 2) that goes to 1 as ``beta -> 0``.
    """
    return -(2.0 / beta) * F.logsigmoid(-beta * (forget_logp - ref_logp)).mean()
