"""Serving genlab models: continuous batching (``engine``) behind an OpenAI-compatible HTTP API
and a chat page (``api``, which needs the ``serve`` extra: FastAPI and uvicorn)."""

from genlab.serve.engine import Engine, EngineFull, Event, SequenceRequest, Ticket

__all__ = ["Engine", "EngineFull", "Event", "SequenceRequest", "Ticket"]
