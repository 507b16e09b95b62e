"""From the engine's thread to the event loop: one request's sequences and the events they send.

Handlers never touch the model. They ``submit`` to the engine, whose thread calls back with
events; a ``Mailbox`` collects the events of one decoding step and hands them to the loop at once
(``call_soon_threadsafe``), into one queue per request. A client that goes away has its
sequences cancelled, so the engine stops decoding them at its next step.

A request may submit more sequences as it goes (``send``: a turn after a server-side tool's
result, ``genlab.serve.server_tools``); their events arrive as those of the choice they continue,
and ``settle`` lets a subclass act on events before they are handed on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import replace

from fastapi import Request

from genlab.core.errors import GenlabError
from genlab.serve.engine import Engine, EngineFull
from genlab.serve.errors import ApiError, failure
from genlab.serve.sequences import Event, SequenceRequest, Ticket

DISCONNECT_POLL_S = 0.2


class Mailbox:
    """Hands events from the engine's thread to the event loop: they collect during a decoding
    step (one per sequence) and go over together, waking the loop once per step."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[tuple[asyncio.Queue[Event], Event]] = []
        self._scheduled = False

    def post(self, queue: asyncio.Queue[Event], event: Event) -> None:
        with self._lock:
            self._pending.append((queue, event))

    def flush(self) -> None:
        """Deliver what was posted (called by the engine after each step)."""
        with self._lock:
            if not self._pending or self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            with self._lock:
                self._pending.clear()
                self._scheduled = False

    def _deliver(self) -> None:
        with self._lock:
            pending, self._pending, self._scheduled = self._pending, [], False
        for queue, event in pending:
            queue.put_nowait(event)


class Submission:
    """One request's sequences in the engine, and the queue their events arrive on."""

    def __init__(self, engine: Engine, mailbox: Mailbox, sequences: list[SequenceRequest]) -> None:
        self.engine, self.mailbox = engine, mailbox
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.remaining = len(sequences)
        self.tickets: list[Ticket] = []
        self.send(sequences, range(len(sequences)))

    def send(self, sequences: list[SequenceRequest], choices: Sequence[int]) -> None:
        """Submit ``sequences``, whose events arrive as those of ``choices`` (one each)."""
        queue, post = self.queue, self.mailbox.post

        def on_event(event: Event) -> None:
            choice = choices[event.index]
            post(queue, event if choice == event.index else replace(event, index=choice))

        try:
            self.tickets.append(self.engine.submit(sequences, on_event))
        except EngineFull as e:
            raise ApiError(429, str(e), kind="rate_limit_error", code="server_busy") from e
        except GenlabError as e:
            raise ApiError(400, str(e)) from e

    async def settle(self, events: list[Event]) -> list[Event]:
        """The events to hand on: all of them (a subclass may hold some back or act on them)."""
        return events

    async def batches(self, request: Request | None = None) -> AsyncIterator[list[Event]]:
        """Events as they come; all that queued up at once come together.

        With ``request``, its connection is watched: when the client goes, the sequences are
        cancelled and the iteration ends early. (A streaming response is watched by Starlette,
        which cancels this iteration instead.)
        """
        loop = asyncio.get_running_loop()
        check_at = loop.time() + DISCONNECT_POLL_S
        try:
            while self.remaining:
                if request is None:
                    event = await self.queue.get()
                else:
                    try:
                        wait = max(0.0, check_at - loop.time())
                        event = await asyncio.wait_for(self.queue.get(), wait)
                    except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11
                        if await request.is_disconnected():
                            return
                        check_at = loop.time() + DISCONNECT_POLL_S
                        continue
                events = [event]
                while not self.queue.empty():
                    events.append(self.queue.get_nowait())
                events = await self.settle(events)
                self.remaining -= sum(1 for e in events if e.finish_reason)
                if events:
                    yield events
        finally:
            if self.remaining:
                for ticket in self.tickets:
                    ticket.cancel()

    async def collect(self, request: Request) -> dict[int, list[Event]] | None:
        """Each sequence's events (its final one last), or None when the client went away."""
        events_of: dict[int, list[Event]] = {}
        async with aclosing(self.batches(request)) as batches:
            async for events in batches:
                for event in events:
                    events_of.setdefault(event.index, []).append(event)
                    error = failure(event)
                    if error is not None:
                        raise error
        if self.remaining:
            return None
        return events_of
