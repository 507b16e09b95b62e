"""One sequence in the engine: what is asked (``SequenceRequest``), what is answered (``Event``),
how it is cancelled (``Ticket``) and how far it got (``Row``), stop tokens and strings included.

A sequence's text is sent as it grows, but a stop string is not part of it: text that might be
the start of a stop string is held back until the next tokens settle it, so a client never
receives text that a stop string later takes back.

A sequence that may call a tool has two channels: once it takes the token that opens a call
(``SequenceRequest.call_id``, ``<|tool_call|>``), its text is the call's (``Event.call``), which
stop strings do not cut, and ending there (``<|/tool_call|>``, one of its ``stop_ids``) finishes
it with ``tool_calls``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from genlab.data.tokenizer import StreamDecoder
from genlab.methods.autoregressive.constrained import Constraint
from genlab.methods.autoregressive.decoding import SamplingConfig

# A chosen token's log-prob and the likeliest ``(id, logprob)`` pairs, best first.
Scores = tuple[float, tuple[tuple[int, float], ...]]


@dataclass(frozen=True)
class SequenceRequest:
    """One sequence to generate: a prompt (token ids) and how to continue it.

    ``temperature=0`` is greedy decoding. ``seed=None`` takes the next seed of the engine's own
    random generator (seeded once at start), so a server restarted with the same seed answers
    the same requests in the same order the same way. A ``constraint`` (one sequence's state, so
    one instance per request) masks the logits before every choice and advances with each token.
    """

    prompt: Sequence[int]
    max_tokens: int
    temperature: float = 1.0
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # send each token's log-prob and this many likeliest ids
    adapter: str | None = None  # the adapter this sequence runs with (None: the base)
    constraint: Constraint | None = None  # the grammar its tokens follow (None: any token)
    call_id: int | None = None  # the token that opens a tool call (None: it calls no tool)
    stop_ids: tuple[int, ...] = ()  # tokens that end it besides the engine's


@dataclass(frozen=True)
class Event:
    """What happened to sequence ``index`` of a ticket at one step.

    ``text`` is the new text (possibly empty: an unfinished UTF-8 character, or the start of a
    possible stop string, is held back until it is settled). ``token`` is the token just chosen
    (``None`` on a final event with no new token: cancelled, or failed). The last event of a
    sequence carries ``finish_reason``: ``stop`` (a stop token or string), ``length`` (max_tokens
    or the model's context), ``tool_calls`` (the end of a call), ``cancelled`` or ``error`` (then
    ``error`` says why). When the request asked for log-probs, ``logprob`` is the token's under
    the model's raw distribution and ``top_logprobs`` the likeliest ``(id, logprob)`` pairs, best
    first. ``call`` is None until a tool call opens, then the call's new text (``""`` on the
    event of the opening token).
    """

    index: int
    text: str
    token: int | None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    logprob: float | None = None
    top_logprobs: tuple[tuple[int, float], ...] = ()
    call: str | None = None


class Ticket:
    """The sequences of one submission; ``cancel()`` (any thread) stops decoding them."""

    def __init__(self, on_event: Callable[[Event], None]) -> None:
        self.on_event = on_event
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class Row:
    """A sequence in the engine: its settings, generator and progress."""

    ticket: Ticket
    index: int
    prompt: list[int]
    max_tokens: int
    sampling: SamplingConfig
    generator: torch.Generator
    stop: tuple[str, ...]
    decoder: StreamDecoder
    stop_ids: frozenset[int]
    logprobs: int | None = None
    adapter: str | None = None
    constraint: Constraint | None = None
    call_id: int | None = None
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    sent: int = 0  # characters of ``text`` already sent
    call: str | None = None  # the tool call's text, once one is open
    call_sent: int = 0

    def advance(self, token: int) -> str | None:
        """Record ``token`` and its text; the finish reason when the sequence ends with it."""
        self.tokens.append(token)
        if self.constraint is not None:
            self.constraint.advance(token)
        finish = None
        opens = self.call is None and token == self.call_id
        if opens:  # the content is complete: what the decoder holds belongs to it
            self.text += self.decoder.flush()
            self.call = ""
        elif token in self.stop_ids:
            finish = "stop" if self.call is None else "tool_calls"
        else:
            self._put(self.decoder.push(token))
        if finish is None and len(self.tokens) >= self.max_tokens:
            finish = "length"
        if finish is not None:
            self._put(self.decoder.flush())
        if self.stop and (self.call is None or opens):
            # Only text not yet sent can hold a new stop string (sent text never starts one).
            hits = [i for s in self.stop if (i := self.text.find(s, self.sent)) >= 0]
            if hits:
                self.text, finish, self.call = self.text[: min(hits)], "stop", None
        return finish

    def _put(self, text: str) -> None:
        if self.call is None:
            self.text += text
        else:
            self.call += text

    def event(
        self,
        token: int | None,
        finish: str | None = None,
        error: str | None = None,
        scores: Scores | None = None,
    ) -> Event:
        """Send the settled new text (all of it when finishing or calling) and the call's new
        text with ``token`` and its ``scores`` (log-prob, likeliest alternatives)."""
        if finish or self.call is not None:
            end = len(self.text)
        else:
            end = self.sent + _settled(self.text[self.sent :], self.stop)
        piece, self.sent = self.text[self.sent : end], end
        call = None
        if self.call is not None:
            call, self.call_sent = self.call[self.call_sent :], len(self.call)
        return Event(
            index=self.index,
            text=piece,
            token=token,
            finish_reason=finish,
            prompt_tokens=len(self.prompt),
            completion_tokens=len(self.tokens),
            error=error,
            logprob=None if scores is None else scores[0],
            top_logprobs=() if scores is None else scores[1],
            call=call,
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
