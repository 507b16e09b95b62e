"""Batch sources: the rows of step ``s``'s global batch are a pure function of ``(seed, s)``.

The trainer never iterates a loader. It asks a source for rows ``[start, stop)`` of the global
batch of a given optimizer step, and gives each process and each accumulation micro-batch its
own slice of it. Because the batch depends only on the seed and the step, a run resumed from a
checkpoint, or split over any number of processes, sees exactly the batches a single
uninterrupted process would: that is what makes exact resume and the torchrun equivalence hold,
with no data-loader state to save. Any object with this ``get_batch`` method plugs in.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from genlab.core.errors import GenlabError

Batch = Any
"""Whatever a step function takes: a tensor, or a tuple/list/dict of tensors."""


@runtime_checkable
class BatchSource(Protocol):
    def get_batch(self, step: int, start: int, stop: int, batch_size: int) -> Batch:
        """Rows ``[start, stop)`` of the ``batch_size``-row global batch of ``step``."""
        ...


def _check_rows(start: int, stop: int, batch_size: int) -> None:
    if not 0 <= start < stop <= batch_size:
        raise GenlabError(f"rows [{start}, {stop}) are not inside a batch of {batch_size}")


class TensorBatchSource:
    """Rows of in-memory tensors, shuffled anew each epoch without replacement.

    The global batches laid end to end read one permutation per epoch: row ``j`` of step ``s``
    is sample ``s * batch_size + j`` of that stream, and epoch ``e``'s permutation is drawn
    from ``(seed, e)``. ``tensors`` is one tensor or a tuple of tensors sharing their first
    dimension (inputs and labels); a batch has the same structure.
    """

    def __init__(self, tensors: torch.Tensor | tuple[torch.Tensor, ...], seed: int = 0):
        self.single = isinstance(tensors, torch.Tensor)
        self.tensors = (tensors,) if self.single else tuple(tensors)
        self.n = len(self.tensors[0])
        if self.n == 0 or any(len(t) != self.n for t in self.tensors):
            raise GenlabError("TensorBatchSource needs non-empty tensors of equal length")
        self.seed = seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.pop(min(self._perms))
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._perms[epoch]

    def get_batch(
        self, step: int, start: int, stop: int, batch_size: int
    ) -> torch.Tensor | tuple[torch.Tensor, ...]:
        _check_rows(start, stop, batch_size)
        pos = np.arange(step * batch_size + start, step * batch_size + stop)
        rows = np.empty(len(pos), dtype=np.int64)
        for epoch in np.unique(pos // self.n):
            mask = pos // self.n == epoch
            rows[mask] = self._perm(int(epoch))[pos[mask] % self.n]
        index = torch.from_numpy(rows)
        out = tuple(t[index] for t in self.tensors)
        return out[0] if self.single else out


class TokenWindowSource:
    """Random windows of a token array for next-token prediction (nanoGPT's ``get_batch``).

    ``tokens`` is a 1-D integer array, typically a ``np.memmap`` of uint16/uint32 ids written
    once by the tokenizer, so a corpus larger than memory costs nothing to open. Row ``j`` of
    step ``s`` starts at offset ``o`` drawn from ``(seed, s)``; it returns inputs
    ``tokens[o:o+T]`` and targets ``tokens[o+1:o+T+1]`` as int64 ``(rows, T)`` tensors.
    """

    def __init__(self, tokens: np.ndarray, block_size: int, seed: int = 0):
        if tokens.ndim != 1:
            raise GenlabError(f"token array must be 1-D, got shape {tokens.shape}")
        if len(tokens) < block_size + 1:
            raise GenlabError(
                f"only {len(tokens)} tokens: a window of block size {block_size} needs "
                f"{block_size + 1}; use more text or a smaller --block-size"
            )
        self.tokens = tokens
        self.block_size = block_size
        self.seed = seed

    def get_batch(
        self, step: int, start: int, stop: int, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _check_rows(start, stop, batch_size)
        high = len(self.tokens) - self.block_size
        offsets = np.random.default_rng([self.seed, step]).integers(0, high, size=batch_size)
        window = np.stack([self.tokens[o : o + self.block_size + 1] for o in offsets[start:stop]])
        window = torch.from_numpy(window.astype(np.int64))
        return window[:, :-1], window[:, 1:]
