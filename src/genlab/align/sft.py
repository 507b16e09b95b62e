"""Supervised fine-tuning: teach a pretrained model to answer, by imitating demonstrations.

Step (2) of the ChatGPT recipe (InstructGPT, Ouyang et al., 2022, section 3.5; FLAN, Wei et al.,
2022): continue training the language model on conversations written the way the assistant
should answer. Two details make it work:

- **The loss is on the assistant's tokens only.** Each conversation is laid out by the chat
  template (``Tokenizer.render_chat``), whose mask is 1 on what the assistant writes, its
  closing ``<|eot|>`` included (a model never trained to emit the end of its turn does not stop).
  User and system tokens are context, not targets: their target is -100, which the loss ignores.
- **Short conversations are packed.** Rows of the context length hold several conversations back
  to back instead of one conversation and mostly padding. Each token carries the id of its
  conversation (``segment_ids``); attention stays inside a conversation and positions restart at
  0 in each one (``segment_positions``), so a packed row computes exactly what the conversations
  would alone (the test checks this), at a fraction of the cost.

``sft(SFTConfig)`` trains through the shared ``Trainer``; the run folder is a GPT checkpoint that
``genlab chat`` opens.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from genlab.align.data import (
    TINYWORLD,
    WORLD_FILE,
    parse_families,
    read_conversations,
    split_records,
    task_suite,
    world_record,
    world_seed_of,
)
from genlab.core.batches import TensorBatchSource
from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.core.train_config import TrainConfig
from genlab.core.trainer import Trainer
from genlab.data.tinyworld import demonstrations
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import TOKENIZER_FILE, load_gpt
from genlab.nets.gpt import segment_positions

IGNORE = -100
PAD_SEGMENT = -1


def conversation_example(
    tokenizer: Tokenizer, messages: Sequence[Mapping[str, Any]]
) -> tuple[list[int], list[int]]:
    """Inputs and next-token targets of one conversation; a target is ``-100`` unless the token
    it names is written by the assistant (mask 1 in the chat template)."""
    ids, mask = tokenizer.render_chat(messages)
    targets = [t if m else IGNORE for t, m in zip(ids[1:], mask[1:], strict=True)]
    return ids[:-1], targets


def pack(
    examples: Sequence[tuple[list[int], list[int]]], block_size: int, pad_id: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Pack (inputs, targets) examples, in order, into rows of ``block_size`` tokens.

    Returns ``(inputs, targets, segment_ids)``, each (rows, block_size). An example that does not
    fit in the current row starts a new one (examples are never split); segment ids count the
    examples of a row from 0, and the padding at a row's end is segment -1 with target -100.
    """
    rows: list[list[tuple[list[int], list[int]]]] = [[]]
    used = 0
    for x, y in examples:
        if len(x) > block_size:
            raise GenlabError(f"an example of {len(x)} tokens does not fit in {block_size}")
        if used + len(x) > block_size:
            rows.append([])
            used = 0
        rows[-1].append((x, y))
        used += len(x)
    inputs = torch.full((len(rows), block_size), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), block_size), IGNORE, dtype=torch.long)
    segments = torch.full((len(rows), block_size), PAD_SEGMENT, dtype=torch.long)
    for r, row in enumerate(rows):
        start = 0
        for s, (x, y) in enumerate(row):
            end = start + len(x)
            inputs[r, start:end] = torch.tensor(x)
            targets[r, start:end] = torch.tensor(y)
            segments[r, start:end] = s
            start = end
    return inputs, targets, segments


def pad_examples(
    examples: Sequence[tuple[list[int], list[int]]], block_size: int, pad_id: int
) -> tuple[Tensor, Tensor]:
    """One example per row, right-padded (no packing): ``(inputs, targets)``."""
    length = min(block_size, max(len(x) for x, _ in examples))
    inputs = torch.full((len(examples), length), pad_id, dtype=torch.long)
    targets = torch.full((len(examples), length), IGNORE, dtype=torch.long)
    for r, (x, y) in enumerate(examples):
        inputs[r, : len(x)] = torch.tensor(x)
        targets[r, : len(y)] = torch.tensor(y)
    return inputs, targets


def sft_step(model: nn.Module, batch: tuple[Tensor, ...]) -> tuple[Tensor, dict[str, Any]]:
    """Mean cross-entropy over the assistant tokens of a batch (packed when it has segments)."""
    if len(batch) == 3:
        inputs, targets, segments = batch
        _, loss = model(
            inputs, targets, positions=segment_positions(segments), segment_ids=segments
        )
    else:
        inputs, targets = batch
        _, loss = model(inputs, targets)
    learned = (targets != IGNORE).sum()
    return loss, {"tokens": float(inputs.numel()), "assistant_tokens": learned.float()}


def encode(
    tokenizer: Tokenizer,
    conversations: Sequence[Sequence[Mapping[str, Any]]],
    block_size: int,
    packed: bool,
    seed: int,
) -> tuple[tuple[Tensor, ...], int]:
    """Training tensors of conversations (shuffled by ``seed`` before packing) and how many were
    dropped for not fitting in the context."""
    examples = [conversation_example(tokenizer, c) for c in conversations]
    kept = [e for e in examples if len(e[0]) <= block_size and any(t != IGNORE for t in e[1])]
    if not kept:
        raise GenlabError(f"no conversation fits in the model's context of {block_size} tokens")
    random.Random(seed).shuffle(kept)
    tensors = (
        pack(kept, block_size, tokenizer.pad_id)
        if packed
        else pad_examples(kept, block_size, tokenizer.pad_id)
    )
    return tensors, len(examples) - len(kept)


@dataclass
class SFTConfig:
    """What to fine-tune and on what. ``data``: "tinyworld" or a ``{"messages"}`` JSONL."""

    base: str = "runs/pretrain"  # a GPT folder (pretraining run)
    out: str = "runs/sft"
    data: str = TINYWORLD
    families: str | tuple[str, ...] | None = None  # TinyWorld families (default: the demo's)
    world_seed: int | None = None  # default: the world the base model was trained on
    n_train: int = 12000  # TinyWorld demonstrations
    n_eval: int = 300  # TinyWorld validation demonstrations (validation loss)
    val_fraction: float = 0.05  # of a user's JSONL, held out for the validation loss
    packed: bool = True
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            max_steps=400,
            batch_size=32,
            lr=1e-3,
            warmup_steps=20,
            weight_decay=0.0,
            eval_every=100,
            eval_batches=4,
            checkpoint_every=0,
            keep_last=1,
        )
    )


def _conversations(cfg: SFTConfig) -> tuple[list, list, int | None, tuple[str, ...]]:
    if cfg.data != TINYWORLD:
        train, held = split_records(read_conversations(cfg.data), cfg.val_fraction)
        return train, held, None, ()
    families = parse_families(cfg.families)
    seed = cfg.world_seed if cfg.world_seed is not None else world_seed_of(cfg.base)
    suite = task_suite(seed, families)
    s = cfg.train.seed
    train = [d["messages"] for d in demonstrations(suite, cfg.n_train, seed=s, split="train")]
    held = [d["messages"] for d in demonstrations(suite, cfg.n_eval, seed=s, split="validation")]
    return train, held, seed, families


def sft(cfg: SFTConfig, resume: bool = False) -> dict[str, float]:
    """Fine-tune ``cfg.base`` on conversations into ``cfg.out`` (a GPT checkpoint folder)."""
    model, tokenizer = load_gpt(cfg.base, device=pick_device(cfg.train.device))
    train, held, world_seed, families = _conversations(cfg)
    block = model.config.block_size
    train_tensors, dropped = encode(tokenizer, train, block, cfg.packed, cfg.train.seed)
    held_tensors, _ = encode(tokenizer, held, block, cfg.packed, cfg.train.seed + 1)
    extra = {TOKENIZER_FILE: tokenizer.to_json().encode()}
    if world_seed is not None:
        extra[WORLD_FILE] = world_record(world_seed, families)
    trainer = Trainer(
        model.train(),
        sft_step,
        TensorBatchSource(train_tensors, seed=cfg.train.seed),
        cfg.train,
        cfg.out,
        eval_data=TensorBatchSource(held_tensors, seed=cfg.train.seed + 1),
        model_kind="gpt",
        model_config=model.config.to_dict(),
        extra_files=extra,
        resume=resume,
    )
    metrics = trainer.fit()
    metrics["conversations"] = float(len(train) - dropped)
    metrics["dropped"] = float(dropped)
    metrics["rows"] = float(len(train_tensors[0]))
    return metrics
