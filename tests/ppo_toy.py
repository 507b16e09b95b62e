"""The toy PPO task the PPO tests share: a reward a policy learns to game (say "e"), the gold
score that gaming hurts, held-out prompts, and the small, fast run settings."""

from __future__ import annotations

from typing import Any

HELDOUT = [f"say no {i}" for i in range(6)]


def says_e(prompts, responses):
    """A gameable reward: 1 when the answer contains the letter e (a byte token), else 0."""
    return [float("e" in r) for r in responses]


def shuns_e(prompts, responses):
    """The gold score that reward games: 1 without the letter e."""
    return [1.0 - s for s in says_e(prompts, responses)]


def toy_settings(policy: str, out: str, **kw: Any) -> dict[str, Any]:
    """PPOConfig settings of the toy run: at lr 2e-2 and no KL penalty the policy learns to say
    e within a few iterations and drifts 10+ nats from its start, so the guard is off unless a
    test turns it on."""
    return {
        "policy": policy,
        "reward": None,
        "out": out,
        "iterations": 8,
        "minibatch_size": 8,
        "ppo_epochs": 4,
        "lr": 2e-2,
        "value_lr": 1e-2,
        "kl_coef": 0.0,
        "max_kl": 0.0,
        "max_gap": 0.0,
        "keep": "last",
        "max_new_tokens": 8,
        "checkpoint_every": 0,
        "device": "cpu",
        "progress": False,
        "tensorboard": False,
        "plots": False,
        **kw,
    }
