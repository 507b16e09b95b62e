"""Continuous batching: many requests share every decoding step of one model.

Decoding one token costs about the same whether the batch holds one sequence or sixteen: the
weights are read once per step and a small batch leaves most of the arithmetic units idle. A
server that answered requests one at a time would waste that. Static batching (wait for a batch,
decode it to the end) wastes it too, since the batch is as slow as its longest member and
newcomers wait for all of it. Continuous batching (Yu et al., 2022, "Orca: A Distributed Serving
System for Transformer-Based Generative Models", iteration-level scheduling) lets sequences join
and leave the running batch between decoding steps.

With genlab's GPT the batch keeps one KV cache whose rows are *left-padded* and right-aligned:
every row's latest token sits in the last column. A newcomer is prefilled (with the other
newcomers of that moment) in a cache of its own, then its keys and values are copied into free
rows of the batch's cache, right-aligned (the rows are preallocated, so sequences join and leave
without the whole cache being copied); when its prompt is longer than the batch's current
length, the existing rows are shifted right and padded instead. An attention mask hides each row's padding and explicit
position ids keep each sequence's positions its own, so a request's tokens do not depend on who
else is in the batch. Rows that finish, or whose client went away, are dropped. Leading columns
that only hold padding are trimmed whenever the cache is laid out anew (a newcomer that shifts
the rows, or a cache that must grow), so the cache never outgrows the model's context while its
longest sequence fits.

Every sequence has its own sampling settings, its own ``torch.Generator`` (from its seed), its own
stop tokens and strings and its own token budget. Alone in the engine, a request gets exactly the
tokens ``genlab.methods.autoregressive.decoding.generate`` gives for the same settings and seed.

``Engine.step()`` runs one round (admit newcomers, pick one token per row, feed them back); tests
drive it directly. ``Engine.start()`` runs it on one background thread, the only one that touches
the model; HTTP handlers ``submit`` requests and receive ``Event``s through a callback.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.data.tokenizer import StreamDecoder, Tokenizer
from genlab.methods.autoregressive.decoding import SamplingConfig, process_logits
from genlab.nets.gpt import GPT, KVCache

log = logging.getLogger(__name__)

# Spare cache columns allocated past the longest row, so that the cache is regrown (a copy)
# once every GROW steps rather than at every step.
GROW = 64
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed accepts


class EngineFull(Exception):
    """The engine holds as many sequences as it may (running and waiting): try again later."""


@dataclass(frozen=True)
class SequenceRequest:
    """One sequence to generate: a prompt (token ids) and how to continue it.

    ``temperature=0`` is greedy decoding. ``seed=None`` takes the next seed of the engine's own
    random generator (seeded once at start), so a server restarted with the same seed answers
    the same requests in the same order the same way.
    """

    prompt: Sequence[int]
    max_tokens: int
    temperature: float = 1.0
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Event:
    """What happened to sequence ``index`` of a ticket at one step.

    ``text`` is the new text (possibly empty: an unfinished UTF-8 character, or the start of a
    possible stop string, is held back until it is settled). ``token`` is the token just chosen
    (``None`` on a final event with no new token: cancelled, or failed). The last event of a
    sequence carries ``finish_reason``: ``stop`` (a stop token or string), ``length`` (max_tokens
    or the model's context), ``cancelled`` or ``error`` (then ``error`` says why).
    """

    index: int
    text: str
    token: int | None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


class Ticket:
    """The sequences of one submission; ``cancel()`` (any thread) stops decoding them."""

    def __init__(self, on_event: Callable[[Event], None]) -> None:
        self.on_event = on_event
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class _Row:
    """A sequence in the engine: its settings, generator and progress."""

    ticket: Ticket
    index: int
    prompt: list[int]
    max_tokens: int
    sampling: SamplingConfig
    generator: torch.Generator
    stop: tuple[str, ...]
    decoder: StreamDecoder
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    sent: int = 0  # characters of ``text`` already sent

    def event(
        self, token: int | None, finish: str | None = None, error: str | None = None
    ) -> Event:
        """Send the settled new text (all of it when finishing) with ``token``."""
        end = len(self.text) if finish else self.sent + _settled(self.text[self.sent :], self.stop)
        piece, self.sent = self.text[self.sent : end], end
        return Event(
            index=self.index,
            text=piece,
            token=token,
            finish_reason=finish,
            prompt_tokens=len(self.prompt),
            completion_tokens=len(self.tokens),
            error=error,
        )


def _settled(text: str, stops: Sequence[str]) -> int:
    """How many leading characters of unsent ``text`` cannot be the start of a stop string."""
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), hold, -1):
            if text.endswith(s[:k]):
                hold = k
                break
    return len(text) - hold


class Engine:
    """Decodes the sequences of all submitted requests together (see the module docstring).

    ``max_batch`` sequences decode at once; up to ``max_queue`` more wait for a place, and a
    submission beyond that raises ``EngineFull``. ``stop_ids`` end a sequence (by default the
    tokenizer's end-of-turn, end-of-sequence and begin-of-sequence ids); they are not part of
    the text.
    """

    def __init__(
        self,
        model: GPT,
        tokenizer: Tokenizer,
        *,
        max_batch: int = 16,
        max_queue: int = 64,
        stop_ids: Sequence[int] | None = None,
        seed: int = 0,
    ) -> None:
        if max_batch < 1:
            raise GenlabError(f"max_batch must be >= 1, got {max_batch}")
        if max_queue < 0:
            raise GenlabError(f"max_queue must be >= 0, got {max_queue}")
        if tokenizer.vocab_size > model.config.vocab_size:
            raise GenlabError(
                f"the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                f"{model.config.vocab_size}; they do not belong together"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.max_queue = max_queue
        if stop_ids is None:
            stop_ids = (tokenizer.eot_id, tokenizer.eos_id, tokenizer.bos_id)
        self.stop_ids = frozenset(int(i) for i in stop_ids)
        self.device = model.lm_head.weight.device
        # A model may embed more ids than its tokenizer has (a vocabulary padded for speed):
        # those ids have no text, so they are never chosen.
        self._vocab = tokenizer.vocab_size
        self._seeds = random.Random(seed)

        self._lock = threading.Condition()
        self._waiting: list[_Row] = []  # submitted, not yet admitted (guarded by _lock)
        self._admitting = 0  # taken from _waiting, being prefilled
        self._thread: threading.Thread | None = None
        self._after_step: Callable[[], None] | None = None
        self._closing = False

        # The running batch (touched by the stepping thread only).
        self.rows: list[_Row] = []
        self._store: KVCache | None = None  # max_batch preallocated rows (see _use)
        self._cache: KVCache | None = None  # the first len(rows) of them, as the model sees them
        self._mask = torch.zeros(0, 0, dtype=torch.bool, device=self.device)  # (B, length)
        self._padded = False
        self._next_pos = torch.zeros(0, dtype=torch.long, device=self.device)  # (B,)
        self._logits = torch.zeros(0, self._vocab, device=self.device)  # (B, V)

        self.counters = {"finished": 0, "cancelled": 0, "failed": 0, "generated_tokens": 0}

    @property
    def context(self) -> int:
        """The model's context length: a prompt must be shorter than this."""
        return self.model.config.block_size

    # ---- submitting (any thread) -------------------------------------------------------------

    def submit(
        self, requests: Sequence[SequenceRequest], on_event: Callable[[Event], None]
    ) -> Ticket:
        """Queue sequences (all or none); ``on_event`` is called from the engine's thread.

        Raises ``GenlabError`` for a request that cannot run and ``EngineFull`` when the engine
        has no room for all of them.
        """
        if not requests:
            raise GenlabError("nothing to generate: give at least one sequence")
        ticket = Ticket(on_event)
        with self._lock:
            if self.load() + len(requests) > self.max_batch + self.max_queue:
                raise EngineFull(
                    f"the server is busy ({self.max_batch} sequences running, "
                    f"{self.max_queue} waiting at most); retry shortly"
                )
            rows = [self._row(ticket, i, r) for i, r in enumerate(requests)]
            self._waiting.extend(rows)
            self._lock.notify()
        return ticket

    def load(self) -> int:
        """Sequences running or waiting."""
        return len(self.rows) + self._admitting + len(self._waiting)

    def stats(self) -> dict[str, int]:
        """Running and waiting sequences and totals since start (for ``/health``)."""
        with self._lock:
            return {
                "running": len(self.rows) + self._admitting,
                "waiting": len(self._waiting),
                **self.counters,
            }

    def _row(self, ticket: Ticket, index: int, req: SequenceRequest) -> _Row:
        prompt = [int(t) for t in req.prompt]
        if not prompt:
            raise GenlabError("a prompt is empty: give at least one token")
        if len(prompt) >= self.context:
            raise GenlabError(
                f"the prompt has {len(prompt)} tokens but the model's context is {self.context}; "
                "shorten it"
            )
        vocab = self._vocab
        if not 0 <= min(prompt) <= max(prompt) < vocab:
            raise GenlabError(f"prompt token ids must lie in 0..{vocab - 1}")
        if req.max_tokens < 1:
            raise GenlabError(f"max_tokens must be >= 1, got {req.max_tokens}")
        seed = self._seeds.randrange(2**63) if req.seed is None else req.seed
        if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
            raise GenlabError(f"seed {seed} is out of range; use a 64-bit integer")
        sampling = SamplingConfig(temperature=req.temperature, top_p=req.top_p)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)
        return _Row(
            ticket=ticket,
            index=index,
            prompt=prompt,
            max_tokens=min(req.max_tokens, self.context - len(prompt)),
            sampling=sampling,
            generator=generator,
            stop=tuple(s for s in req.stop if s),
            decoder=self.tokenizer.stream_decoder(skip_special=True),
        )

    # ---- the background thread ---------------------------------------------------------------

    def start(self, after_step: Callable[[], None] | None = None) -> None:
        """Run ``step()`` on a background thread whenever there is work.

        ``after_step`` is called once the events of a step are all sent (so that a listener
        can hand them over in one go, not one by one).
        """
        if self._thread is not None:
            return
        self._closing = False
        self._after_step = after_step
        self._thread = threading.Thread(target=self._loop, name="genlab-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; running and waiting sequences end as ``cancelled``."""
        if self._thread is None:
            return
        with self._lock:
            self._closing = True
            self._lock.notify()
        self._thread.join()
        self._thread = None
        with self._lock:
            rows, self._waiting = self.rows + self._waiting, []
        self._reset()
        for row in rows:
            self._send(row, row.event(None, "cancelled"))
        self._stepped()

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._closing and not self.rows and not self._waiting:
                    self._lock.wait()
                if self._closing:
                    return
            try:
                self.step()
            except Exception as e:  # the model failed: fail this batch, keep serving
                log.exception("decoding step failed")
                rows = self.rows
                self._reset()
                for row in rows:
                    self.counters["failed"] += 1
                    self._send(row, row.event(None, "error", error=f"{type(e).__name__}: {e}"))
            self._stepped()

    def _stepped(self) -> None:
        if self._after_step is None:
            return
        try:
            self._after_step()
        except Exception:  # a listener that fails must not stop the engine
            log.exception("after_step failed")

    # ---- one round ---------------------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> bool:
        """Admit waiting sequences, choose one token per row, feed the tokens; whether work
        remains."""
        self._admit()
        if not self.rows:
            return False
        tokens = self._choose()
        keep = [
            r
            for r, (row, tok) in enumerate(zip(self.rows, tokens, strict=True))
            if self._emit(row, tok)
        ]
        if len(keep) < len(self.rows):
            self._drop(keep)
        if self.rows:
            self._feed(torch.tensor([tokens[r] for r in keep], device=self.device))
        return bool(self.rows or self._waiting)

    def _admit(self) -> None:
        """Prefill waiting sequences (cancelled ones are dropped) and add them to the batch."""
        with self._lock:
            room = self.max_batch - len(self.rows)
            for row in [r for r in self._waiting if r.ticket.cancelled]:
                self._waiting.remove(row)
                self.counters["cancelled"] += 1
                self._send(row, row.event(None, "cancelled"))
            new, self._waiting = self._waiting[:room], self._waiting[room:]
            self._admitting = len(new)
        if not new:
            return
        try:
            self._join(new, *self._prefill(new))
        except Exception as e:  # the newcomers fail alone; the running batch is untouched
            log.exception("prefill failed")
            for row in new:
                self.counters["failed"] += 1
                self._send(row, row.event(None, "error", error=f"{type(e).__name__}: {e}"))
        finally:
            with self._lock:
                self._admitting = 0

    def _prefill(self, new: list[_Row]) -> tuple[KVCache, Tensor, Tensor]:
        """Run the newcomers' prompts together, left-padded among themselves: their cache,
        padding mask and next-token logits."""
        width = max(len(row.prompt) for row in new)
        ids = torch.zeros(len(new), width, dtype=torch.long)
        mask = torch.zeros(len(new), width, dtype=torch.bool)
        for i, row in enumerate(new):
            ids[i, width - len(row.prompt) :] = torch.tensor(row.prompt)
            mask[i, width - len(row.prompt) :] = True
        ids, mask = ids.to(self.device), mask.to(self.device)
        padded = not bool(mask.all())
        cache = self.model.new_cache(len(new), width)
        logits, _ = self.model(
            ids,
            attention_mask=mask if padded else None,
            positions=(mask.long().cumsum(-1) - 1).clamp(min=0) if padded else None,
            cache=cache,
            last_only=True,
        )
        return cache, mask, logits[:, -1, : self._vocab]

    def _choose(self) -> list[int]:
        """One token per row, each with its own settings and generator.

        Rows with the same temperature and top-p are processed together. Each draws its token
        by the exponential race, ``argmax(p / q)`` with ``q ~ Exp(1)`` drawn from its own
        generator: how ``torch.multinomial`` draws one sample, so a row gets the token that
        ``generate`` gets from the same generator, at one small operation per row.
        """
        tokens = self._logits.argmax(-1)  # greedy rows keep these
        groups: dict[tuple[float, float | None], list[int]] = {}
        for r, row in enumerate(self.rows):
            if row.sampling.temperature > 0:
                groups.setdefault((row.sampling.temperature, row.sampling.top_p), []).append(r)
        for members in groups.values():
            config = self.rows[members[0]].sampling
            idx = torch.tensor(members, device=self.device)
            probs = process_logits(self._logits[idx], None, config).softmax(-1)
            q = torch.empty_like(probs)
            for j, r in enumerate(members):
                q[j].exponential_(generator=self.rows[r].generator)
            tokens[idx] = (probs / q).argmax(-1)
        return tokens.tolist()

    def _emit(self, row: _Row, token: int) -> bool:
        """Record and send ``row``'s new token; whether the row goes on."""
        if row.ticket.cancelled:
            self.counters["cancelled"] += 1
            self._send(row, row.event(None, "cancelled"))
            return False
        row.tokens.append(token)
        self.counters["generated_tokens"] += 1
        finish = None
        if token in self.stop_ids:
            finish = "stop"
        else:
            row.text += row.decoder.push(token)
        if finish is None and len(row.tokens) >= row.max_tokens:
            finish = "length"
        if finish is not None:
            row.text += row.decoder.flush()
        if row.stop:
            # Only text not yet sent can hold a new stop string (sent text never starts one).
            hits = [i for s in row.stop if (i := row.text.find(s, row.sent)) >= 0]
            if hits:
                row.text, finish = row.text[: min(hits)], "stop"
        if finish is not None:
            self.counters["finished"] += 1
        self._send(row, row.event(token, finish))
        return finish is None

    def _send(self, row: _Row, event: Event) -> None:
        try:
            row.ticket.on_event(event)
        except Exception:  # a listener that fails (e.g. its event loop closed) is gone
            log.exception("event listener failed; cancelling its request")
            row.ticket.cancel()

    def _feed(self, tokens: Tensor) -> None:
        """Run the chosen tokens (B,) through the model; store the next logits."""
        assert self._cache is not None
        if self._cache.length + 1 > self._cache.max_len:
            self._relayout(list(range(len(self.rows))))  # regrow the cache
        self._mask = torch.cat([self._mask, self._mask.new_ones(len(self.rows), 1)], dim=1)
        logits, _ = self.model(
            tokens[:, None],
            attention_mask=self._mask if self._padded else None,
            positions=self._next_pos[:, None] if self._padded else None,
            cache=self._cache,
        )
        self._next_pos = self._next_pos + 1
        self._logits = logits[:, -1, : self._vocab]

    # ---- cache layout ------------------------------------------------------------------------
    #
    # ``_store`` preallocates ``max_batch`` rows; ``_cache``, the cache the model sees, views its
    # first ``len(self.rows)`` rows. Sequences join by being written into the next free rows and
    # leave by later rows moving up, so neither copies the whole cache. Only a relayout does:
    # when a newcomer's prompt is longer than the cache (the rows shift right) or the cache is
    # full (it grows); leading all-padding columns are trimmed then.

    def _use(self, n: int) -> None:
        """Let the model see the first ``n`` rows of the store."""
        assert self._store is not None and self._cache is not None
        self._cache.k, self._cache.v = self._store.k[:, :n], self._store.v[:, :n]

    def _drop(self, keep: list[int]) -> None:
        """Keep only rows ``keep`` (in order), moving each up into the first free row."""
        if not keep:
            self._reset()
            return
        assert self._store is not None and self._cache is not None
        length = self._cache.length
        for dst, src in enumerate(keep):  # src >= dst: no row is overwritten before it moves
            if src != dst:
                self._store.k[:, dst, :, :length] = self._store.k[:, src, :, :length]
                self._store.v[:, dst, :, :length] = self._store.v[:, src, :, :length]
        self._use(len(keep))
        idx = torch.tensor(keep, device=self.device)
        self.rows = [self.rows[r] for r in keep]
        self._mask = self._mask[idx]
        self._padded = not bool(self._mask.all())
        self._logits = self._logits[idx]
        self._next_pos = self._next_pos[idx]

    def _join(self, new: list[_Row], cache: KVCache, mask: Tensor, logits: Tensor) -> None:
        """Add prefilled newcomers: into free rows when their prompts fit in the columns the
        batch already has, else by a relayout that shifts the running rows right."""
        if self._cache is None or mask.shape[1] > self._cache.length:
            self._relayout(list(range(len(self.rows))), new=(new, cache, mask, logits))
            return
        assert self._store is not None
        b, n = len(self.rows), len(new)
        length, width = self._cache.length, mask.shape[1]
        for store, part in ((self._store.k, cache.k), (self._store.v, cache.v)):
            store[:, b : b + n, :, : length - width] = 0  # padding: finite, masked out
            store[:, b : b + n, :, length - width : length] = part
        self._use(b + n)
        self.rows = self.rows + new
        self._mask = torch.cat([self._mask, _pad_left(mask, length)])
        self._padded = not bool(self._mask.all())
        self._logits = torch.cat([self._logits, logits])
        self._next_pos = torch.cat([self._next_pos, mask.sum(-1)])

    def _relayout(
        self,
        keep: list[int],
        new: tuple[list[_Row], KVCache, Tensor, Tensor] | None = None,
    ) -> None:
        """Rebuild the batch from rows ``keep`` and the prefilled newcomers ``new``.

        All rows end up right-aligned in a fresh store whose leading columns hold a real token
        of at least one row (all-padding columns are trimmed), with room to grow.
        """
        old = self._cache
        length = old.length if old is not None else 0
        rows = [self.rows[r] for r in keep]
        parts = []  # (k, v, mask, logits, next_pos) per group, rows right-aligned
        if keep and old is not None:
            idx = torch.tensor(keep, device=self.device)
            parts.append(
                (
                    old.k[:, idx, :, :length],
                    old.v[:, idx, :, :length],
                    self._mask[idx],
                    self._logits[idx],
                    self._next_pos[idx],
                )
            )
        if new is not None:
            new_rows, cache, mask, logits = new
            rows += new_rows
            parts.append((cache.k, cache.v, mask, logits, mask.sum(-1)))
        if not rows:
            self._reset()
            return
        width = max(p[2].shape[1] for p in parts)
        mask = torch.cat([_pad_left(p[2], width) for p in parts])
        start = int(mask.any(0).long().argmax())  # first column with a real token
        width -= start
        dtype = parts[0][0].dtype
        store = self.model.new_cache(self.max_batch, min(self.context, width + GROW), dtype=dtype)
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
        self._cache = self.model.new_cache(0, store.max_len, dtype=dtype)
        self._cache.length = width
        self._use(len(rows))
        self._mask = mask[:, start:]
        self._padded = not bool(self._mask.all())
        self._logits = torch.cat([p[3] for p in parts])
        self._next_pos = torch.cat([p[4] for p in parts])

    def _reset(self) -> None:
        self.rows = []
        self._store = None
        self._cache = None
        self._mask = self._mask[:0, :0]
        self._padded = False
        self._logits = self._logits[:0]
        self._next_pos = self._next_pos[:0]


def _pad_left(mask: Tensor, width: int) -> Tensor:
    """``mask`` (B, W) with ``width - W`` padding columns in front."""
    return torch.cat([mask.new_zeros(mask.shape[0], width - mask.shape[1]), mask], dim=1)
