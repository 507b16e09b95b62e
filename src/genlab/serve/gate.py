"""The door in front of the routes: the ``Host`` header (403), the API key (401) for every path
but the page and ``/health``, then a bound on the body size (413), all checked before anything is
parsed, so an unwelcome or oversized request costs the server almost nothing.

The ``Host`` check defends a server on this machine against DNS rebinding: a web page on
``evil.example`` whose name is made to point at 127.0.0.1 would otherwise reach the server from
the user's browser, as a same-origin request that may read the answers. Its requests carry
``Host: evil.example``; only the names the server was told to answer to (``localhost``, the
address it listens on, ``--allowed-hosts``) and IP addresses, which no rebinding can forge, pass.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Iterable

from genlab.serve.errors import ApiError

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]
OPEN_PATHS = frozenset({"/", "/health"})  # the page, and what it reads before it has a key
LOCAL_NAMES = ("localhost",)


def host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port or IPv6 brackets, lower-cased."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    name = header.rpartition(":")[0] if header.count(":") == 1 else header
    return name.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Gate:
    """ASGI middleware: the host, the API key, then the body size (see the module docstring).

    ``hosts`` are the names answered besides ``localhost`` and IP addresses; None answers any.
    (A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` would hide client disconnects
    from the handlers.)
    """

    def __init__(
        self, app: ASGIApp, api_key: str | None, limit: int, hosts: Iterable[str] | None = ()
    ) -> None:
        self.app, self.limit = app, limit
        self.key = api_key.encode("utf-8") if api_key else None
        self.hosts = None if hosts is None else {*LOCAL_NAMES, *(host_name(h) for h in hosts)}

    def _host_allowed(self, scope: dict) -> bool:
        if self.hosts is None:
            return True
        raw = dict(scope["headers"]).get(b"host")
        if raw is None:  # HTTP/1.0 without a Host: no browser sends that
            return True
        name = host_name(raw.decode("latin-1"))
        return name in self.hosts or _is_ip(name)

    def _authorized(self, scope: dict) -> bool:
        if self.key is None or scope["path"] in OPEN_PATHS:
            return True
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        # bytes against bytes: a key of any characters, sent as UTF-8, compares in constant time
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._host_allowed(scope):
            error = ApiError(
                403,
                "this server does not answer to the host named in the request's Host header; "
                "start it with --allowed-hosts NAME to allow a name",
                code="host_not_allowed",
            )
            await error.response()(scope, receive, send)
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
