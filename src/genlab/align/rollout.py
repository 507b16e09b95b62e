"""Rollouts: answers sampled from the policy, scored, recomputed, and served to PPO's trainer.

One rollout: sample answers to a batch of prompts from the current policy (batched
:func:`~genlab.methods.autoregressive.decoding.generate`; the sampler's raw log-probabilities are
kept), score each (prompt, answer) with the reward function, and recompute with one full forward
pass, dropout off, the policy's log-probabilities and values and the frozen reference's
log-probabilities. Recomputing makes PPO's ratio start at 1 in the first update: the sampler's
incremental, KV-cached numbers differ from a full forward's in the last bits.

:class:`Rollouts` is the buffer a PPO run trains from: the trainer's batch source (it collects an
iteration's rollout on its first minibatch, then serves seeded minibatch orders over it) and a
callback (at an iteration's end it logs the rollout, adapts the KL coefficient, writes samples).
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from genlab.align.policy import PolicyValue, answer_logprobs
from genlab.align.ppo_config import PPOConfig
from genlab.align.ppo_losses import (
    KLController,
    RunningMoments,
    gae,
    kl_penalty,
    masked_mean,
    masked_whiten,
    token_rewards,
)
from genlab.core.callbacks import Callback
from genlab.core.device import autocast
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes
from genlab.core.trainer import Trainer
from genlab.data.records import Prompt, prompt_messages
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.decoding import generate
from genlab.methods.autoregressive.padding import left_pad, pad_right
from genlab.nets.gpt import GPT

RewardFn = Callable[[list[Prompt], list[str]], Sequence[float]]


@dataclass(frozen=True)
class Query:
    """A prompt as the reward function sees it (a user message or a conversation) and as the
    policy sees it (chat-template ids ending with ``<|assistant|>``)."""

    prompt: Prompt
    ids: tuple[int, ...]


@dataclass
class Rollout:
    """A batch of sampled answers with everything PPO needs, answer tokens in columns
    ``start:`` of ``ids`` and in the (B, T) per-token tensors (``mask`` 1 on real tokens)."""

    prompts: list[Prompt]
    responses: list[str]
    finish_reasons: list[str]
    ids: Tensor  # (B, start + T): left-padded prompts, right-padded answers
    attention_mask: Tensor
    start: int
    mask: Tensor  # (B, T) float
    sample_logprobs: Tensor  # the sampler's raw log-probabilities (temperature 1)
    logprobs: Tensor  # recomputed by a full forward, dropout off, at the sampling temperature
    ref_logprobs: Tensor
    values: Tensor
    entropy: Tensor
    scores: Tensor  # (B,) raw reward model scores

    def __len__(self) -> int:
        return len(self.prompts)


def make_queries(tokenizer: Tokenizer, prompts: Sequence[Prompt]) -> list[Query]:
    """Queries from user messages (strings) or conversations that end with a user turn."""
    queries = []
    for prompt in prompts:
        messages = prompt_messages(prompt)
        if messages[-1].get("role") != "user":
            raise GenlabError("a prompt conversation must end with a user message")
        queries.append(Query(prompt=prompt, ids=tuple(tokenizer.render_prompt(messages))))
    return queries


def _chunks(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


@torch.no_grad()
def collect_rollout(
    model: PolicyValue,
    reference: GPT,
    tokenizer: Tokenizer,
    queries: Sequence[Query],
    reward_fn: RewardFn,
    *,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    samples_per_prompt: int = 1,
    seed: int = 0,
    chunk_size: int = 8,
    precision: str = "fp32",
) -> Rollout:
    """Sample answers to ``queries`` from ``model.policy``, score them, and recompute
    log-probabilities (policy and reference), entropies and values with full forward passes of
    ``chunk_size`` answers."""
    device = model.policy.wte.weight.device
    was_training = model.training
    model.eval()
    with autocast(device, precision):
        gens = generate(
            model.policy,
            [list(q.ids) for q in queries],
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            stop=list(tokenizer.stop_ids),
            seed=seed,
            tokenizer=tokenizer,
            num_samples=samples_per_prompt,
        )
    prompts = [q.prompt for q in queries for _ in range(samples_per_prompt)]
    responses = [g.text or "" for g in gens]
    scores = torch.as_tensor([float(s) for s in reward_fn(prompts, responses)], dtype=torch.float)
    if scores.shape != (len(gens),):
        raise GenlabError(
            f"the reward function must return one finite score per answer: {len(gens)} answers, "
            f"{scores.numel()} scores"
        )
    if not bool(torch.isfinite(scores).all()):
        raise GenlabError("the reward function returned a non-finite score")

    # Left-padded prompts ending at column ``start``, then right-padded answers.
    prompt_ids, prompt_mask = left_pad([g.prompt for g in gens], tokenizer.pad_id)
    start = prompt_ids.shape[1]
    answers = [g.tokens for g in gens]
    lengths = torch.tensor([len(a) for a in answers])
    mask = (torch.arange(int(lengths.max())) < lengths[:, None]).float()
    ids = torch.cat([prompt_ids, pad_right(answers, tokenizer.pad_id, mask.shape[1])], 1)
    attention = torch.cat([prompt_mask, mask.long()], 1)
    sample_logprobs = torch.zeros_like(mask)
    for i, g in enumerate(gens):
        sample_logprobs[i, : len(g.tokens)] = torch.tensor(g.logprobs)
    ids, attention, mask = ids.to(device), attention.to(device), mask.to(device)

    logprobs, ref_logprobs, values, entropy = [], [], [], []
    with autocast(device, precision):
        for rows in _chunks(len(gens), chunk_size):
            lp, ent, val = model(ids[rows], attention[rows], start, temperature)
            ref_lp, _, _ = answer_logprobs(
                reference, ids[rows], attention[rows], start, temperature
            )
            logprobs.append(lp)
            entropy.append(ent)
            values.append(val)
            ref_logprobs.append(ref_lp)
    model.train(was_training)
    return Rollout(
        prompts=prompts,
        responses=responses,
        finish_reasons=[g.finish_reason or "length" for g in gens],
        ids=ids,
        attention_mask=attention,
        start=start,
        mask=mask,
        sample_logprobs=sample_logprobs.to(device) * mask,
        logprobs=torch.cat(logprobs) * mask,
        ref_logprobs=torch.cat(ref_logprobs) * mask,
        values=torch.cat(values).float() * mask,
        entropy=torch.cat(entropy) * mask,
        scores=scores.to(device),
    )


def batch_queries(queries: Sequence[Query], iteration: int, n: int, seed: int) -> list[Query]:
    """The ``n`` prompts of an iteration: consecutive slices of seeded shuffles of the pool, so
    every prompt is used once per pass and a resumed run draws the same ones."""
    chosen: list[Query] = []
    position = iteration * n
    while len(chosen) < n:
        pass_index, offset = divmod(position, len(queries))
        order = list(range(len(queries)))
        random.Random(f"genlab/rlhf/{seed}/{pass_index}").shuffle(order)
        take = order[offset : offset + n - len(chosen)]
        chosen.extend(queries[i] for i in take)
        position += len(take)
    return chosen


def iteration_seed(seed: int, iteration: int, stream: int) -> int:
    """The seed of one random stream of an iteration: 0 sampling, 1 minibatch order, 2 the
    held-out monitor's sampling (:mod:`genlab.align.ppo_monitor`)."""
    return (seed * 1_000_003 + iteration * 7 + stream) % (2**62)


class Rollouts(Callback):
    """The rollout buffer: the trainer's batch source and a callback of the PPO run.

    Trainer step ``s`` is minibatch ``s % M`` of epoch ``(s // M) % ppo_epochs`` of iteration
    ``s // S`` (``M`` minibatches per epoch, ``S`` steps per iteration); the first request of an
    iteration collects its rollout with the current policy.
    """

    name = "ppo"

    def __init__(
        self,
        cfg: PPOConfig,
        model: PolicyValue,
        reference: nn.Module,
        tokenizer: Tokenizer,
        queries: Sequence[Query],
        reward_fn: RewardFn,
        samples_path: Path,
    ) -> None:
        self.cfg, self.model, self.reference = cfg, model, reference
        self.tokenizer, self.queries, self.reward_fn = tokenizer, queries, reward_fn
        self.samples_path = samples_path
        self.kl_ctl = KLController(
            cfg.kl_coef, cfg.target_kl if cfg.adaptive_kl else None, cfg.kl_horizon
        )
        self.moments = RunningMoments()
        self.iteration = -1
        self.last: dict[str, float] = {}

    # The batch source --------------------------------------------------------------------------

    def get_batch(self, step: int, start: int, stop: int, batch_size: int) -> dict[str, Any]:
        cfg = self.cfg
        iteration, within = divmod(step, cfg.steps_per_iteration)
        if iteration != self.iteration:
            self._collect(iteration)
        epoch, minibatch = divmod(within, cfg.rollout_size // cfg.minibatch_size)
        rows = self.orders[epoch][minibatch * batch_size + start : minibatch * batch_size + stop]
        r = self.rollout
        return {
            "ids": r.ids[rows],
            "attention_mask": r.attention_mask[rows],
            "start": r.start,
            "mask": r.mask[rows],
            "logprobs": r.logprobs[rows],
            "values": r.values[rows],
            "advantages": self.advantages[rows],
            "returns": self.returns[rows],
        }

    def _collect(self, iteration: int) -> None:
        cfg = self.cfg
        prompts = cfg.rollout_size // cfg.samples_per_prompt
        self.rollout = collect_rollout(
            self.model,
            self.reference,
            self.tokenizer,
            batch_queries(self.queries, iteration, prompts, cfg.seed),
            self.reward_fn,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            samples_per_prompt=cfg.samples_per_prompt,
            seed=iteration_seed(cfg.seed, iteration, 0),
            chunk_size=cfg.minibatch_size,
            precision=cfg.precision,
        )
        r = self.rollout
        self.kl = kl_penalty(r.logprobs, r.ref_logprobs, r.mask)
        scores = r.scores
        if cfg.normalize_reward:
            self.moments.update(scores)
            scores = self.moments.normalize(scores)
        rewards = token_rewards(scores, self.kl, self.kl_ctl.value, r.mask)
        advantages, self.returns = gae(rewards, r.values, r.mask, cfg.gamma, cfg.lam)
        self.advantages = masked_whiten(advantages, r.mask)
        generator = torch.Generator().manual_seed(iteration_seed(cfg.seed, iteration, 1))
        device = r.ids.device
        self.orders = [
            torch.randperm(len(r), generator=generator).to(device) for _ in range(cfg.ppo_epochs)
        ]
        self.iteration = iteration

    # The callback ------------------------------------------------------------------------------

    def on_start(self, trainer: Trainer) -> None:
        if trainer.info.is_main:
            trim_jsonl(self.samples_path, "step", trainer.step // self.cfg.steps_per_iteration)

    def on_step_end(self, trainer: Trainer) -> None:
        """At an iteration's end: log the rollout, adapt beta, write samples."""
        cfg = self.cfg
        if trainer.step % cfg.steps_per_iteration:
            return
        iteration = trainer.step // cfg.steps_per_iteration
        kl = self.kl.sum(1).mean().item()
        record = {"iteration": float(iteration), **_rollout_record(self.rollout, kl, cfg)}
        record["kl_coef"] = self.kl_ctl.value
        self.kl_ctl.update(kl, len(self.rollout))
        trainer.logger.log(trainer.step, record)
        self.last = record
        shown = iteration == 1 or iteration == cfg.iterations
        if trainer.info.is_main and (
            shown or (cfg.sample_every and iteration % cfg.sample_every == 0)
        ):
            _write_samples(self.samples_path, iteration, self.rollout, self.kl, cfg.samples_shown)

    def state_dict(self) -> dict[str, Any]:
        return {"kl_coef": self.kl_ctl.value, "reward_moments": self.moments.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.kl_ctl.value = float(state["kl_coef"])
        self.moments.load_state_dict(state["reward_moments"])


def _rollout_record(rollout: Rollout, kl: float, cfg: PPOConfig) -> dict[str, float]:
    mask = rollout.mask
    record = {
        "reward": rollout.scores.mean().item(),
        "reward_std": rollout.scores.std().item() if len(rollout) > 1 else 0.0,
        "kl": kl,
        "entropy": masked_mean(rollout.entropy, mask).item(),
        "value_mean": masked_mean(rollout.values, mask).item(),
        "response_len": mask.sum(1).mean().item(),
        "stopped": sum(r == "stop" for r in rollout.finish_reasons) / len(rollout),
    }
    if cfg.temperature == 1.0:
        # the sampler (KV cache, left padding) and the full forward agree to float rounding
        gap = (rollout.sample_logprobs - rollout.logprobs).abs() * mask
        record["logprob_gap"] = gap.max().item()
    return record


def _write_samples(path: Path, iteration: int, rollout: Rollout, kl: Tensor, n: int) -> None:
    """Append the first ``n`` prompts and answers of the rollout to ``samples.jsonl``."""
    lines = []
    for i in range(min(n, len(rollout))):
        record = {
            "step": iteration,
            "prompt": rollout.prompts[i],
            "response": rollout.responses[i],
            "score": round(rollout.scores[i].item(), 4),
            "kl": round(kl[i].sum().item(), 4),
        }
        lines.append(json.dumps(record) + "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.writelines(lines)


def trim_jsonl(path: Path, key: str, iteration: int) -> None:
    """Drop the records of ``path`` whose ``key`` is past ``iteration`` (a resumed run writes
    them again)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            if json.loads(line)[key] <= iteration:
                kept.append(line + "\n")
    atomic_write_bytes(path, "".join(kept).encode())
