"""PPO's math as small pure functions: the KL leash, rewards, GAE, the clipped losses.

Each is checked by hand in the tests. PPO (Schulman et al., 2017, "Proximal Policy Optimization
Algorithms") on a language model (Ziegler et al., 2019, "Fine-Tuning Language Models from Human
Preferences"; InstructGPT, Ouyang et al., 2022): every answer token gets ``-beta * KL`` to the
frozen reference, the last one adds the reward model's score; advantages come from generalised
advantage estimation (Schulman et al., 2016); the policy loss is the clipped surrogate and the
value loss is clipped around the rollout's values. Tensors are (B, T) over answer tokens with a
``mask`` of 1 on real tokens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over the positions where ``mask`` is 1 (all answer tokens of a batch)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """``x`` shifted and scaled to mean 0, std 1 over the masked positions (0 elsewhere)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor) -> Tensor:
    """Per-token KL estimate ``log pi - log pi_ref`` (k1) at the sampled tokens, 0 off ``mask``.

    Its expectation under the policy is KL(pi || pi_ref); summed over an answer it is the
    log-likelihood ratio of the whole answer, which is what Ziegler et al. penalise.
    """
    return (logprobs - ref_logprobs) * mask


def token_rewards(scores: Tensor, kl: Tensor, kl_coef: float, mask: Tensor) -> Tensor:
    """Per-token rewards: ``-kl_coef * kl`` everywhere, plus each answer's score (B,) at its last
    token (the reward model judges the whole answer once it is finished)."""
    rewards = -kl_coef * kl
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last] += scores.to(rewards.dtype)
    return rewards * mask


def gae(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over answer tokens (B, T); returns (advantages, returns).

    ``delta_t = r_t + gamma V_{t+1} - V_t`` and ``A_t = delta_t + gamma lam A_{t+1}``, where the
    value after an answer's last token is 0 (the episode ends). ``returns = A + V`` are the
    value function's targets. ``mask`` is 1 on answer tokens, which start at column 0.
    """
    B, T = rewards.shape
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(T)):
        alive = mask[:, t + 1] if t + 1 < T else torch.zeros_like(running)
        next_value = values[:, t + 1] * alive if t + 1 < T else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * alive * running
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def ppo_losses(
    logprobs: Tensor,
    old_logprobs: Tensor,
    values: Tensor,
    old_values: Tensor,
    advantages: Tensor,
    returns: Tensor,
    mask: Tensor,
    clip_range: float = 0.2,
    value_clip_range: float = 0.2,
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """PPO's clipped surrogate and clipped value loss, averaged over answer tokens.

    policy loss ``mean(max(-A r, -A clip(r, 1-eps, 1+eps)))`` with ``r = pi / pi_old``;
    value loss ``0.5 mean(max((V - R)^2, (V_clip - R)^2))`` with ``V_clip`` kept within
    ``value_clip_range`` of the rollout's value. The statistics: the fraction of tokens whose
    ratio was clipped, and the approximate KL(pi_old || pi) by the k3 estimator
    ``(r - 1) - log r`` (unbiased and never negative).
    """
    log_ratio = (logprobs - old_logprobs) * mask
    ratio = torch.exp(log_ratio)
    surrogate = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    policy_loss = masked_mean(torch.maximum(surrogate, clipped), mask)

    values_clipped = old_values + (values - old_values).clamp(-value_clip_range, value_clip_range)
    value_err = (values - returns) ** 2
    value_err_clipped = (values_clipped - returns) ** 2
    value_loss = 0.5 * masked_mean(torch.maximum(value_err, value_err_clipped), mask)

    with torch.no_grad():
        stats = {
            "clip_frac": masked_mean(((ratio - 1.0).abs() > clip_range).float(), mask),
            "value_clip_frac": masked_mean((value_err_clipped > value_err).float(), mask),
            "approx_kl": masked_mean((ratio - 1.0) - log_ratio, mask),
        }
    return policy_loss, value_loss, stats


class KLController:
    """The KL coefficient beta: fixed, or adapted towards a target KL (Ziegler et al., 2019).

    Adaptive: ``e = clip(KL / target - 1, -0.2, 0.2)`` and ``beta *= 1 + e * n / horizon`` after
    each batch of ``n`` answers: beta grows while the policy drifts further than the target from
    the reference and shrinks while it stays closer.
    """

    def __init__(self, init: float, target: float | None = None, horizon: int = 10_000) -> None:
        self.value = init
        self.target = target
        self.horizon = horizon

    def update(self, kl: float, n: int) -> None:
        if self.target is None:
            return
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n / self.horizon


class RunningMoments:
    """Running mean and standard deviation of a stream of scores (Chan et al.'s merge of batch
    moments), to normalise the reward model's scores."""

    def __init__(self) -> None:
        self.mean = 0.0
        self.var = 1.0
        self.count = 0

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 0.0))

    def update(self, x: Tensor) -> None:
        x = x.double()
        n, mean = x.numel(), x.mean().item()
        var = x.var(unbiased=False).item() if n > 1 else 0.0
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        self.mean += delta * n / total
        self.var = m2 / total
        self.count = total

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.mean) / max(self.std, 1e-6)

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.mean, self.var, self.count = state["mean"], state["var"], int(state["count"])
