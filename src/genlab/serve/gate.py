"""The door in front of the routes: the API key (401) for ``/v1`` paths, then a bound on the body
size (413), both checked before anything is parsed, so an unauthorised or oversized request
costs the server almost nothing.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from genlab.serve.errors import ApiError

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]


class Gate:
    """ASGI middleware: the API key, then the body size (see the module docstring).

    (A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` would hide client disconnects
    from the handlers.)
    """

    def __init__(self, app: ASGIApp, api_key: str | None, limit: int) -> None:
        self.app, self.api_key, self.limit = app, api_key, limit

    def _authorized(self, scope: dict) -> bool:
        if not self.api_key or not scope["path"].startswith("/v1"):
            return True
        headers = dict(scope["headers"])
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.api_key.encode()
        )

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._authorized(scope):
            error = ApiError(
                401,
                "missing or wrong API key: send 'Authorization: Bearer KEY'",
                code="invalid_api_key",
            )
            await error.response()(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > self.limit:
                error = ApiError(413, f"the request body is over {self.limit} bytes")
                await error.response()(scope, receive, send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
