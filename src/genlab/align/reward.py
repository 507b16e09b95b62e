"""The reward model: a GPT that reads a (prompt, answer) and returns one number, how good it is.

Step (3) of the ChatGPT recipe, after InstructGPT (Ouyang et al., 2022, section 3.5) and
Stiennon et al. (2020, "Learning to summarize from human feedback"): take the language model,
remove its unembedding layer, and put a linear head on the final hidden state of the last token,
here the ``<|eot|>`` that closes the answer, so the score is read after the model has seen the
whole conversation. It is trained on human comparisons with the Bradley-Terry model (Bradley and
Terry, 1952): the probability that answer ``a`` is preferred to ``b`` is
``sigmoid(r(a) - r(b))``, and the loss is ``-log sigmoid(r(chosen) - r(rejected))``. Only
differences of rewards are learned, so the scale's origin is arbitrary; PPO normalises it.

Public API (PPO builds on it, keep it stable):

- ``RewardModel(gpt_config)`` / ``RewardModel.from_gpt(gpt)``: the model; ``forward(idx,
  lengths)`` gives one reward per right-padded row, read at position ``lengths - 1``.
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

from genlab.align.data import (
    TINYWORLD,
    WORLD_FILE,
    pad_right,
    parse_families,
    read_pairs,
    render_answer,
    split_records,
    task_suite,
    world_record,
    world_seed_of,
)
from genlab.core.batches import TensorBatchSource
from genlab.core.checkpoint import load_model_weights, read_model_config, save_model_folder
from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.core.rng import seed_everything
from genlab.core.train_config import TrainConfig
from genlab.core.trainer import Trainer
from genlab.data.tinyworld import preference_pairs
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import TOKENIZER_FILE, load_gpt
from genlab.nets.gpt import GPT, GPTConfig

KIND = "reward"


class RewardModel(nn.Module):
    """A GPT backbone without its unembedding, and a scalar head on the last real token."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = GPT(config)
        # The final hidden states come out where the logits would (InstructGPT removes the
        # unembedding layer); with tied weights the embedding itself stays.
        self.backbone.lm_head = nn.Identity()
        self.head = nn.Linear(config.n_embd, 1)
        nn.init.normal_(self.head.weight, std=1.0 / math.sqrt(config.n_embd + 1))
        nn.init.zeros_(self.head.bias)
        self.tokenizer: Tokenizer | None = None

    @classmethod
    def from_gpt(cls, gpt: GPT) -> RewardModel:
        """A reward model whose backbone starts from ``gpt``'s weights (an SFT or pretrained LM)."""
        model = cls(gpt.config)
        weights = {k: v for k, v in gpt.state_dict().items() if not k.startswith("lm_head.")}
        model.backbone.load_state_dict(weights, strict=True)
        return model.to(gpt.wte.weight.device)

    def forward(self, idx: Tensor, lengths: Tensor) -> Tensor:
        """Rewards (B,) of right-padded rows ``idx`` (B, T) whose real lengths are ``lengths``.

        Attention is causal, so the padding after a row's last token never reaches it and no
        attention mask is needed.
        """
        hidden, _ = self.backbone(idx)
        last = hidden[torch.arange(idx.shape[0], device=idx.device), lengths - 1]
        return self.head(last).squeeze(-1).float()

    @torch.no_grad()
    def score_ids(self, sequences: Sequence[Sequence[int]], batch_size: int = 64) -> list[float]:
        """Rewards of rendered conversations (token ids, each ending with ``<|eot|>``).

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
            chunk = [list(s)[-block:] for s in sequences[i : i + batch_size]]
            if any(len(s) == 0 for s in chunk):
                raise GenlabError("cannot score an empty token sequence")
            idx = pad_right(chunk, 0).to(device)
            lengths = torch.tensor([len(s) for s in chunk], device=device)
            out.extend(self(idx, lengths).tolist())
        self.train(was_training)
        return out

    def score(
        self,
        prompts: Sequence[str | Sequence[Mapping[str, Any]]],
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
        seqs = [
            render_answer(self.tokenizer, p, r)[0] for p, r in zip(prompts, responses, strict=True)
        ]
        return self.score_ids(seqs, batch_size)


def save_reward_model(folder: str | os.PathLike, model: RewardModel, tokenizer: Tokenizer) -> Path:
    """Write a reward-model folder (``kind: reward``) that :func:`load_reward_model` reads."""
    path = save_model_folder(folder, model, KIND, model.config.to_dict())
    tokenizer.save(path / TOKENIZER_FILE)
    return path


def load_reward_model(folder: str | os.PathLike, device: str | torch.device = "cpu") -> RewardModel:
    """Open a reward-model folder (a ``genlab reward`` run) in eval mode, tokenizer attached."""
    folder = Path(folder)
    meta = read_model_config(folder, KIND)
    model = RewardModel(GPTConfig.from_dict(meta["config"]))
    load_model_weights(folder, model)
    if not (folder / TOKENIZER_FILE).is_file():
        raise GenlabError(f"{folder} has no {TOKENIZER_FILE}; a reward model needs its tokenizer")
    model.tokenizer = Tokenizer.load(folder / TOKENIZER_FILE)
    return model.to(device).eval()


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


def encode_pairs(
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
    """What the reward model learns from. ``data``: "tinyworld" or a comparisons JSONL."""

    base: str = "runs/sft"  # a GPT folder (SFT run, as in InstructGPT, or a pretraining run)
    out: str = "runs/reward"
    data: str = TINYWORLD
    families: str | tuple[str, ...] | None = None  # TinyWorld families (default: the demo's)
    world_seed: int | None = None  # default: the world the base model was trained on
    n_pairs: int = 4000  # TinyWorld comparisons to train on
    n_eval_pairs: int = 400  # held-out comparisons per split (validation, test), judge-ordered
    label_noise: float = 0.1  # fraction of flipped training labels (raters disagree)
    val_fraction: float = 0.1  # of a user's JSONL, held out for the accuracy
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            max_steps=300,
            batch_size=32,
            lr=3e-4,
            warmup_steps=20,
            weight_decay=0.0,
            eval_every=100,
            eval_batches=4,
            checkpoint_every=0,
            keep_last=1,
        )
    )


def _pairs(cfg: RewardConfig) -> tuple[list[dict], list[dict], list[dict], int | None, tuple]:
    """Training, validation and test comparisons; the world seed and families on TinyWorld.

    TinyWorld's held-out comparisons are ordered by the judge itself (no label noise): accuracy
    on them says how well the model recovers the true preference, not the raters' noise. A
    user's file has one held-out part, used for both.
    """
    if cfg.data != TINYWORLD:
        train, held = split_records(read_pairs(cfg.data), cfg.val_fraction)
        return train, held, held, None, ()
    families = parse_families(cfg.families)
    seed = cfg.world_seed if cfg.world_seed is not None else world_seed_of(cfg.base)
    suite = task_suite(seed, families)
    s, n = cfg.train.seed, cfg.n_eval_pairs
    train = preference_pairs(suite, cfg.n_pairs, seed=s, noise=cfg.label_noise, split="train")
    val = preference_pairs(suite, n, seed=s, noise=0.0, split="validation")
    test = preference_pairs(suite, n, seed=s, noise=0.0, split="test")
    return train, val, test, seed, families


def train_reward(cfg: RewardConfig, resume: bool = False) -> dict[str, float]:
    """Train a reward model from ``cfg.base`` on comparisons; the run folder ``cfg.out`` is a
    ``reward`` checkpoint. Returns the final metrics with ``test_accuracy`` (held out)."""
    gpt, tokenizer = load_gpt(cfg.base, device=pick_device(cfg.train.device))
    train_pairs, val_pairs, test_pairs, world_seed, families = _pairs(cfg)
    seed_everything(cfg.train.seed)  # the head's initial weights follow the seed
    model = RewardModel.from_gpt(gpt)
    block = gpt.config.block_size
    train_tensors, dropped = encode_pairs(tokenizer, train_pairs, block)
    val_tensors, _ = encode_pairs(tokenizer, val_pairs, block)
    extra = {TOKENIZER_FILE: tokenizer.to_json().encode()}
    if world_seed is not None:
        extra[WORLD_FILE] = world_record(world_seed, families)
    trainer = Trainer(
        model,
        reward_step,
        TensorBatchSource(train_tensors, seed=cfg.train.seed),
        cfg.train,
        cfg.out,
        eval_data=TensorBatchSource(val_tensors, seed=cfg.train.seed + 1),
        model_kind=KIND,
        model_config=model.config.to_dict(),
        extra_files=extra,
        resume=resume,
    )
    metrics = trainer.fit()
    trained = load_reward_model(cfg.out, device=trainer.device)
    metrics["test_accuracy"] = pairwise_accuracy(trained, test_pairs)
    metrics["train_pairs"] = float(len(train_pairs) - dropped)
    metrics["dropped_pairs"] = float(dropped)
    metrics["test_pairs"] = float(len(test_pairs))
    return metrics
