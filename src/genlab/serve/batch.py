"""The running batch: the rows decoding together and the one KV cache they share.

The cache's rows are *left-padded* and right-aligned: every row's latest token sits in the last
column. A newcomer is prefilled (with the other newcomers of that moment) in a cache of its own,
then its keys and values are copied into free rows of the batch's cache, right-aligned (the rows
are preallocated, so sequences join and leave without the whole cache being copied); when its
prompt is longer than the batch's current length, the existing rows are shifted right and padded
instead. An attention mask hides each row's padding and explicit position ids keep each
sequence's positions its own, so a request's tokens do not depend on who else is in the batch.
Leading columns that only hold padding are trimmed whenever the cache is laid out anew (a
newcomer that shifts the rows, or a cache that must grow), so the cache never outgrows the
model's context while its longest sequence fits.

With adapters (``per_row``), each row runs its own sequence's adapter, or the base: before a
forward pass the rows' adapters are chosen (``genlab.adapt.inject.set_rows``), so one batch
mixes requests for different adapters, as S-LoRA and Punica serve them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from genlab.adapt.inject import set_rows
from genlab.methods.autoregressive.padding import left_pad
from genlab.nets.gpt import GPT, positions_from_mask
from genlab.nets.transformer import KVCache
from genlab.serve.sequences import Row

# Spare cache columns allocated past the longest row, so that the cache is regrown (a copy)
# once every GROW steps rather than at every step.
GROW = 64


class Batch:
    """Up to ``max_batch`` rows, their cache, padding mask, positions and next-token logits.

    ``_store`` preallocates ``max_batch`` rows; ``cache``, the cache the model sees, views its
    first ``len(rows)`` rows. Sequences join by being written into the next free rows and leave
    by later rows moving up, so neither copies the whole cache. Only a relayout does: when a
    newcomer's prompt is longer than the cache (the rows shift right) or the cache is full (it
    grows); leading all-padding columns are trimmed then. ``logits`` cover the tokenizer's
    ``vocab`` ids only. With ``per_row``, every forward pass runs each row's adapter. The cache
    holds ``kv_dtype`` (default: the model's dtype).
    """

    def __init__(
        self,
        model: GPT,
        max_batch: int,
        vocab: int,
        per_row: bool = False,
        kv_dtype: torch.dtype | None = None,
    ) -> None:
        self.model = model
        self.kv_dtype = kv_dtype
        self.max_batch = max_batch
        self.vocab = vocab
        self.per_row = per_row
        self._chosen: tuple[str | None, ...] | None = None  # the adapters set per row now
        self.device = model.wte.weight.device
        self.rows: list[Row] = []
        self._store: KVCache | None = None  # max_batch preallocated rows (see _use)
        self.cache: KVCache | None = None  # the first len(rows) of them, as the model sees them
        self.mask = torch.zeros(0, 0, dtype=torch.bool, device=self.device)  # (B, length)
        self._padded = False
        self._next_pos = torch.zeros(0, dtype=torch.long, device=self.device)  # (B,)
        self.logits = torch.zeros(0, vocab, device=self.device)  # (B, V)

    def add(self, new: list[Row]) -> None:
        """Prefill the newcomers ``new`` and add them to the batch (which is left untouched if
        that fails)."""
        self._join(new, *self._prefill(new))

    def feed(self, tokens: Tensor) -> None:
        """Run the chosen tokens (B,) through the model; store the next logits."""
        assert self.cache is not None
        if self.cache.length + 1 > self.cache.max_len:
            self._relayout(list(range(len(self.rows))))  # regrow the cache
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(self.rows), 1)], dim=1)
        self.choose([row.adapter for row in self.rows])
        logits, _ = self.model(
            tokens[:, None],
            attention_mask=self.mask if self._padded else None,
            positions=self._next_pos[:, None] if self._padded else None,
            cache=self.cache,
        )
        self._next_pos = self._next_pos + 1
        self.logits = logits[:, -1, : self.vocab]

    def choose(self, adapters: Sequence[str | None]) -> None:
        """Make the next forward pass run row ``b`` with ``adapters[b]`` (None: the base); the
        adapters' matrices are stacked anew only when the rows' adapters change."""
        if not self.per_row or tuple(adapters) == self._chosen:
            return
        set_rows(self.model, adapters)
        self._chosen = tuple(adapters)

    def drop(self, keep: list[int]) -> None:
        """Keep only rows ``keep`` (in order), moving each up into the first free row."""
        if not keep:
            self.reset()
            return
        assert self._store is not None and self.cache is not None
        length = self.cache.length
        for dst, src in enumerate(keep):  # src >= dst: no row is overwritten before it moves
            if src != dst:
                self._store.k[:, dst, :, :length] = self._store.k[:, src, :, :length]
                self._store.v[:, dst, :, :length] = self._store.v[:, src, :, :length]
        self._use(len(keep))
        idx = torch.tensor(keep, device=self.device)
        self.rows = [self.rows[r] for r in keep]
        self.mask = self.mask[idx]
        self._padded = not bool(self.mask.all())
        self.logits = self.logits[idx]
        self._next_pos = self._next_pos[idx]

    def reset(self) -> None:
        """Empty the batch (its cache is freed)."""
        self.rows = []
        self._store = None
        self.cache = None
        self.mask = self.mask[:0, :0]
        self._padded = False
        self.logits = self.logits[:0]
        self._next_pos = self._next_pos[:0]

    def _prefill(self, new: list[Row]) -> tuple[KVCache, Tensor, Tensor]:
        """Run the newcomers' prompts together, left-padded among themselves: their cache,
        padding mask and next-token logits."""
        ids, mask = left_pad([row.prompt for row in new])
        width = ids.shape[1]
        ids, mask = ids.to(self.device), mask.bool().to(self.device)
        padded = not bool(mask.all())
        cache = self.model.new_cache(len(new), width, dtype=self.kv_dtype)
        self.choose([row.adapter for row in new])
        logits, _ = self.model(
            ids,
            attention_mask=mask if padded else None,
            positions=positions_from_mask(mask) if padded else None,
            cache=cache,
            last_only=True,
        )
        return cache, mask, logits[:, -1, : self.vocab]

    def _use(self, n: int) -> None:
        """Let the model see the first ``n`` rows of the store."""
        assert self._store is not None and self.cache is not None
        self.cache.k, self.cache.v = self._store.k[:, :n], self._store.v[:, :n]

    def _join(self, new: list[Row], cache: KVCache, mask: Tensor, logits: Tensor) -> None:
        """Add prefilled newcomers: into free rows when their prompts fit in the columns the
        batch already has, else by a relayout that shifts the running rows right."""
        if self.cache is None or mask.shape[1] > self.cache.length:
            self._relayout(list(range(len(self.rows))), new=(new, cache, mask, logits))
            return
        assert self._store is not None
        b, n = len(self.rows), len(new)
        length, width = self.cache.length, mask.shape[1]
        for store, part in ((self._store.k, cache.k), (self._store.v, cache.v)):
            store[:, b : b + n, :, : length - width] = 0  # padding: finite, masked out
            store[:, b : b + n, :, length - width : length] = part
        self._use(b + n)
        self.rows = self.rows + new
        self.mask = torch.cat([self.mask, _pad_left(mask, length)])
        self._padded = not bool(self.mask.all())
        self.logits = torch.cat([self.logits, logits])
        self._next_pos = torch.cat([self._next_pos, mask.sum(-1)])

    def _relayout(
        self,
        keep: list[int],
        new: tuple[list[Row], KVCache, Tensor, Tensor] | None = None,
    ) -> None:
        """Rebuild the batch from rows ``keep`` and the prefilled newcomers ``new``.

        All rows end up right-aligned in a fresh store whose leading columns hold a real token
        of at least one row (all-padding columns are trimmed), with room to grow.
        """
        old = self.cache
        length = old.length if old is not None else 0
        rows = [self.rows[r] for r in keep]
        parts = []  # (k, v, mask, logits, next_pos) per group, rows right-aligned
        if keep and old is not None:
            idx = torch.tensor(keep, device=self.device)
            parts.append(
                (
                    old.k[:, idx, :, :length],
                    old.v[:, idx, :, :length],
                    self.mask[idx],
                    self.logits[idx],
                    self._next_pos[idx],
                )
            )
        if new is not None:
            new_rows, cache, mask, logits = new
            rows += new_rows
            parts.append((cache.k, cache.v, mask, logits, mask.sum(-1)))
        if not rows:
            self.reset()
            return
        width = max(p[2].shape[1] for p in parts)
        mask = torch.cat([_pad_left(p[2], width) for p in parts])
        start = int(mask.any(0).long().argmax())  # first column with a real token
        width -= start
        dtype = parts[0][0].dtype
        context = self.model.config.block_size
        store = self.model.new_cache(self.max_batch, min(context, width + GROW), dtype=dtype)
        b = 0
        for k, v, m, _, _ in parts:
            n, w = m.shape[0], m.shape[1]
            src = max(0, start - (mask.shape[1] - w))  # columns of this group that are trimmed
            dst = width - (w - src)
            store.k[:, b : b + n, :, dst:width] = k[:, :, :, src:w]
            store.v[:, b : b + n, :, dst:width] = v[:, :, :, src:w]
            b += n
        # the new state is complete: commit it
        self.rows = rows
        self._store = store
        self.cache = self.model.new_cache(0, store.max_len, dtype=dtype)
        self.cache.length = width
        self._use(len(rows))
        self.mask = mask[:, start:]
        self._padded = not bool(self.mask.all())
        self.logits = torch.cat([p[3] for p in parts])
        self._next_pos = torch.cat([p[4] for p in parts])


def _pad_left(mask: Tensor, width: int) -> Tensor:
    """``mask`` (B, W) with ``width - W`` padding columns in front."""
    return torch.cat([mask.new_zeros(mask.shape[0], width - mask.shape[1]), mask], dim=1)
