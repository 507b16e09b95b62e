"""Continuous batching: many requests share every decoding step of one model.

Decoding one token costs about the same whether the batch holds one sequence or sixteen: the
weights are read once per step and a small batch leaves most of the arithmetic units idle. A
server that answered requests one at a time would waste that. Static batching (wait for a batch,
decode it to the end) wastes it too, since the batch is as slow as its longest member and
newcomers wait for all of it. Continuous batching (Yu et al., 2022, "Orca: A Distributed Serving
System for Transformer-Based Generative Models", iteration-level scheduling) lets sequences join
and leave the running batch between decoding steps.

The batch keeps one KV cache, left-padded, that rows enter and leave between steps
(``genlab.serve.batch``); what a sequence is, its events and its stop strings are in
``genlab.serve.sequences``.

Every sequence has its own sampling settings, its own ``torch.Generator`` (from its seed), its own
stop tokens and strings and its own token budget. Alone in the engine, a request gets exactly the
tokens ``genlab.methods.autoregressive.decoding.generate`` gives for the same settings and seed.

``Engine.step()`` runs one round (admit newcomers, pick one token per row, feed them back); tests
drive it directly. ``Engine.start()`` runs it on one background thread, the only one that touches
the model; HTTP handlers ``submit`` requests and receive ``Event``s through a callback, and hand
other uses of the model (scoring an echoed prompt) to that thread with ``call``.

Many adapters on one base (S-LoRA, Sheng et al., 2023; Punica, Chen et al., 2023): with
``adapters`` named, a request may pick one of them (``SequenceRequest.adapter``) and each batch
row runs its own request's adapter, so requests for different adapters share every step.

A ``logits_bias`` (e.g. a sampling watermark, ``genlab.research.watermark``) changes every row's
logits from its previous token before the choice, as ``generate(..., logits_bias=...)`` does.

A row with a ``constraint`` (``SequenceRequest.constraint``: a grammar, e.g. a JSON schema's, from
``genlab.methods.autoregressive.constrained``) has the tokens it does not allow set to ``-inf``
after the bias and before the choice, and its constraint advances with the token taken; other
rows decode exactly as they would without it.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TypeVar

import torch

from genlab.adapt.inject import adapter_names
from genlab.core.errors import GenlabError
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.constrained import allowed_mask
from genlab.methods.autoregressive.decoding import LogitsBias, SamplingConfig, process_logits
from genlab.nets.gpt import GPT
from genlab.serve.batch import Batch
from genlab.serve.sequences import Event, Row, Scores, SequenceRequest, Ticket

# The sequence types come with the engine: every caller of ``submit`` needs them.
__all__ = ["Engine", "EngineFull", "Event", "SequenceRequest", "Ticket"]

log = logging.getLogger(__name__)

SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed accepts
T = TypeVar("T")


class EngineFull(Exception):
    """The engine holds as many sequences as it may (running and waiting): try again later."""


class Engine:
    """Decodes the sequences of all submitted requests together (see the module docstring).

    ``max_batch`` sequences decode at once; up to ``max_queue`` more wait for a place, and a
    submission beyond that raises ``EngineFull``. ``stop_ids`` end a sequence (by default the
    tokenizer's end-of-turn, end-of-sequence and begin-of-sequence ids); they are not part of
    the text. ``adapters`` are the adapters of ``model`` that requests may pick (none: the
    model runs as it is, and no row chooses an adapter). ``logits_bias(prev, logits)`` changes
    each step's logits (rows' last tokens (B,), logits (B, V)) before every row's choice.
    ``kv_dtype`` is the KV cache's (default: the model's; bfloat16 halves what a batched step
    reads, see ``KVCache``); a request then gets ``generate(..., kv_dtype=...)``'s tokens.
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
        adapters: Sequence[str] = (),
        logits_bias: LogitsBias | None = None,
        kv_dtype: torch.dtype | None = None,
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
        known = adapter_names(model)
        for name in adapters:
            if name not in known:
                raise GenlabError(f"no adapter named '{name}' in the model to serve")
        self.adapters = tuple(adapters)
        self.logits_bias = logits_bias
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.max_queue = max_queue
        if stop_ids is None:
            stop_ids = tokenizer.stop_ids
        self.stop_ids = frozenset(int(i) for i in stop_ids)
        # A model may embed more ids than its tokenizer has (a vocabulary padded for speed):
        # those ids have no text, so they are never chosen.
        self._vocab = tokenizer.vocab_size
        # The running rows and their cache (touched by the stepping thread only).
        self.batch = Batch(
            self.model, max_batch, self._vocab, per_row=bool(self.adapters), kv_dtype=kv_dtype
        )
        self.device = self.batch.device
        self._seeds = random.Random(seed)

        self._lock = threading.Condition()
        self._waiting: list[Row] = []  # submitted, not yet admitted (guarded by _lock)
        self._calls: list[tuple[Callable[[GPT], object], str | None, Future]] = []  # (_lock)
        self._admitting = 0  # taken from _waiting, being prefilled
        self._thread: threading.Thread | None = None
        self._after_step: Callable[[], None] | None = None
        self._closing = False

        self.counters = {"finished": 0, "cancelled": 0, "failed": 0, "generated_tokens": 0}

    @property
    def rows(self) -> list[Row]:
        """The sequences decoding now."""
        return self.batch.rows

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

    def _row(self, ticket: Ticket, index: int, req: SequenceRequest) -> Row:
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
        if req.adapter is not None and req.adapter not in self.adapters:
            raise GenlabError(f"no adapter named '{req.adapter}' is served")
        special = [*req.stop_ids, *([] if req.call_id is None else [req.call_id])]
        if not all(0 <= i < vocab for i in special):
            raise GenlabError(f"stop and call token ids must lie in 0..{vocab - 1}")
        seed = self._seeds.randrange(2**63) if req.seed is None else req.seed
        if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
            raise GenlabError(f"seed {seed} is out of range; use a 64-bit integer")
        sampling = SamplingConfig(temperature=req.temperature, top_p=req.top_p)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)
        return Row(
            ticket=ticket,
            index=index,
            prompt=prompt,
            max_tokens=min(req.max_tokens, self.context - len(prompt)),
            sampling=sampling,
            generator=generator,
            stop=tuple(s for s in req.stop if s),
            decoder=self.tokenizer.stream_decoder(skip_special=True),
            stop_ids=self.stop_ids | set(req.stop_ids),
            logprobs=req.logprobs,
            adapter=req.adapter,
            constraint=req.constraint,
            call_id=req.call_id,
        )

    def call(self, fn: Callable[[GPT], T], adapter: str | None = None) -> Future[T]:
        """Run ``fn(model)`` on the engine's thread between two steps, the model running
        ``adapter`` (on a batch of one row); its result or exception arrives in the future.
        The per-row adapters are state of the model, so only that thread may run it."""
        if adapter is not None and adapter not in self.adapters:
            raise GenlabError(f"no adapter named '{adapter}' is served")
        future: Future[T] = Future()
        with self._lock:
            if self._closing:
                raise GenlabError("the engine is shutting down")
            self._calls.append((fn, adapter, future))
            self._lock.notify()
        return future

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
            calls, self._calls = self._calls, []
        for _, _, future in calls:
            future.set_exception(GenlabError("the engine is shutting down"))
        self.batch.reset()
        for row in rows:
            self._send(row, row.event(None, "cancelled"))
        self._stepped()

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not (self._closing or self.rows or self._waiting or self._calls):
                    self._lock.wait()
                if self._closing:
                    return
            try:
                self.step()
            except Exception as e:  # the model failed: fail this batch, keep serving
                log.exception("decoding step failed")
                rows = self.rows
                self.batch.reset()
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
        self._run_calls()
        self._admit()
        if not self.rows:
            return False
        tokens = self._choose()
        scores = self._scores(tokens)
        keep = [
            r
            for r, (row, tok) in enumerate(zip(self.rows, tokens, strict=True))
            if self._emit(row, tok, scores.get(r))
        ]
        if len(keep) < len(self.rows):
            self.batch.drop(keep)
        if self.rows:
            self.batch.feed(torch.tensor([tokens[r] for r in keep], device=self.device))
        return bool(self.rows or self._waiting)

    def _run_calls(self) -> None:
        """Run what ``call`` handed over."""
        with self._lock:
            calls, self._calls = self._calls, []
        for fn, adapter, future in calls:
            if not future.set_running_or_notify_cancel():
                continue
            try:
                self.batch.choose([adapter])
                future.set_result(fn(self.model))
            except Exception as e:  # the caller gets the error; decoding goes on
                future.set_exception(e)

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
            self.batch.add(new)
        except Exception as e:  # the newcomers fail alone; the running batch is untouched
            log.exception("prefill failed")
            for row in new:
                self.counters["failed"] += 1
                self._send(row, row.event(None, "error", error=f"{type(e).__name__}: {e}"))
        finally:
            with self._lock:
                self._admitting = 0

    def _choose(self) -> list[int]:
        """One token per row, each with its own settings and generator.

        Rows with the same temperature and top-p are processed together. Each draws its token
        by the exponential race, ``argmax(p / q)`` with ``q ~ Exp(1)`` drawn from its own
        generator: how ``torch.multinomial`` draws one sample, so a row gets the token that
        ``generate`` gets from the same generator, at one small operation per row. A row's
        constraint masks its logits first.
        """
        logits = self.batch.logits
        if self.logits_bias is not None:
            prev = [row.tokens[-1] if row.tokens else row.prompt[-1] for row in self.rows]
            logits = self.logits_bias(torch.tensor(prev, device=self.device), logits)
        constrained = [
            (r, row.constraint) for r, row in enumerate(self.rows) if row.constraint is not None
        ]
        if constrained:
            allowed = torch.ones(logits.shape, dtype=torch.bool)
            for r, constraint in constrained:
                allowed[r] = allowed_mask(constraint, logits.size(-1))
            logits = logits.masked_fill(~allowed.to(self.device), float("-inf"))
        tokens = logits.argmax(-1)  # greedy rows keep these
        groups: dict[tuple[float, float | None], list[int]] = {}
        for r, row in enumerate(self.rows):
            if row.sampling.temperature > 0:
                groups.setdefault((row.sampling.temperature, row.sampling.top_p), []).append(r)
        for members in groups.values():
            config = self.rows[members[0]].sampling
            idx = torch.tensor(members, device=self.device)
            probs = process_logits(logits[idx], None, config).softmax(-1)
            q = torch.empty_like(probs)
            for j, r in enumerate(members):
                q[j].exponential_(generator=self.rows[r].generator)
            tokens[idx] = (probs / q).argmax(-1)
        return tokens.tolist()

    def _scores(self, tokens: list[int]) -> dict[int, Scores]:
        """For the rows that asked: each chosen token's log-prob under the model's raw
        distribution and the likeliest ids with theirs."""
        asked = [r for r, row in enumerate(self.rows) if row.logprobs is not None]
        if not asked:
            return {}
        idx = torch.tensor(asked, device=self.device)
        picked = torch.tensor([tokens[r] for r in asked], device=self.device)
        logp = torch.log_softmax(self.batch.logits[idx].float(), dim=-1)
        chosen = logp.gather(-1, picked[:, None]).squeeze(-1).tolist()
        values, ids = logp.topk(max(self.rows[r].logprobs or 0 for r in asked), dim=-1)
        values, ids = values.tolist(), ids.tolist()
        out = {}
        for j, r in enumerate(asked):
            n = self.rows[r].logprobs or 0
            out[r] = (chosen[j], tuple(zip(ids[j][:n], values[j][:n], strict=True)))
        return out

    def _emit(self, row: Row, token: int, scores: Scores | None) -> bool:
        """Record and send ``row``'s new token (with its ``scores`` if asked); whether the row
        goes on."""
        if row.ticket.cancelled:
            self.counters["cancelled"] += 1
            self._send(row, row.event(None, "cancelled"))
            return False
        finish = row.advance(token)
        self.counters["generated_tokens"] += 1
        if finish is not None:
            self.counters["finished"] += 1
        self._send(row, row.event(token, finish, scores=scores))
        return finish is None

    def _send(self, row: Row, event: Event) -> None:
        try:
            row.ticket.on_event(event)
        except Exception:  # a listener that fails (e.g. its event loop closed) is gone
            log.exception("event listener failed; cancelling its request")
            row.ticket.cancel()
