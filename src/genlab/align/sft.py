"""Supervised fine-tuning: teach a pretrained model to answer, by imitating demonstrations.

Step (2) of the ChatGPT recipe (InstructGPT, Ouyang et al., 2022, section 3.5; FLAN, Wei et al.,
2022): continue training the language model on conversations written the way the assistant
should answer. Two details make it work:

- **The loss is on the assistant's tokens only.** Each conversation is laid out by the chat
  template (``Tokenizer.render_chat``), whose mask is 1 on what the assistant writes, its
  closing ``<|eot|>`` included (a model never trained to emit the end of its turn does not stop).
  User and system tokens are context, not targets: their target is ``IGNORE_INDEX`` (-100),
  which the loss ignores.
- **Short conversations are packed.** Rows of the context length hold several conversations back
  to back instead of one conversation and mostly padding. Each token carries the id of its
  conversation (``segment_ids``); attention stays inside a conversation and positions restart at
  0 in each one (``segment_positions``), so a packed row computes exactly what the conversations
  would alone (the test checks this), at a fraction of the cost.

``sft(SFTConfig, conversations, held_out)`` trains through the shared ``Trainer``; the run folder is a GPT checkpoint that
``genlab chat`` opens, or with ``tune`` an adapter around the base (``genlab sft --adapter lora``).
A soft prompt goes before each conversation, so conversations are then not packed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from genlab.align.stage import Tune, fine_tuning, stage_trainer, whole
from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.core.rng import seed_everything
from genlab.core.train_config import TrainConfig
from genlab.data.records import Messages
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.nets.gpt import IGNORE_INDEX, segment_positions

PAD_SEGMENT = -1


def conversation_example(
    tokenizer: Tokenizer, messages: Sequence[Mapping[str, Any]]
) -> tuple[list[int], list[int]]:
    """Inputs and next-token targets of one conversation; a target is ``IGNORE_INDEX`` unless the token
    it names is written by the assistant (mask 1 in the chat template)."""
    ids, mask = tokenizer.render_chat(messages)
    targets = [t if m else IGNORE_INDEX for t, m in zip(ids[1:], mask[1:], strict=True)]
    return ids[:-1], targets


def pack(
    examples: Sequence[tuple[list[int], list[int]]], block_size: int, pad_id: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Pack (inputs, targets) examples, in order, into rows of ``block_size`` tokens.

    Returns ``(inputs, targets, segment_ids)``, each (rows, block_size). An example that does not
    fit in the current row starts a new one (examples are never split); segment ids count the
    examples of a row from 0, and the padding at a row's end is segment -1 with target ``IGNORE_INDEX``.
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
    targets = torch.full((len(rows), block_size), IGNORE_INDEX, dtype=torch.long)
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
    targets = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
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
    learned = (targets != IGNORE_INDEX).sum()
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
    kept = [e for e in examples if len(e[0]) <= block_size and any(t != IGNORE_INDEX for t in e[1])]
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
    """What to fine-tune, where to write it, and how to train."""

    base: str = "runs/pretrain"  # a GPT folder (pretraining run)
    out: str = "runs/sft"  # run folder to write
    packed: bool = True  # pack short conversations into full rows (segment ids)
    train: TrainConfig = field(default_factory=lambda: fine_tuning(400, 1e-3, 20))


def sft(
    cfg: SFTConfig,
    conversations: Sequence[Messages],
    held_out: Sequence[Messages],
    extra_files: Mapping[str, bytes] | None = None,
    resume: bool = False,
    tune: Tune = whole,
) -> dict[str, float]:
    """Fine-tune ``cfg.base`` on ``conversations`` (validation loss on ``held_out``) into
    ``cfg.out``, a folder that also holds ``extra_files``: a GPT, or what ``tune`` trains."""
    model, tokenizer = load_gpt(cfg.base, device=pick_device(cfg.train.device))
    seed_everything(cfg.train.seed)  # an adapter's initial weights follow the seed
    tuned = tune(model, cfg.base)
    block = model.config.block_size - model.prefix_length  # a soft prompt takes its positions
    packed = cfg.packed and not model.prefix_length
    train_tensors, dropped = encode(tokenizer, conversations, block, packed, cfg.train.seed)
    held_tensors, _ = encode(tokenizer, held_out, block, packed, cfg.train.seed + 1)
    trainer = stage_trainer(
        tuned.module.train(),
        sft_step,
        train_tensors,
        held_tensors,
        cfg.train,
        cfg.out,
        tuned.kind,
        tokenizer,
        model.config.block_size,
        extra_files,
        resume,
        tuned.callbacks,
    )
    metrics = trainer.fit()
    metrics["trainable_parameters"] = float(
        sum(p.numel() for p in tuned.module.parameters() if p.requires_grad)
    )
    metrics["conversations"] = float(len(conversations) - dropped)
    metrics["dropped"] = float(dropped)
    metrics["rows"] = float(len(train_tensors[0]))
    return metrics
