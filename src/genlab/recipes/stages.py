"""The ChatGPT recipe's stages as runnable units: where each stage's records come from, plus
the stage's own settings.

``genlab.align`` trains on records and knows nothing of TinyWorld; these configs pair each
stage's config with a :mod:`~genlab.data.record_sources` spec (a JSONL file or TinyWorld), and
``run_*`` loads the records and trains. ``genlab sft | reward | ppo | dpo`` and the demo run them,
and the CLI's options are generated from these dataclasses. SFT and DPO train the whole model, or
with ``adapter`` (``--adapter lora``) only an adapter around the frozen starting model
(``genlab.adapt``): the run folder is then an adapter run that ``genlab.load`` opens.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from genlab.adapt.adapted import KIND as ADAPTER_KIND
from genlab.adapt.adapted import Adapted
from genlab.adapt.config import AdapterOptions
from genlab.adapt.inject import base_only
from genlab.adapt.peft_format import write_peft_files
from genlab.align.dpo import DPOConfig, dpo
from genlab.align.ppo import ppo
from genlab.align.ppo_config import PPOConfig
from genlab.align.ranked_samples import ranked_comparisons
from genlab.align.reward import RewardConfig, train_reward
from genlab.align.sft import SFTConfig, sft
from genlab.align.stage import Tune, Tuned, whole
from genlab.core.callbacks import Callback
from genlab.core.checkpoint import MODEL_FILE, file_sha256, read_model_config
from genlab.core.device import pick_device
from genlab.core.distributed import dist_info
from genlab.core.errors import GenlabError
from genlab.core.trainer import Trainer
from genlab.data.record_sources import ComparisonData, ConversationData, PromptData
from genlab.data.records import read_jsonl, write_jsonl
from genlab.data.tokenizer import TOKENIZER_FILE, Tokenizer
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.nets.gpt import GPT

log = logging.getLogger(__name__)
RANKED_DIR = "ranked"  # in a model folder: its own answers to prompts, ranked (see ranked())


@dataclass
class SFTStage:
    """Supervised fine-tuning on demonstrations."""

    sft: SFTConfig = field(default_factory=SFTConfig)
    data: ConversationData = field(default_factory=ConversationData)
    adapter: AdapterOptions = field(default_factory=AdapterOptions)


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
    adapter: AdapterOptions = field(default_factory=AdapterOptions)


class PeftFiles(Callback):
    """Write PEFT's files (``adapter_config.json``, ``adapter_model.safetensors``) into every
    checkpoint of an adapter run and at its top, so tools built on PEFT open the run as it is.
    An adapter with no PEFT form (a bottleneck, a LoRA beyond GPT-2's four block layers, a soft
    prompt with token rows) is said once in the log and kept in genlab's files alone."""

    def __init__(self, adapted: Adapted) -> None:
        self.adapted = adapted
        self.possible = True

    def on_checkpoint_end(self, trainer: Trainer, path: Path) -> None:
        if not dist_info().is_main or not self.possible:
            return
        try:
            for folder in (path, trainer.run_dir):
                write_peft_files(self.adapted, folder)
        except GenlabError as e:
            log.warning("no PEFT files for %s: %s", trainer.run_dir, e)
            self.possible = False


def tuning(options: AdapterOptions) -> Tune:
    """What a stage trains: the whole GPT without ``--adapter``; otherwise an adapter around
    the frozen GPT (LoRA's default targets: ``attn.qkv``, ``attn.proj``; with
    ``special_tokens`` the special tokens' embedding rows train too, with ``all_tokens`` every
    row), saved alone and in PEFT's
    format, whose DPO reference is the GPT with the adapter switched off."""
    config = options.config()
    if config is None:
        return whole

    def tune(gpt: GPT, folder: str) -> Tuned:
        if read_model_config(folder)["kind"] == ADAPTER_KIND:
            raise GenlabError(
                f"{folder} is an adapter run: train the new adapter on a full model (its base)"
            )
        tokens = Tokenizer.load(Path(folder) / TOKENIZER_FILE).special.values()
        if options.all_tokens:
            tokens = range(gpt.config.vocab_size)
        wanted = options.all_tokens or options.special_tokens
        chosen = replace(config, tokens=tuple(tokens)) if wanted else config
        adapted = Adapted.around(gpt, folder, chosen)
        return Tuned(adapted, ADAPTER_KIND, lambda: base_only(gpt), (PeftFiles(adapted),))

    return tune


def run_sft(stage: SFTStage, resume: bool = False) -> dict[str, float]:
    cfg = stage.sft
    tune = tuning(stage.adapter)  # bad adapter options fail before the records load
    train, held, files = stage.data.load(cfg.base, cfg.train.seed)
    return sft(cfg, train, held, files, resume, tune)


def ranked(
    data: ComparisonData, model_dir: str, seeds: dict[str, int], device: str
) -> dict[str, list[Any]]:
    """For each split (with its seed), comparisons of the model in ``model_dir``'s own answers to
    that split's prompts, ranked by the judge (``data.ranked_per_family`` per family to train).

    They are kept in ``model_dir/ranked/``, named by a hash of the weights and the ranking's
    settings, so the reward model and DPO, both starting from the same SFT model with the same
    seed, sample its answers once (the same seed gives the same records)."""
    weights_file = Path(model_dir) / MODEL_FILE
    weights = file_sha256(weights_file) if weights_file.is_file() else None  # None: not kept
    model: Any = None
    out = {}
    for split, seed in seeds.items():
        prompts, judge = data.ranking(model_dir, seed, split)
        key = [weights, prompts, data.samples_per_prompt, data.label_noise, seed]
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        path = Path(model_dir) / RANKED_DIR / f"{split}-{digest}.jsonl"
        if weights and path.is_file():
            out[split] = read_jsonl(path, "ranked comparisons")
            continue
        if model is None:
            model, tokenizer = load_gpt(model_dir, device=pick_device(device))
        out[split] = ranked_comparisons(
            model,
            tokenizer,
            prompts,
            judge,
            data.samples_per_prompt,
            noise=data.label_noise,
            seed=seed,
        )
        if weights and dist_info().is_main:
            write_jsonl(path, out[split])
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
    tune = tuning(stage.adapter)
    train, held, _, files = stage.data.load(cfg.policy, cfg.train.seed)
    if stage.data.ranked_per_family > 0:  # held out: the kind of pairs it trains on, if any
        seed = cfg.train.seed
        own = ranked(
            stage.data, cfg.policy, {"train": seed, "validation": seed + 1}, cfg.train.device
        )
        train = shuffled_in(train, own["train"], seed)
        held = own["validation"] or held
    return dpo(cfg, train, held, files, resume, tune)
