"""Every refusal as the OpenAI API words it: ``{"error": {"message", "type", "param", "code"}}``.

OpenAI's clients raise their own exception types from these bodies (``BadRequestError`` for a 400,
``RateLimitError`` for a 429, ...), and a 400 names the field that is wrong, so a client can
tell its user what to fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from genlab.serve.schemas import FIELD_NAMES
from genlab.serve.sequences import Event


class ApiError(Exception):
    """An error answered with an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        kind: str = "invalid_request_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.kind = kind
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


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


def failure(event: Event) -> ApiError | None:
    """The error a sequence's final ``event`` means, if it did not finish normally."""
    if event.finish_reason == "error":
        return ApiError(500, f"generation failed: {event.error}", kind="server_error")
    if event.finish_reason == "cancelled":
        return ApiError(503, "the server is shutting down", kind="server_error")
    return None
