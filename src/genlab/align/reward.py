"""The reward model: a GPT that reads a (prompt, answer) and returns one number, how good it is.

Step (3) of the ChatGPT recipe, after InstructGPT (Ouyang et al., 2022, section 3.5) and
Stiennon et al. (2020, "Learning to summarize from human feedback"): take the language model,
remove its unembedding layer, and put a linear head on the final hidden state of the last token,
here the ``<|eot|>`` that closes the answer, so the score is read after the model has seen the
whole conversation. It is trained on human comparisons with the Bradley-Terry model (Bradley and
Terry, 1952): the probability that answer ``a`` is preferred to ``b`` is
``sigmoid(r(a) - r(b))``, and the loss is ``-log sigmoid(r(chosen) - r(rejected))``. Only
differences of rewards are learned, so the scale's origin is arbitrary; PPO normalises it.

A small head on a small backbone reads style and evasion well but cannot check an answer it would
itself get wrong. With ``reference=True`` the reward adds ``w * log p_ref(answer | prompt)``, the
answer's log-likelihood under a frozen copy of the model the reward model starts from (the SFT
model), with ``w`` learned with the head: what the SFT model knows of the task becomes a feature.
On the demo's validation split (docs/chatgpt.md) it reads held-out comparisons better (85.7% ->
91.3%), yet PPO and best-of-n against it please the judge less: it pulls towards what the SFT
model would say, which a pairwise accuracy on judge-ordered pairs does not see. Off by default.

Public API (PPO builds on it, keep it stable):

- ``RewardModel(config)`` / ``RewardModel.from_gpt(gpt, reference=False)``: the model;
  ``forward(idx, lengths, starts)`` gives one reward per right-padded row, read at position
  ``lengths - 1`` (``starts``: where each answer begins, for the reference term).
- ``load_reward_model(folder, device) -> RewardModel`` with its ``tokenizer`` attached, and
  ``save_reward_model(folder, model, tokenizer)``: a checkpoint of kind ``"reward"``.
- ``model.score(prompts, responses) -> list[float]``: rewards of answers to prompts (strings or
  message lists), rendered by the chat template; ``model.score_ids(sequences)`` for id lists
  already rendered (ending with ``<|eot|>``).
- ``train_reward(RewardConfig) -> metrics``: the training entry (``genlab reward``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.align.stage import fine_tuning, stage_trainer
from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.core.registry import Kind, load, register, save
from genlab.core.rng import seed_everything
from genlab.core.train_config import TrainConfig
from genlab.data.records import Prompt, render_answer
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import TOKENIZER, load_gpt
from genlab.methods.autoregressive.padding import pad_right
from genlab.nets.gpt import GPT, GPTConfig

KIND = "reward"
REFERENCE_WEIGHT = 0.1  # the reference term's starting weight (learned with the head)


@dataclass(frozen=True)
class RewardModelConfig(GPTConfig):
    """The backbone's shape, and whether the reward adds the reference model's log-likelihood
    of the answer. A folder written before ``reference`` existed reads as ``False``."""

    reference: bool = False

    @classmethod
    def of(cls, config: GPTConfig, reference: bool = False) -> RewardModelConfig:
        return cls(**{**config.to_dict(), "reference": reference})

    def gpt(self) -> GPTConfig:
        """The language model's config (without the reward model's own field)."""
        return GPTConfig.from_dict({k: v for k, v in self.to_dict().items() if k != "reference"})


class RewardModel(nn.Module):
    """A GPT backbone without its unembedding, and a scalar head on the last real token; with
    ``config.reference``, plus a learned multiple of a frozen reference LM's log-likelihood of
    the answer."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        config = config if isinstance(config, RewardModelConfig) else RewardModelConfig.of(config)
        self.config = config
        # InstructGPT removes the unembedding layer: the head reads the final hidden states.
        self.backbone = GPT(config.gpt(), lm_head=False)
        self.head = nn.Linear(config.n_embd, 1)
        nn.init.normal_(self.head.weight, std=1.0 / math.sqrt(config.n_embd + 1))
        nn.init.zeros_(self.head.bias)
        self.reference: GPT | None = None
        if config.reference:
            self.reference = GPT(config.gpt()).requires_grad_(False).eval()
            self.reference_weight = nn.Parameter(torch.tensor(REFERENCE_WEIGHT))
        self.tokenizer: Tokenizer | None = None

    @classmethod
    def from_gpt(cls, gpt: GPT, reference: bool = False) -> RewardModel:
        """A reward model whose backbone starts from ``gpt``'s weights (an SFT or pretrained LM);
        with ``reference``, a frozen copy of ``gpt`` scores the answers' likelihood."""
        model = cls(RewardModelConfig.of(gpt.config, reference))
        weights = {k: v for k, v in gpt.state_dict().items() if not k.startswith("lm_head.")}
        model.backbone.load_state_dict(weights, strict=True)
        if model.reference is not None:
            model.reference.load_state_dict(gpt.state_dict(), strict=True)
        return model.to(gpt.wte.weight.device)

    def train(self, mode: bool = True) -> RewardModel:
        super().train(mode)
        if self.reference is not None:
            self.reference.eval()  # frozen: the same likelihoods in training and scoring
        return self

    def forward(self, idx: Tensor, lengths: Tensor, starts: Tensor | None = None) -> Tensor:
        """Rewards (B,) of right-padded rows ``idx`` (B, T) whose real lengths are ``lengths``.

        Attention is causal, so the padding after a row's last token never reaches it and no
        attention mask is needed. ``starts`` (B,): where each row's answer begins, for the
        reference term (default: every token after the first; two answers to one prompt differ
        by the same amount either way).
        """
        hidden = self.backbone.hidden_states(idx)
        last = hidden[torch.arange(idx.shape[0], device=idx.device), lengths - 1]
        reward = self.head(last).squeeze(-1).float()
        if self.reference is None:
            return reward
        return reward + self.reference_weight * self.reference_loglik(idx, lengths, starts)

    @torch.no_grad()
    def reference_loglik(
        self, idx: Tensor, lengths: Tensor, starts: Tensor | None = None
    ) -> Tensor:
        """Summed log-probabilities (B,) the reference model gives tokens ``starts..lengths-1``."""
        assert self.reference is not None
        logits, _ = self.reference(idx)
        logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
        token_logp = logp.gather(-1, idx[:, 1:, None]).squeeze(-1)  # of tokens 1..T-1
        target = torch.arange(1, idx.shape[1], device=idx.device)[None]
        first = torch.ones_like(lengths) if starts is None else starts.clamp(min=1)
        keep = (target >= first[:, None]) & (target < lengths[:, None])
        return (token_logp * keep).sum(-1)

    @torch.no_grad()
    def score_ids(
        self,
        sequences: Sequence[Sequence[int]],
        batch_size: int = 64,
        starts: Sequence[int] | None = None,
    ) -> list[float]:
        """Rewards of rendered conversations (token ids, each ending with ``<|eot|>``);
        ``starts``: where each answer begins (the reference term reads the answer only).

        A sequence longer than the context keeps its last ``block_size`` tokens: the head
        reads the end of the answer, which is what it was trained to judge.
        """
        if not sequences:
            return []
        block = self.config.block_size
        device = self.head.weight.device
        was_training = self.training
        self.eval()
        out: list[float] = []
        for i in range(0, len(sequences), batch_size):
            chunk = [list(s) for s in sequences[i : i + batch_size]]
            if any(len(s) == 0 for s in chunk):
                raise GenlabError("cannot score an empty token sequence")
            cut = [max(0, len(s) - block) for s in chunk]
            chunk = [s[c:] for s, c in zip(chunk, cut, strict=True)]
            idx = pad_right(chunk, 0).to(device)
            lengths = torch.tensor([len(s) for s in chunk], device=device)
            first = None
            if starts is not None:
                first = [s - c for s, c in zip(starts[i : i + batch_size], cut, strict=True)]
                first = torch.tensor(first, device=device)
            out.extend(self(idx, lengths, first).tolist())
        self.train(was_training)
        return out

    def score(
        self,
        prompts: Sequence[Prompt],
        responses: Sequence[str],
        batch_size: int = 64,
    ) -> list[float]:
        """The reward of each ``responses[i]`` as the assistant's answer to ``prompts[i]``.

        A prompt is a user message (string) or a list of chat messages; answers are plain text.
        """
        if self.tokenizer is None:
            raise GenlabError("this reward model has no tokenizer: load it with load_reward_model")
        if len(prompts) != len(responses):
            raise GenlabError(f"{len(prompts)} prompts but {len(responses)} responses to score")
        rendered = [
            render_answer(self.tokenizer, p, r) for p, r in zip(prompts, responses, strict=True)
        ]
        return self.score_ids([ids for ids, _ in rendered], batch_size, [s for _, s in rendered])


register(Kind(KIND, RewardModelConfig, RewardModel, (TOKENIZER,)))


def save_reward_model(folder: str | os.PathLike, model: RewardModel, tokenizer: Tokenizer) -> Path:
    """Write a reward-model folder (``kind: reward``) that :func:`load_reward_model` reads."""
    return save(folder, model, KIND, model.config, tokenizer.files(model.config.block_size))


def load_reward_model(folder: str | os.PathLike, device: str | torch.device = "cpu") -> RewardModel:
    """Open a reward-model folder (a ``genlab reward`` run) in eval mode, tokenizer attached."""
    loaded = load(folder, KIND, device)
    model: RewardModel = loaded.model  # type: ignore[assignment]
    model.tokenizer = loaded.files["tokenizer"]
    return model


def bradley_terry_loss(chosen: Tensor, rejected: Tensor) -> Tensor:
    """Mean ``-log sigmoid(r_chosen - r_rejected)``: the negative log-likelihood of the
    comparisons under the Bradley-Terry model."""
    return -F.logsigmoid(chosen - rejected).mean()


def reward_step(model: nn.Module, batch: tuple[Tensor, ...]) -> tuple[Tensor, dict[str, Tensor]]:
    """One Bradley-Terry step: chosen and rejected answers scored in a single forward pass."""
    chosen, chosen_len, rejected, rejected_len = batch
    lengths = torch.cat([chosen_len, rejected_len])
    T = int(lengths.max())  # rows are padded to the data set's longest: cut to this batch's
    idx = torch.cat(
        [F.pad(chosen, (0, T - chosen.shape[1])), F.pad(rejected, (0, T - rejected.shape[1]))]
    )
    rewards = model(idx[:, :T], lengths)
    r_chosen, r_rejected = rewards.chunk(2)
    loss = bradley_terry_loss(r_chosen, r_rejected)
    margin = (r_chosen - r_rejected).detach()
    return loss, {
        "accuracy": (margin > 0).float().mean(),
        "margin": margin.mean(),
        "samples": float(len(chosen)),
        "tokens": float(chosen_len.sum() + rejected_len.sum()),
    }


def encode_comparisons(
    tokenizer: Tokenizer, pairs: Sequence[Mapping[str, Any]], block_size: int
) -> tuple[tuple[Tensor, Tensor, Tensor, Tensor], int]:
    """Padded (chosen, chosen lengths, rejected, rejected lengths) tensors of comparisons, and
    how many pairs were dropped for not fitting in ``block_size`` tokens."""
    chosen, rejected = [], []
    for pair in pairs:
        c, _ = render_answer(tokenizer, pair["prompt"], pair["chosen"])
        r, _ = render_answer(tokenizer, pair["prompt"], pair["rejected"])
        if len(c) <= block_size and len(r) <= block_size:
            chosen.append(c)
            rejected.append(r)
    dropped = len(pairs) - len(chosen)
    if not chosen:
        raise GenlabError(
            f"every comparison is longer than the model's context of {block_size} tokens"
        )
    tensors = (
        pad_right(chosen, tokenizer.pad_id),
        torch.tensor([len(c) for c in chosen]),
        pad_right(rejected, tokenizer.pad_id),
        torch.tensor([len(r) for r in rejected]),
    )
    return tensors, dropped


@torch.no_grad()
def pairwise_accuracy(
    model: RewardModel, pairs: Sequence[Mapping[str, Any]], batch_size: int = 64
) -> float:
    """Fraction of comparisons where the chosen answer gets the higher reward (ties count half)."""
    prompts = [p["prompt"] for p in pairs]
    chosen = model.score(prompts, [p["chosen"] for p in pairs], batch_size)
    rejected = model.score(prompts, [p["rejected"] for p in pairs], batch_size)
    wins = sum(
        1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected, strict=True)
    )
    return wins / len(pairs)


@dataclass
class RewardConfig:
    """Where the reward model starts, where it is written, and how it trains."""

    base: str = "runs/sft"  # a GPT folder (SFT run, as in InstructGPT, or a pretraining run)
    out: str = "runs/reward"  # run folder to write
    train: TrainConfig = field(default_factory=lambda: fine_tuning(300, 3e-4, 20))
    reference: bool = False  # add the frozen base model's log-likelihood of the answer, weighted


def train_reward(
    cfg: RewardConfig,
    train: Sequence[Mapping[str, Any]],
    validation: Sequence[Mapping[str, Any]],
    test: Sequence[Mapping[str, Any]],
    extra_files: Mapping[str, bytes] | None = None,
    resume: bool = False,
) -> dict[str, float]:
    """Train a reward model from ``cfg.base`` on ``train`` comparisons (held-out loss on
    ``validation``); the run folder ``cfg.out`` is a ``reward`` model. Returns the final metrics
    with ``test_accuracy``, the pairwise accuracy on ``test``."""
    gpt, tokenizer = load_gpt(cfg.base, device=pick_device(cfg.train.device))
    seed_everything(cfg.train.seed)  # the head's initial weights follow the seed
    model = RewardModel.from_gpt(gpt, reference=cfg.reference)
    block = gpt.config.block_size
    train_tensors, dropped = encode_comparisons(tokenizer, train, block)
    val_tensors, _ = encode_comparisons(tokenizer, validation, block)
    trainer = stage_trainer(
        model,
        reward_step,
        train_tensors,
        val_tensors,
        cfg.train,
        cfg.out,
        KIND,
        tokenizer,
        block,
        extra_files,
        resume,
    )
    metrics = trainer.fit()
    trained = load_reward_model(cfg.out, device=trainer.device)
    metrics["test_accuracy"] = pairwise_accuracy(trained, test)
    metrics["train_pairs"] = float(len(train) - dropped)
    metrics["dropped_pairs"] = float(dropped)
    metrics["test_pairs"] = float(len(test))
    return metrics
