"""Pretraining: teach a GPT to continue text by next-token prediction.

Step (1) of the ChatGPT recipe (Radford et al., 2018/2019): minimise the cross-entropy of each
token given the ones before it over a corpus. The recipe wires the pieces together: read the
text (genlab's built-in TinyWorld corpus by default, or the user's files, JSONL or a Hugging Face
dataset), train a byte-level BPE tokenizer on it unless one is given, tokenize once into a
memory-mapped file cached beside the run, hold out the tail as validation, and train through the
shared ``Trainer`` (checkpoints, exact resume, torchrun, bf16). The run folder is a GPT checkpoint
that ``genlab generate`` opens.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from genlab.core.batches import TokenWindowSource
from genlab.core.errors import GenlabError
from genlab.core.rng import seed_everything
from genlab.core.train_config import TrainConfig
from genlab.core.trainer import Trainer
from genlab.data.loaders import cached_token_file, iter_texts, source_fingerprint
from genlab.data.tinyworld import World
from genlab.data.tinyworld.records import TINYWORLD
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import KIND, TOKENIZER_FILE
from genlab.nets.gpt import GPT, GPTConfig


@dataclass
class PretrainConfig:
    """What to pretrain on and which model; ``train`` holds the trainer's settings."""

    out: str = "runs/pretrain"  # run folder to write
    data: str = TINYWORLD  # "tinyworld", a file, a folder, a .jsonl, or "hf:NAME[:SPLIT]"
    text_field: str = "text"  # the text field of JSONL records
    builtin_chars: int = 1_500_000  # size of the built-in corpus
    preset: str = "mini"  # model size: tiny | mini | small | base | gpt2
    n_layer: int | None = None  # the preset's shape, changed (None: the preset's)
    n_head: int | None = None
    n_embd: int | None = None
    block_size: int | None = 128  # None: the preset's
    vocab_size: int | None = None  # of a trained tokenizer; default: the preset's
    tokenizer: str | None = None  # an existing tokenizer file/folder instead of training one
    pos: str | None = None  # "learned" or "rope"; default: the preset's
    dropout: float = 0.0  # dropout probability in the model
    init_from: str | None = None  # "hf:FOLDER": continue a local transformers GPT-2
    val_fraction: float = 0.02  # of the tokens held out for eval_loss
    tokenizer_sample_chars: int = 20_000_000  # text the tokenizer trains on, at most
    # Sized to finish in minutes on a 2-core laptop CPU: 500 steps of 16 x 128 tokens.
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            max_steps=500,
            batch_size=16,
            lr=2e-3,
            warmup_steps=50,
            eval_every=100,
            checkpoint_every=100,
            weight_decay=0.1,
        )
    )


def lm_step(
    model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, dict]:
    """Next-token loss on a batch of (inputs, targets) windows."""
    x, y = batch
    _, loss = model(x, y)
    return loss, {"tokens": x.numel()}


def _texts(cfg: PretrainConfig) -> Iterator[str]:
    if cfg.data == TINYWORLD:
        yield from World(cfg.train.seed).corpus(n_chars=cfg.builtin_chars, seed=cfg.train.seed)
    else:
        yield from iter_texts(cfg.data, cfg.text_field)


def _fingerprint(cfg: PretrainConfig) -> str:
    if cfg.data == TINYWORLD:
        return f"tinyworld:seed={cfg.train.seed}:chars={cfg.builtin_chars}"
    return source_fingerprint(cfg.data)


def _head(texts: Iterable[str], n_chars: int) -> Iterator[str]:
    seen = 0
    for text in texts:
        yield text
        seen += len(text)
        if seen >= n_chars:
            return


def _hf_folder(spec: str) -> Path:
    if not spec.startswith("hf:"):
        raise GenlabError(f"--init-from takes hf:FOLDER (a local transformers GPT-2), got {spec}")
    return Path(spec[3:])


def prepare_tokenizer(cfg: PretrainConfig, model_vocab: int) -> Tokenizer:
    """The run's tokenizer: the one already in the run (resume), the one given, GPT-2's for
    ``init_from``, or a new one trained on (a prefix of) the data."""
    in_run = Path(cfg.out) / TOKENIZER_FILE
    if in_run.is_file():
        return Tokenizer.load(in_run)
    if cfg.tokenizer:
        return Tokenizer.load(cfg.tokenizer)
    if cfg.init_from:
        return Tokenizer.load(_hf_folder(cfg.init_from))
    vocab = cfg.vocab_size or model_vocab
    return Tokenizer.train(_head(_texts(cfg), cfg.tokenizer_sample_chars), vocab_size=vocab)


def build_model(cfg: PretrainConfig, tokenizer: Tokenizer) -> GPT:
    """A new GPT of the preset's size (vocabulary from the tokenizer), or GPT-2 weights."""
    if cfg.init_from:
        from genlab.nets.hf_gpt2 import gpt_from_hf

        model = gpt_from_hf(_hf_folder(cfg.init_from))
        if tokenizer.vocab_size > model.config.vocab_size:
            model.resize_vocab(tokenizer.vocab_size)
        return model
    overrides: dict[str, Any] = {"vocab_size": tokenizer.vocab_size, "dropout": cfg.dropout}
    if cfg.block_size:
        overrides["block_size"] = cfg.block_size
    if cfg.pos:
        overrides["pos"] = cfg.pos
    for name in ("n_layer", "n_head", "n_embd"):
        if getattr(cfg, name) is not None:
            overrides[name] = getattr(cfg, name)
    return GPT(GPTConfig.preset(cfg.preset, **overrides))


def load_tokens(cfg: PretrainConfig, tokenizer: Tokenizer) -> np.ndarray:
    """The corpus as token ids (each document after ``<|bos|>``), tokenized once and cached in
    ``.token-cache`` beside the run folder."""
    cache_dir = Path(cfg.out).resolve().parent / ".token-cache"
    return cached_token_file(
        lambda: _texts(cfg),
        _fingerprint(cfg),
        tokenizer.to_json(),
        tokenizer.encode_batch,
        tokenizer.vocab_size,
        cache_dir,
        doc_prefix=[tokenizer.bos_id],
    )


def pretrain(
    cfg: PretrainConfig, resume: bool = False, until: int | None = None
) -> dict[str, float]:
    """Run pretraining into ``cfg.out``; return the final metrics (with validation
    perplexity). ``until`` stops after that step with a checkpoint (``resume`` continues)."""
    if not 0 < cfg.val_fraction < 0.5:
        raise GenlabError(f"val_fraction must be in (0, 0.5), got {cfg.val_fraction}")
    preset_vocab = GPTConfig.preset(cfg.preset).vocab_size
    tokenizer = prepare_tokenizer(cfg, preset_vocab)
    seed_everything(cfg.train.seed)  # the initial weights follow the seed too
    model = build_model(cfg, tokenizer)
    block = model.config.block_size
    tokens = load_tokens(cfg, tokenizer)
    n_val = max(int(len(tokens) * cfg.val_fraction), block + 1)
    if len(tokens) - n_val < block + 1:
        raise GenlabError(
            f"only {len(tokens)} tokens of data: too few for windows of {block} plus a "
            "validation split; give more text or a smaller --block-size"
        )
    train_data = TokenWindowSource(tokens[:-n_val], block, seed=cfg.train.seed)
    eval_data = TokenWindowSource(tokens[-n_val:], block, seed=cfg.train.seed + 1)
    trainer = Trainer(
        model,
        lm_step,
        train_data,
        cfg.train,
        cfg.out,
        eval_data=eval_data,
        model_kind=KIND,
        model_config=model.config.to_dict(),
        extra_files=tokenizer.files(model.config.block_size),
        resume=resume,
    )
    metrics = trainer.fit(until=until)
    if "eval_loss" in metrics:
        metrics["eval_perplexity"] = math.exp(min(metrics["eval_loss"], 50.0))
    metrics["params"] = float(model.num_params())
    metrics["corpus_tokens"] = float(len(tokens))
    return metrics
