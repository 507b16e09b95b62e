"""Batches of token sequences of different lengths: left padding for prompts, right for targets.

Generation left-pads prompts so that every row's next token lands in the same column; the
attention mask hides the padding and :func:`~genlab.nets.gpt.positions_from_mask` restarts each
row's positions at its first real token, so a padded row computes what it would alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def left_pad(
    seqs: Sequence[Sequence[int]], pad_id: int = 0, length: int | None = None
) -> tuple[Tensor, Tensor]:
    """``(ids, attention_mask)``, both (N, length) int64: each sequence ends at the last column,
    preceded by ``pad_id`` (mask 0)."""
    length = length or max(len(s) for s in seqs)
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), length, dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, length - len(s) :] = torch.tensor(list(s), dtype=torch.long)
            mask[i, length - len(s) :] = 1
    return ids, mask


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int, length: int | None = None) -> Tensor:
    """(N, length) int64 rows, each sequence followed by ``pad_id``."""
    length = length or max(len(s) for s in seqs)
    out = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
    return out
