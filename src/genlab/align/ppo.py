"""RLHF with PPO: step (4) of the ChatGPT recipe, optimising a policy against a reward model.

InstructGPT (Ouyang et al., 2022, "Training language models to follow instructions with human
feedback") and before it Ziegler et al. (2019, "Fine-Tuning Language Models from Human
Preferences") fine-tune the SFT model as a policy with PPO (Schulman et al., 2017, "Proximal
Policy Optimization Algorithms"). One iteration:

1. **Rollout.** Sample answers to a batch of prompts from the current policy (batched
   :func:`~genlab.methods.autoregressive.decoding.generate`; the sampler's raw log-probabilities are kept), score
   each (prompt, answer) with the reward model, and recompute with one full forward pass, dropout
   off, the policy's log-probabilities and values and the frozen reference's log-probabilities.
   Recomputing makes PPO's ratio start at 1 in the first update: the sampler's incremental,
   KV-cached numbers differ from a full forward's in the last bits.
2. **Rewards.** Each answer token gets ``-beta * (log pi(a|s) - log pi_ref(a|s))``, the k1
   estimate of the KL to the reference (the "KL leash" that keeps the policy a language model
   and stops it from exploiting the reward model), and the last token adds the reward model's
   score, normalised by a running mean and standard deviation so that ``beta`` means the same
   thing whatever the reward model's scale. ``beta`` is fixed, or adapted towards a target KL
   with Ziegler et al.'s proportional controller.
3. **Advantages** by generalised advantage estimation (Schulman et al., 2016, "High-Dimensional
   Continuous Control Using Generalized Advantage Estimation"), whitened over the batch.
4. **Optimisation.** Several epochs of minibatches over the rollout minimising PPO's clipped
   surrogate plus a clipped value loss; the clip fraction, the approximate KL between the
   rollout policy and the updated one, the entropy and the value loss are logged.

The value function is a linear head on the policy's final hidden states (read through a hook on
``ln_f``, so the GPT stays unmodified), not a second network: one forward pass gives both
log-probabilities and values, which halves the cost of every PPO step on a laptop CPU, and the
features it reads already encode prompt and answer. The head starts at zero and its loss is
weighted by ``vf_coef``; its gradient also trains the shared trunk (keeping the trunk out of it
was tried on TinyWorld and did no better). InstructGPT uses a separate value model initialised
from the reward model; that doubles the compute and ties PPO to the reward model's internals.

The run folder is a GPT checkpoint folder at the top level (``genlab chat RUN`` and
``genlab generate --checkpoint RUN`` open the tuned policy), written through
:class:`~genlab.core.run.RunFolder`: every checkpoint holds the policy, its optimizer, the value
head with its optimizer (``value_head.safetensors``), the KL coefficient, the reward statistics
and the RNG states, written atomically, so ``resume=True`` continues the run exactly.
``metrics.jsonl`` records each iteration; ``samples.jsonl`` shows prompts and answers as the
policy changes.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save as safetensors_bytes
from torch import Tensor, nn

from genlab.align.data import (
    TINYWORLD,
    WORLD_FILE,
    Messages,
    parse_families,
    prompt_messages,
    read_jsonl,
    task_suite,
    world_record,
    world_seed_of,
)
from genlab.align.reward import load_reward_model
from genlab.core.device import autocast, check_precision, pick_device
from genlab.core.distributed import dist_info
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes, load_tensors, read_json
from genlab.core.logging import MetricsLogger, ProgressBar, read_metrics
from genlab.core.optim import build_adamw
from genlab.core.run import (
    RunFolder,
    load_checkpoint,
    load_optimizer_tensors,
    optimizer_tensors,
    resolve_checkpoint,
)
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import KIND, TOKENIZER_FILE, load_gpt
from genlab.methods.autoregressive.decoding import generate
from genlab.nets.gpt import GPT

Prompt = str | Messages
RewardFn = Callable[[list[Prompt], list[str]], Sequence[float]]
SAMPLES_FILE = "samples.jsonl"
VALUE_FILE = "value_head.safetensors"
# Settings that decide which prompts and samples each iteration draws: a resumed run keeps them.
DATA_FIELDS = (
    "policy",
    "prompts",
    "families",
    "prompts_per_family",
    "world_seed",
    "batch_size",
    "samples_per_prompt",
    "seed",
)


@dataclass
class RLHFConfig:
    """Settings of a PPO run; the defaults run on a laptop CPU with an SFT and a reward run.

    ``lr`` and ``kl_coef`` come from runs on the ``mini`` preset and TinyWorld: at ``lr=1e-4`` the
    policy collapsed to one-word answers even with the judge itself as the reward; with
    ``kl_coef=0.05`` it drifted 20+ nats from SFT and exploited a weak reward model; ``3e-5`` and
    ``0.2`` kept it within ~4 nats and raised the judge's score.
    """

    policy: str = "runs/sft"  # GPT run folder the policy and the frozen reference start from
    reward: str | None = "runs/reward"  # reward model run folder (unused with a reward_fn)
    out: str = "runs/rlhf"
    prompts: str = TINYWORLD  # "tinyworld" (train split of the task families) or a .jsonl file
    families: str | None = None  # TinyWorld families, "a,b" or "all" (default: the policy's)
    prompts_per_family: int = 200  # TinyWorld prompts drawn per task family
    world_seed: int | None = None  # default: the world the policy was fine-tuned on
    steps: int = 100  # PPO iterations (rollout + optimisation)
    batch_size: int = 32  # answers sampled per iteration
    samples_per_prompt: int = 1  # answers per prompt (batch_size / this prompts per iteration)
    ppo_epochs: int = 4  # passes over each rollout
    minibatch_size: int = 8  # answers per optimizer step
    lr: float = 3e-5  # policy learning rate (constant)
    value_lr: float = 1e-3  # value head learning rate
    kl_coef: float = 0.2  # beta: weight of the per-token KL penalty (its start when adaptive)
    adaptive_kl: bool = False  # adapt beta towards target_kl (Ziegler et al., 2019)
    target_kl: float = 3.0  # nats per answer (summed over its tokens)
    kl_horizon: int = 1000  # answers over which the adaptive beta moves by at most ~e^0.2
    gamma: float = 1.0  # discount
    lam: float = 0.95  # GAE lambda
    clip_range: float = 0.2  # PPO ratio clip
    value_clip_range: float = 0.2  # how far a value may move from its rollout estimate
    vf_coef: float = 0.1  # weight of the value loss
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    normalize_reward: bool = True  # divide scores by a running std after removing its mean
    max_new_tokens: int = 48
    temperature: float = 1.0  # of the sampling policy (the one PPO optimises)
    sample_every: int = 10  # write samples.jsonl every N iterations (and the first and last)
    samples_shown: int = 4  # answers written each time
    checkpoint_every: int = 25  # 0: only at the end
    keep_last: int = 2
    precision: str = "fp32"  # fp32 | bf16 | fp16 (CUDA)
    device: str = "auto"
    seed: int = 0
    progress: bool = True
    tensorboard: bool = True
    plots: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        checks = {
            "steps": self.steps >= 1,
            "batch_size": self.batch_size >= 1,
            "samples_per_prompt": self.samples_per_prompt >= 1
            and self.batch_size % self.samples_per_prompt == 0,
            "ppo_epochs": self.ppo_epochs >= 1,
            "minibatch_size": 1 <= self.minibatch_size <= self.batch_size,
            "prompts_per_family": self.prompts_per_family >= 1,
            "lr": self.lr > 0,
            "value_lr": self.value_lr > 0,
            "kl_coef": self.kl_coef >= 0,
            "target_kl": self.target_kl > 0,
            "kl_horizon": self.kl_horizon >= 1,
            "gamma": 0 <= self.gamma <= 1,
            "lam": 0 <= self.lam <= 1,
            "clip_range": self.clip_range > 0,
            "value_clip_range": self.value_clip_range > 0,
            "vf_coef": self.vf_coef >= 0,
            "grad_clip": self.grad_clip >= 0,
            "max_new_tokens": self.max_new_tokens >= 1,
            "temperature": self.temperature > 0,
            "sample_every": self.sample_every >= 0,
            "samples_shown": self.samples_shown >= 0,
            "checkpoint_every": self.checkpoint_every >= 0,
            "keep_last": self.keep_last >= 1,
            "seed": self.seed >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise GenlabError(f"invalid RLHF setting {name}={getattr(self, name)!r}")


# The pieces of PPO -------------------------------------------------------------------------------


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


class ValueHead(nn.Module):
    """The critic: one linear layer from the policy's final hidden states to a value per token.

    It starts at zero, so the first advantages are the rewards themselves.
    """

    def __init__(self, n_embd: int) -> None:
        super().__init__()
        self.proj = nn.Linear(n_embd, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.proj(hidden.float()).squeeze(-1)


def answer_logprobs(
    model: GPT,
    ids: Tensor,
    attention_mask: Tensor,
    start: int,
    temperature: float = 1.0,
    value_head: ValueHead | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Log-probabilities (B, T), entropies and values of the answer tokens ``ids[:, start:]``.

    ``ids`` hold left-padded prompts ending at column ``start`` followed by right-padded answers.
    Logits are divided by ``temperature`` (the sampling policy is the one optimised). Values come
    from ``value_head`` on the hidden states that predict each answer token.
    """
    hidden: list[Tensor] = []
    hook = None
    if value_head is not None:
        hook = model.ln_f.register_forward_hook(lambda _m, _i, out: hidden.append(out))
    try:
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        logits, _ = model(ids, attention_mask=attention_mask, positions=positions)
    finally:
        if hook is not None:
            hook.remove()
    logits = logits[:, start - 1 : -1].float() / temperature
    logp_all = F.log_softmax(logits, dim=-1)
    logprobs = logp_all.gather(-1, ids[:, start:, None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    values = value_head(hidden[0][:, start - 1 : -1]) if value_head is not None else None
    return logprobs, entropy, values


# Rollouts -------------------------------------------------------------------------------------


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
    policy: GPT,
    reference: GPT,
    value_head: ValueHead,
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
    """Sample answers to ``queries`` from ``policy``, score them, and recompute log-probabilities
    (policy and reference), entropies and values with full forward passes of ``chunk_size``."""
    device = policy.lm_head.weight.device
    stop = [tokenizer.eot_id, tokenizer.eos_id]
    with autocast(device, precision):
        gens = generate(
            policy,
            [list(q.ids) for q in queries],
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            stop=stop,
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

    B = len(gens)
    start = max(len(g.prompt) for g in gens)
    T = max(len(g.tokens) for g in gens)
    ids = torch.full((B, start + T), tokenizer.pad_id, dtype=torch.long)
    attention = torch.zeros(B, start + T, dtype=torch.long)
    mask = torch.zeros(B, T)
    sample_logprobs = torch.zeros(B, T)
    for i, g in enumerate(gens):
        p, n = len(g.prompt), len(g.tokens)
        ids[i, start - p : start] = torch.tensor(g.prompt)
        ids[i, start : start + n] = torch.tensor(g.tokens)
        attention[i, start - p : start + n] = 1
        mask[i, :n] = 1
        sample_logprobs[i, :n] = torch.tensor(g.logprobs)
    ids, attention, mask = ids.to(device), attention.to(device), mask.to(device)

    logprobs, ref_logprobs, values, entropy = [], [], [], []
    policy_mode = policy.training
    policy.eval()
    with autocast(device, precision):
        for rows in _chunks(B, chunk_size):
            lp, ent, val = answer_logprobs(
                policy, ids[rows], attention[rows], start, temperature, value_head
            )
            ref_lp, _, _ = answer_logprobs(
                reference, ids[rows], attention[rows], start, temperature
            )
            logprobs.append(lp)
            entropy.append(ent)
            values.append(val)
            ref_logprobs.append(ref_lp)
    policy.train(policy_mode)
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


# One PPO iteration ------------------------------------------------------------------------------


def ppo_update(
    policy: GPT,
    value_head: ValueHead,
    optimizers: Sequence[torch.optim.Optimizer],
    rollout: Rollout,
    advantages: Tensor,
    returns: Tensor,
    cfg: RLHFConfig,
    generator: torch.Generator,
) -> dict[str, float]:
    """``cfg.ppo_epochs`` passes of minibatch steps over one rollout; mean statistics."""
    params = [p for opt in optimizers for group in opt.param_groups for p in group["params"]]
    device = rollout.ids.device
    sums: dict[str, float] = {}
    n_steps = 0
    policy.eval()  # no dropout: the ratio must be 1 before the first update
    for _ in range(cfg.ppo_epochs):
        order = torch.randperm(len(rollout), generator=generator).to(device)
        for rows in _chunks(len(rollout), cfg.minibatch_size):
            idx = order[rows]
            mask = rollout.mask[idx]
            with autocast(device, cfg.precision):
                logprobs, entropy, values = answer_logprobs(
                    policy,
                    rollout.ids[idx],
                    rollout.attention_mask[idx],
                    rollout.start,
                    cfg.temperature,
                    value_head,
                )
            assert values is not None
            policy_loss, value_loss, stats = ppo_losses(
                logprobs,
                rollout.logprobs[idx],
                values,
                rollout.values[idx],
                advantages[idx],
                returns[idx],
                mask,
                cfg.clip_range,
                cfg.value_clip_range,
            )
            loss = policy_loss + cfg.vf_coef * value_loss
            if not torch.isfinite(loss):
                raise GenlabError(
                    f"non-finite PPO loss ({loss.item()}): lower --lr or raise --kl-coef"
                )
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(
                params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf
            )
            for opt in optimizers:
                opt.step()
            step_stats = {
                "policy_loss": policy_loss.detach(),
                "value_loss": value_loss.detach(),
                "grad_norm": norm,
                "train_entropy": masked_mean(entropy.detach(), mask),
                **stats,
            }
            for key, value in step_stats.items():
                sums[key] = sums.get(key, 0.0) + float(value)
            n_steps += 1
    return {key: value / n_steps for key, value in sums.items()}


# Prompts, rewards, checkpoints ------------------------------------------------------------------


def policy_world(cfg: RLHFConfig) -> tuple[int, tuple[str, ...]]:
    """The TinyWorld seed and task families: as configured, else those the policy was tuned on
    (its ``tinyworld.json``), else the defaults."""
    record = Path(cfg.policy) / WORLD_FILE
    tuned = read_json(record, "TinyWorld record").get("families") if record.is_file() else None
    seed = cfg.world_seed if cfg.world_seed is not None else world_seed_of(cfg.policy)
    return seed, parse_families(cfg.families if cfg.families is not None else tuned)


def load_prompts(cfg: RLHFConfig, world: tuple[int, tuple[str, ...]]) -> list[Prompt]:
    """The prompt pool: the train split of TinyWorld's task families (the world the policy was
    tuned on), or a JSONL file whose lines hold ``{"prompt": ...}`` (comparison files work too)
    or ``{"messages": [...]}`` (a trailing assistant message is dropped, so SFT files work too)."""
    if cfg.prompts == TINYWORLD:
        suite = task_suite(*world)
        return [e.prompt for e in suite.examples("train", cfg.prompts_per_family, cfg.seed)]
    prompts: list[Prompt] = []
    for n, record in enumerate(read_jsonl(cfg.prompts, "prompts"), start=1):
        if "prompt" in record:
            prompts.append(record["prompt"])
        elif isinstance(record.get("messages"), list):
            messages = list(record["messages"])
            if (
                messages
                and isinstance(messages[-1], Mapping)
                and (messages[-1].get("role") == "assistant")
            ):
                messages.pop()
            prompts.append(messages)
        else:
            raise GenlabError(f'{cfg.prompts}: record {n} holds neither "prompt" nor "messages"')
    return prompts


def reward_model_fn(folder: str, device: torch.device) -> RewardFn:
    """A reward function that scores with the reward model saved in ``folder``."""
    model = load_reward_model(folder, device).requires_grad_(False)

    def score(prompts: list[Prompt], responses: list[str]) -> list[float]:
        return model.score(prompts, responses)

    return score


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


def _iteration_seed(seed: int, iteration: int, stream: int) -> int:
    return (seed * 1_000_003 + iteration * 7 + stream) % (2**62)


def _value_bytes(value_head: ValueHead, optimizer: torch.optim.Optimizer, step: int) -> bytes:
    """The value head and its optimizer as one safetensors file (travels with each checkpoint)."""
    tensors = {f"head/{k}": v for k, v in value_head.state_dict().items()}
    opt_tensors, meta = optimizer_tensors(value_head, {"value": optimizer})
    tensors.update(opt_tensors)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    return safetensors_bytes(tensors, metadata={"step": str(step), "optimizers": meta})


def _load_value(
    folder: Path, value_head: ValueHead, optimizer: torch.optim.Optimizer, step: int
) -> None:
    from safetensors import safe_open

    path = folder / VALUE_FILE
    tensors = load_tensors(path, what="value head")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("step") != str(step):
        raise GenlabError(
            f"mixed checkpoint in {folder}: {VALUE_FILE} is from step {meta.get('step')}, "
            f"the policy from step {step}"
        )
    head = {k.removeprefix("head/"): v for k, v in tensors.items() if k.startswith("head/")}
    value_head.load_state_dict(head)
    rest = {k: v for k, v in tensors.items() if not k.startswith("head/")}
    load_optimizer_tensors(value_head, {"value": optimizer}, rest, meta["optimizers"], str(path))


def _extra_files(
    cfg: RLHFConfig, tokenizer: Tokenizer, world: tuple[int, tuple[str, ...]]
) -> dict[str, bytes]:
    """The tokenizer, and which TinyWorld the policy knows (for evaluation and later stages)."""
    files = {TOKENIZER_FILE: tokenizer.to_json().encode()}
    policy_world = Path(cfg.policy) / WORLD_FILE
    if cfg.prompts == TINYWORLD:
        files[WORLD_FILE] = world_record(*world)
    elif policy_world.is_file():
        files[WORLD_FILE] = policy_world.read_bytes()
    return files


def _check_folder(folder: RunFolder, cfg: RLHFConfig, resume: bool) -> bool:
    """Refuse to overwrite a run by accident; on resume check it can continue as it began.
    Returns whether there is a checkpoint to resume from."""
    if not resume:
        if folder.has_checkpoints():
            raise GenlabError(
                f"{cfg.out} already holds a run with checkpoints: resume it (--resume) or "
                "choose another output folder"
            )
        return False
    saved = folder.saved_config()
    if saved is None:
        return False
    for name in DATA_FIELDS:
        before = saved.get("train", {}).get(name)
        now = getattr(cfg, name)
        if before is not None and before != now:
            raise GenlabError(
                f"cannot resume {cfg.out} with {name}={now!r}: the run used {before!r}"
            )
    return folder.has_checkpoints()


def _trim_samples(path: Path, step: int) -> None:
    """Drop sample records past ``step`` (a resumed run writes them again)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            if json.loads(line)["step"] <= step:
                kept.append(line + "\n")
    atomic_write_bytes(path, "".join(kept).encode())


# The run ----------------------------------------------------------------------------------------


def rlhf(
    cfg: RLHFConfig, resume: bool = False, *, reward_fn: RewardFn | None = None
) -> dict[str, float]:
    """Tune the policy in ``cfg.policy`` by PPO into the run folder ``cfg.out``.

    The reward is the reward model in ``cfg.reward``, or ``reward_fn(prompts, responses)`` (a
    score per answer) when given. ``resume`` continues the run from its newest checkpoint.
    Returns the last iteration's metrics.
    """
    cfg.validate()
    if dist_info().distributed:
        raise GenlabError("RLHF runs in a single process: launch it without torchrun")
    device = pick_device(cfg.device)
    check_precision(cfg.precision, device)
    policy, tokenizer = load_gpt(cfg.policy, device)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    if reward_fn is None:
        if not cfg.reward:
            raise GenlabError("no reward: give a reward model run folder (--reward)")
        reward_fn = reward_model_fn(cfg.reward, device)
    world = policy_world(cfg)
    queries = make_queries(tokenizer, load_prompts(cfg, world))
    per_iteration = cfg.batch_size // cfg.samples_per_prompt

    value_head = ValueHead(policy.config.n_embd).to(device)
    policy_opt = build_adamw(policy, cfg.lr, weight_decay=0.0, device_type=device.type)
    value_opt = build_adamw(value_head, cfg.value_lr, weight_decay=0.0, device_type=device.type)
    folder = RunFolder(
        cfg.out,
        KIND,
        config=policy.config.to_dict(),
        train=cfg.to_dict(),
        extra_files=_extra_files(cfg, tokenizer, world),
        keep_last=cfg.keep_last,
    )
    kl_ctl = KLController(cfg.kl_coef, cfg.target_kl if cfg.adaptive_kl else None, cfg.kl_horizon)
    moments = RunningMoments()
    iteration = 0
    if _check_folder(folder, cfg, resume):
        ckpt = resolve_checkpoint(cfg.out)
        state = load_checkpoint(ckpt, policy, {"policy": policy_opt}, kind=KIND)
        iteration = int(state["step"])
        _load_value(ckpt, value_head, value_opt, iteration)
        kl_ctl.value = float(state["kl_coef"])
        moments.load_state_dict(state["reward_moments"])
    folder.write_config()

    run_dir = Path(cfg.out)
    logger = MetricsLogger(run_dir, tensorboard=cfg.tensorboard, resume_step=iteration)
    samples_path = run_dir / SAMPLES_FILE
    _trim_samples(samples_path, iteration)
    bar = ProgressBar(cfg.steps, iteration, enabled=cfg.progress, desc="rlhf")
    last: dict[str, float] = {}
    start_time = time.perf_counter()
    try:
        while iteration < cfg.steps:
            tic = time.perf_counter()
            rollout = collect_rollout(
                policy,
                reference,
                value_head,
                tokenizer,
                batch_queries(queries, iteration, per_iteration, cfg.seed),
                reward_fn,
                max_new_tokens=cfg.max_new_tokens,
                temperature=cfg.temperature,
                samples_per_prompt=cfg.samples_per_prompt,
                seed=_iteration_seed(cfg.seed, iteration, 0),
                chunk_size=cfg.minibatch_size,
                precision=cfg.precision,
            )
            kl = kl_penalty(rollout.logprobs, rollout.ref_logprobs, rollout.mask)
            scores = rollout.scores
            if cfg.normalize_reward:
                moments.update(scores)
                scores = moments.normalize(scores)
            rewards = token_rewards(scores, kl, kl_ctl.value, rollout.mask)
            advantages, returns = gae(rewards, rollout.values, rollout.mask, cfg.gamma, cfg.lam)
            advantages = masked_whiten(advantages, rollout.mask)
            generator = torch.Generator().manual_seed(_iteration_seed(cfg.seed, iteration, 1))
            stats = ppo_update(
                policy,
                value_head,
                (policy_opt, value_opt),
                rollout,
                advantages,
                returns,
                cfg,
                generator,
            )
            iteration += 1

            kl_per_answer = kl.sum(1).mean().item()
            record = _iteration_record(rollout, kl_per_answer, kl_ctl.value, stats, cfg)
            record["time_s"] = time.perf_counter() - start_time
            record["iteration_s"] = time.perf_counter() - tic
            kl_ctl.update(kl_per_answer, len(rollout))
            logger.log(iteration, record)
            last = record
            bar.update(1, reward=record["reward"], kl=kl_per_answer)
            done = iteration == cfg.steps
            if iteration == 1 or done or (cfg.sample_every and iteration % cfg.sample_every == 0):
                _write_samples(samples_path, iteration, rollout, kl, cfg.samples_shown)
            if done or (cfg.checkpoint_every and iteration % cfg.checkpoint_every == 0):
                folder.extra_files[VALUE_FILE] = _value_bytes(value_head, value_opt, iteration)
                state = {"kl_coef": kl_ctl.value, "reward_moments": moments.state_dict()}
                folder.save(iteration, policy, {"policy": policy_opt}, state)
    finally:
        bar.close()
        logger.close()
    if not last:  # nothing left to run: report the run's last logged iteration
        last = {k: v for k, v in read_metrics(run_dir)[-1].items() if k != "step"}
    elif cfg.plots:
        from genlab.core.plot import plot_run

        plot_run(run_dir)
    return {"step": float(iteration), **last}


def _iteration_record(
    rollout: Rollout, kl: float, kl_coef: float, stats: Mapping[str, float], cfg: RLHFConfig
) -> dict[str, float]:
    mask = rollout.mask
    record = {
        "reward": rollout.scores.mean().item(),
        "reward_std": rollout.scores.std().item() if len(rollout) > 1 else 0.0,
        "kl": kl,
        "kl_coef": kl_coef,
        "entropy": masked_mean(rollout.entropy, mask).item(),
        "value_mean": masked_mean(rollout.values, mask).item(),
        "response_len": mask.sum(1).mean().item(),
        "stopped": sum(r == "stop" for r in rollout.finish_reasons) / len(rollout),
        **stats,
    }
    if cfg.temperature == 1.0:
        # the sampler (KV cache, left padding) and the full forward agree to float rounding
        gap = (rollout.sample_logprobs - rollout.logprobs).abs() * mask
        record["logprob_gap"] = gap.max().item()
    return record


def _write_samples(path: Path, step: int, rollout: Rollout, kl: Tensor, n: int) -> None:
    """Append the first ``n`` prompts and answers of the rollout to ``samples.jsonl``."""
    lines = []
    for i in range(min(n, len(rollout))):
        record = {
            "step": step,
            "prompt": rollout.prompts[i],
            "response": rollout.responses[i],
            "score": round(rollout.scores[i].item(), 4),
            "kl": round(kl[i].sum().item(), 4),
        }
        lines.append(json.dumps(record) + "\n")
    with path.open("a") as f:
        f.writelines(lines)
