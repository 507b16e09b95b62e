"""The settings of a PPO run, and the trainer settings they imply."""

from __future__ import annotations

from dataclasses import dataclass

from genlab.core.errors import refuse_invalid
from genlab.core.train_config import TrainConfig


@dataclass
class PPOConfig:
    """Settings of a PPO run; the defaults run on a laptop CPU with an SFT and a reward run.

    ``lr`` and ``kl_coef`` come from runs on the ``mini`` preset and TinyWorld: at ``lr=1e-4`` the
    policy collapsed to one-word answers even with the judge itself as the reward; with
    ``kl_coef=0.05`` it drifted 20+ nats from SFT and exploited a weak reward model; ``3e-5`` and
    ``0.2`` kept it within ~4 nats and raised the judge's score. ``max_kl`` stops a run well
    before the 20+ nats where those runs wrote gibberish (:mod:`genlab.align.ppo_monitor`).
    """

    policy: str = "runs/sft"  # GPT run folder the policy and the frozen reference start from
    reward: str | None = "runs/reward"  # reward model run folder (unused with a reward_fn)
    out: str = "runs/ppo"  # run folder to write
    iterations: int = 100  # PPO iterations (rollout + optimisation)
    rollout_size: int = 32  # answers sampled per iteration
    samples_per_prompt: int = 1  # answers per prompt (rollout_size / this prompts per iteration)
    ppo_epochs: int = 4  # passes over each rollout
    minibatch_size: int = 8  # answers per optimizer step (divides rollout_size)
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
    max_new_tokens: int = 48  # longest answer sampled
    temperature: float = 1.0  # of the sampling policy (the one PPO optimises)
    sample_every: int = 10  # write samples.jsonl every N iterations (and the first and last)
    samples_shown: int = 4  # answers written each time
    eval_every: int = 5  # iterations between held-out evaluations (and at 0 and the end); 0: off
    max_kl: float = 8.0  # stop when the rollout's or held-out KL passes this (nats/answer); 0: off
    max_gap: float = 0.1  # stop when held-out gold drops this far from its best, reward not; 0: off
    keep: str = "best"  # best | last: end with the best held-out gold score's weights, or the last
    checkpoint_every: int = 25  # iterations between checkpoints; 0: only at the end
    keep_last: int = 2  # checkpoints kept on disk
    precision: str = "fp32"  # fp32 | bf16 | fp16 (CUDA)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    seed: int = 0  # decides the prompts, samples and minibatch order
    progress: bool = True  # show a progress bar
    tensorboard: bool = True  # also log to TensorBoard (when installed)
    plots: bool = True  # draw plots/*.png at the end

    @property
    def steps_per_iteration(self) -> int:
        return self.ppo_epochs * (self.rollout_size // self.minibatch_size)

    def validate(self) -> None:
        checks = {
            "iterations": self.iterations >= 1,
            "rollout_size": self.rollout_size >= 1,
            "samples_per_prompt": self.samples_per_prompt >= 1
            and self.rollout_size % self.samples_per_prompt == 0,
            "ppo_epochs": self.ppo_epochs >= 1,
            "minibatch_size": 1 <= self.minibatch_size <= self.rollout_size
            and self.rollout_size % self.minibatch_size == 0,
            "value_lr": self.value_lr > 0,
            "kl_coef": self.kl_coef >= 0,
            "target_kl": self.target_kl > 0,
            "kl_horizon": self.kl_horizon >= 1,
            "gamma": 0 <= self.gamma <= 1,
            "lam": 0 <= self.lam <= 1,
            "clip_range": self.clip_range > 0,
            "value_clip_range": self.value_clip_range > 0,
            "vf_coef": self.vf_coef >= 0,
            "max_new_tokens": self.max_new_tokens >= 1,
            "temperature": self.temperature > 0,
            "sample_every": self.sample_every >= 0,
            "samples_shown": self.samples_shown >= 0,
            "eval_every": self.eval_every >= 0,
            "max_kl": self.max_kl >= 0,
            "max_gap": self.max_gap >= 0,
            "keep": self.keep in ("best", "last"),
            "checkpoint_every": self.checkpoint_every >= 0,
        }
        refuse_invalid(self, checks, "PPO setting")

    def train_config(self) -> TrainConfig:
        """The trainer's settings: a step is one minibatch at a constant rate, checkpoints at
        iteration ends."""
        S = self.steps_per_iteration
        return TrainConfig(
            max_steps=self.iterations * S,
            batch_size=self.minibatch_size,
            lr=self.lr,
            min_lr_ratio=1.0,
            warmup_steps=0,
            weight_decay=0.0,
            grad_clip=self.grad_clip,
            precision=self.precision,
            eval_every=0,
            checkpoint_every=self.checkpoint_every * S,
            keep_last=self.keep_last,
            log_every=S,
            seed=self.seed,
            device=self.device,
            progress=self.progress,
            tensorboard=self.tensorboard,
            plots=self.plots,
        )
