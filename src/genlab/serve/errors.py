"""Every refusal as the OpenAI API words it: ``{"error": {"message", "type", "param", "code"}}``.

OpenAI's clients raise their own exception types from these bodies (``BadRequestError`` for a 400,
``RateLimitError`` for a 429, ...), and a 400 names the field that is wrong, so a client can
tell its user what to fix. Every answer that is not a success has this shape: unknown routes
(404), wrong methods (405) and failures of the server itself (500, with no traceback: that goes
to the server's log) included.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from genlab.serve.schemas import FIELD_NAMES
from genlab.serve.sequences import Event

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered with an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        kind: str = "invalid_request_error",
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.kind = kind
        self.code = code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> Response:
        # ASCII JSON: a message quoting what a client sent (a lone surrogate included) encodes.
        return Response(
            json.dumps(self.body()),
            status_code=self.status,
            headers=self.headers,
            media_type="application/json",
        )


def _param(loc: Sequence[Any]) -> str | None:
    """The field a pydantic error location points at, as ``messages[0].content``.

    Location parts that are not field names (union member tags such as ``list[str]``) are
    skipped.
    """
    param = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            param += f"[{part}]"
        elif part in FIELD_NAMES:
            param += f".{part}" if param else part
    return param or None


def validation_error(exc: RequestValidationError) -> ApiError:
    """The first problem in a request body, as a 400 naming its field."""
    errors = exc.errors()
    first = errors[0] if errors else {"type": "", "loc": (), "msg": "invalid request"}
    if first["type"] == "json_invalid":
        detail = first.get("ctx", {}).get("error", "")
        return ApiError(400, f"the request body is not valid JSON ({detail})".replace(" ()", ""))
    param = _param(first["loc"])
    if param is None:
        return ApiError(400, "the request body must be a JSON object with the request's fields")
    message = first["msg"].removeprefix("Value error, ")
    return ApiError(400, f"{param}: {message}", param)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method, ...) in OpenAI's shape."""
    assert isinstance(exc, HTTPException)
    where = f"{request.method} {request.url.path[:200]}"
    if exc.status_code == 404:
        message = f"Invalid URL ({where}): no such route"
    elif exc.status_code == 405:
        allowed = {k.lower(): v for k, v in (exc.headers or {}).items()}.get("allow")
        message = f"Invalid method ({where}): use {allowed or 'another method'}"
    else:
        message = str(exc.detail)
    return ApiError(exc.status_code, message, headers=exc.headers).response()


async def server_error(request: Request, exc: Exception) -> Response:
    """Anything unforeseen: a 500 that says nothing of the server's insides."""
    log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return ApiError(
        500, "the server failed to answer this request; see its log", kind="server_error"
    ).response()


def failure(event: Event) -> ApiError | None:
    """The error a sequence's final ``event`` means, if it did not finish normally."""
    if event.finish_reason == "error":
        return ApiError(500, f"generation failed: {event.error}", kind="server_error")
    if event.finish_reason == "cancelled":
        return ApiError(503, "the server is shutting down", kind="server_error")
    return None
