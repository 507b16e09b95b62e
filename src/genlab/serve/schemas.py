"""The request bodies of the OpenAI API that genlab serves, as strict pydantic models.

Field names, types, ranges and defaults follow the OpenAI API reference for chat completions and
(legacy) completions, so that its official clients and the tools built on them work unchanged.
Validation is strict: a string where a number belongs is an error, not a number. Fields this
server does not know are ignored; fields it knows but cannot honour (penalties, log-probabilities,
tools) are refused when set, rather than silently dropped.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Seed = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]  # a signed 64-bit integer
StopText = Annotated[str, Field(min_length=1)]
_NO_LOGPROBS = "log-probabilities are not supported by genlab serve"


def _refused(*fields: str, message: str) -> Any:
    """A validator that refuses ``fields`` set to anything but their (falsy) default."""

    def refuse(value: Any) -> Any:
        if value:
            raise ValueError(message)
        return value

    return field_validator(*fields)(refuse)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class TextPart(_Strict):
    """One part of a message's content; genlab's models read text only."""

    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart]
    name: str | None = None

    def to_template(self) -> dict[str, str]:
        """The message as genlab's chat template takes it ("developer" is the system role)."""
        text = self.content
        if not isinstance(text, str):
            text = "".join(part.text for part in text)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(_Strict):
    include_usage: bool = False


class _Generation(_Strict):
    """What chat completions and completions share: how to sample and when to stop."""

    model: str | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int | None = Field(None, ge=1, le=16)
    max_tokens: int | None = Field(None, ge=1)
    stop: StopText | Annotated[list[StopText], Field(max_length=4)] | None = None
    seed: Seed | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: str | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, Any] | None = None

    _no_penalty = _refused(
        "presence_penalty",
        "frequency_penalty",
        message="penalties are not supported by genlab serve; leave it at 0",
    )
    _no_bias = _refused("logit_bias", message="logit_bias is not supported by genlab serve")

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def include_usage(self) -> bool:
        """Whether a stream ends with a chunk of token counts."""
        return self.stream_options is not None and self.stream_options.include_usage


class ChatCompletionRequest(_Generation):
    """``POST /v1/chat/completions``."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    tools: list[Any] | None = None

    _no_logprobs = _refused("logprobs", message=_NO_LOGPROBS)
    _no_tools = _refused("tools", message="tools are not supported by genlab serve")


class CompletionRequest(_Generation):
    """``POST /v1/completions``: continue a text (or each of several texts)."""

    prompt: str | Annotated[list[str], Field(min_length=1)]
    logprobs: int | None = None
    echo: bool | None = None

    _no_logprobs = _refused("logprobs", message=_NO_LOGPROBS)
    _no_echo = _refused("echo", message="echo is not supported by genlab serve")

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


FIELD_NAMES = frozenset(
    name
    for model in (ChatCompletionRequest, CompletionRequest, ChatMessage, TextPart, StreamOptions)
    for name in model.model_fields
)
