"""RLHF with PPO: step (4) of the ChatGPT recipe, optimising a policy against a reward model.

InstructGPT (Ouyang et al., 2022, "Training language models to follow instructions with human
feedback") and before it Ziegler et al. (2019, "Fine-Tuning Language Models from Human
Preferences") fine-tune the SFT model as a policy with PPO (Schulman et al., 2017, "Proximal
Policy Optimization Algorithms"). One iteration:

1. **Rollout** (:mod:`genlab.align.rollout`): sample answers to a batch of prompts from the
   current policy, score them with the reward model, recompute log-probabilities and values.
2. **Rewards** (:mod:`genlab.align.ppo_losses`): each answer token gets ``-beta * KL`` to the
   frozen reference (the "KL leash" that keeps the policy a language model and stops it from
   exploiting the reward model), and the last token adds the reward model's score, normalised
   by a running mean and standard deviation so that ``beta`` means the same thing whatever the
   reward model's scale. ``beta`` is fixed, or adapted towards a target KL (Ziegler et al.).
3. **Advantages** by generalised advantage estimation, whitened over the rollout.
4. **Optimisation**: ``ppo_epochs`` passes of minibatches over the rollout, minimising PPO's
   clipped surrogate plus ``vf_coef`` times the clipped value loss.

The optimisation runs on the shared :class:`~genlab.core.trainer.Trainer`: a trainer step is one
minibatch, the batch source is the rollout buffer (:class:`Rollouts`, which collects a new
rollout when an iteration begins), and the policy and value head are two optimizer groups of
one phase, so PPO gets fp16 loss scaling, exact resume and DDP like every other method. The
buffer is also a trainer callback: at each iteration's end it logs the rollout's statistics,
adapts ``beta`` and writes ``samples.jsonl``; its state (``beta``, the reward moments) travels in
every checkpoint. A second callback (:mod:`genlab.align.ppo_monitor`) scores the policy's
answers to held-out prompts every few iterations with the reward and a gold function, and stops
the run when it drifts too far or games the reward. Checkpoints fall on iteration boundaries, so
a resumed run collects the next rollout from the same weights with the same seed: it continues
exactly. Under torchrun every process samples the whole rollout (same seed, same answers) and
trains on its share of each minibatch.

The run folder's model is the policy with its value head (kind ``ppo``, see
:mod:`genlab.align.policy`); ``genlab chat RUN`` opens the policy.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from genlab.align.policy import KIND, PolicyValue
from genlab.align.ppo_config import PPOConfig
from genlab.align.ppo_losses import masked_mean, ppo_losses
from genlab.align.ppo_monitor import HeldoutMonitor
from genlab.align.reward import load_reward_model
from genlab.align.rollout import RewardFn, Rollouts, make_queries
from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.core.io import read_json
from genlab.core.phases import OptimizerGroup, Phase
from genlab.core.run import check_unchanged
from genlab.core.trainer import Trainer
from genlab.data.records import Prompt
from genlab.methods.autoregressive.checkpoint import load_gpt

SAMPLES_FILE = "samples.jsonl"
SETTINGS_FILE = "ppo.json"  # the PPO settings of a run, checked on resume
# Settings that decide which prompts and samples each iteration draws: a resumed run keeps them.
DATA_FIELDS = ("policy", "rollout_size", "samples_per_prompt", "minibatch_size", "ppo_epochs")


def make_ppo_step(cfg: PPOConfig):
    """The trainer's step function: PPO's clipped losses on one minibatch of the rollout."""

    def ppo_step(model: nn.Module, batch: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        logprobs, entropy, values = model(
            batch["ids"], batch["attention_mask"], batch["start"], cfg.temperature
        )
        mask = batch["mask"]
        policy_loss, value_loss, stats = ppo_losses(
            logprobs,
            batch["logprobs"],
            values,
            batch["values"],
            batch["advantages"],
            batch["returns"],
            mask,
            cfg.clip_range,
            cfg.value_clip_range,
        )
        return policy_loss + cfg.vf_coef * value_loss, {
            "policy_loss": policy_loss.detach(),
            "value_loss": value_loss.detach(),
            "train_entropy": masked_mean(entropy.detach(), mask),
            **stats,
        }

    return ppo_step


def reward_model_fn(folder: str, device: torch.device) -> RewardFn:
    """A reward function that scores with the reward model saved in ``folder``."""
    model = load_reward_model(folder, device).requires_grad_(False)

    def score(prompts: list[Prompt], responses: list[str]) -> list[float]:
        return model.score(prompts, responses)

    return score


def _check_resume(cfg: PPOConfig, resume: bool) -> None:
    path = Path(cfg.out) / SETTINGS_FILE
    if not resume or not path.is_file():
        return
    kept = {name: getattr(cfg, name) for name in DATA_FIELDS}
    check_unchanged(path.parent, read_json(path, "PPO settings"), kept)


def ppo(
    cfg: PPOConfig,
    prompts: Sequence[Prompt],
    extra_files: Mapping[str, bytes] | None = None,
    resume: bool = False,
    *,
    reward_fn: RewardFn | None = None,
    heldout_prompts: Sequence[Prompt] = (),
    gold_fn: RewardFn | None = None,
) -> dict[str, float]:
    """Tune the policy in ``cfg.policy`` by PPO on ``prompts`` into the run folder ``cfg.out``.

    The reward is the reward model in ``cfg.reward``, or ``reward_fn(prompts, responses)`` (a
    score per answer) when given. Every ``cfg.eval_every`` iterations the policy answers
    ``heldout_prompts``, scored by the reward and by ``gold_fn`` (same signature; None: no gold
    score), and the guard (``cfg.max_kl``, ``cfg.max_gap``) may end the run early: see
    :mod:`genlab.align.ppo_monitor`. ``resume`` continues the run from its newest checkpoint.
    Returns the trainer's last metrics and the last iteration's rollout statistics.
    """
    cfg.validate()
    _check_resume(cfg, resume)
    train = cfg.train_config()
    device = pick_device(cfg.device)
    gpt, tokenizer = load_gpt(cfg.policy, device)
    reference = copy.deepcopy(gpt).eval().requires_grad_(False)
    model = PolicyValue.from_gpt(gpt)
    if reward_fn is None:
        if not cfg.reward:
            raise GenlabError("no reward: give a reward model run folder (--reward)")
        reward_fn = reward_model_fn(cfg.reward, device)
    rollouts = Rollouts(
        cfg,
        model,
        reference,
        tokenizer,
        make_queries(tokenizer, prompts),
        reward_fn,
        Path(cfg.out) / SAMPLES_FILE,
    )
    monitor = HeldoutMonitor(rollouts, heldout_prompts, gold_fn, Path(cfg.out))
    settings = json.dumps(dataclasses.asdict(cfg), indent=2).encode()
    trainer = Trainer(
        model,
        [Phase(make_ppo_step(cfg), optimizers=("policy", "value"))],
        rollouts,
        train,
        cfg.out,
        model_kind=KIND,
        model_config=model.config.to_dict(),
        extra_files={
            **tokenizer.files(model.config.block_size),
            SETTINGS_FILE: settings,
            **(extra_files or {}),
        },
        callbacks=[rollouts, monitor],  # the monitor reads the rollout's KL: after it
        optimizers={
            "policy": OptimizerGroup("policy"),
            "value": OptimizerGroup("value_head", lr=cfg.value_lr),
        },
        resume=resume,
    )
    metrics = trainer.fit()
    return {**metrics, **rollouts.last, "step": float(trainer.step // cfg.steps_per_iteration)}
