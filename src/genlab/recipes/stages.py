"""The ChatGPT recipe's stages as runnable units: where each stage's records come from, plus
the stage's own settings.

``genlab.align`` trains on records and knows nothing of TinyWorld; these configs pair each
stage's config with a :mod:`~genlab.data.record_sources` spec (a JSONL file or TinyWorld), and
``run_*`` loads the records and trains. ``genlab sft | reward | ppo | dpo`` and the demo run them,
and the CLI's options are generated from these dataclasses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from genlab.align.dpo import DPOConfig, dpo
from genlab.align.ppo import ppo
from genlab.align.ppo_config import PPOConfig
from genlab.align.ranked_samples import ranked_comparisons
from genlab.align.reward import RewardConfig, train_reward
from genlab.align.sft import SFTConfig, sft
from genlab.core.device import pick_device
from genlab.data.record_sources import ComparisonData, ConversationData, PromptData
from genlab.methods.autoregressive.checkpoint import load_gpt


@dataclass
class SFTStage:
    """Supervised fine-tuning on demonstrations."""

    sft: SFTConfig = field(default_factory=SFTConfig)
    data: ConversationData = field(default_factory=ConversationData)


@dataclass
class RewardStage:
    """A reward model from comparisons."""

    reward: RewardConfig = field(default_factory=RewardConfig)
    data: ComparisonData = field(default_factory=ComparisonData)


@dataclass
class PPOStage:
    """PPO against a reward model on a pool of prompts."""

    ppo: PPOConfig = field(default_factory=PPOConfig)
    data: PromptData = field(default_factory=PromptData)


@dataclass
class DPOStage:
    """Direct preference optimisation on comparisons."""

    dpo: DPOConfig = field(default_factory=DPOConfig)
    data: ComparisonData = field(default_factory=lambda: ComparisonData(n_eval_pairs=200))


def run_sft(stage: SFTStage, resume: bool = False) -> dict[str, float]:
    cfg = stage.sft
    train, held, files = stage.data.load(cfg.base, cfg.train.seed)
    return sft(cfg, train, held, files, resume)


def ranked(
    data: ComparisonData, model_dir: str, seeds: dict[str, int], device: str
) -> dict[str, list[Any]]:
    """For each split (with its seed), comparisons of the model in ``model_dir``'s own answers to
    that split's prompts, ranked by the judge (``data.ranked_per_family`` per family to train)."""
    model, tokenizer = load_gpt(model_dir, device=pick_device(device))
    out = {}
    for split, seed in seeds.items():
        prompts, judge = data.ranking(model_dir, seed, split)
        out[split] = ranked_comparisons(
            model,
            tokenizer,
            prompts,
            judge,
            data.samples_per_prompt,
            noise=data.label_noise,
            seed=seed,
        )
    return out


def shuffled_in(records: list[Any], more: list[Any], seed: int) -> list[Any]:
    """``records`` and ``more`` in one seeded random order."""
    mixed = [*records, *more]
    random.Random(seed).shuffle(mixed)
    return mixed


def run_reward(stage: RewardStage, resume: bool = False) -> dict[str, float]:
    cfg = stage.reward
    train, val, test, files = stage.data.load(cfg.base, cfg.train.seed)
    if stage.data.ranked_per_family > 0:
        seed = cfg.train.seed
        own = ranked(stage.data, cfg.base, {"train": seed}, cfg.train.device)
        train = shuffled_in(train, own["train"], seed)
    return train_reward(cfg, train, val, test, files, resume)


def run_ppo(stage: PPOStage, resume: bool = False) -> dict[str, float]:
    cfg = stage.ppo
    prompts, files = stage.data.load(cfg.policy, cfg.seed)
    heldout, gold_fn = stage.data.heldout(cfg.policy, cfg.seed)
    return ppo(cfg, prompts, files, resume, heldout_prompts=heldout, gold_fn=gold_fn)


def run_dpo(stage: DPOStage, resume: bool = False) -> dict[str, float]:
    cfg = stage.dpo
    train, held, _, files = stage.data.load(cfg.policy, cfg.train.seed)
    if stage.data.ranked_per_family > 0:  # held out: the kind of pairs it trains on, if any
        seed = cfg.train.seed
        own = ranked(
            stage.data, cfg.policy, {"train": seed, "validation": seed + 1}, cfg.train.device
        )
        train = shuffled_in(train, own["train"], seed)
        held = own["validation"] or held
    return dpo(cfg, train, held, files, resume)
