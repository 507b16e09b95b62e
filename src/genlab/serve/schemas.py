"""The request bodies of the OpenAI API that genlab serves, as strict pydantic models.

Field names, types, ranges and defaults follow the OpenAI API reference for chat completions and
(legacy) completions, so that its official clients and the tools built on them work unchanged.
Validation is strict: a string where a number belongs is an error, not a number. Fields this
server does not know are ignored; fields it knows but cannot honour (penalties, logit bias,
tools) are refused when set, rather than silently dropped.

Every string must be text: JSON may spell a lone UTF-16 surrogate (``"\ud800"``), which is no
character and which no tokenizer takes, so it is refused here, naming its field. Fields of
several shapes (``stop``, ``prompt``, a message's ``content``) are checked by hand, so that an
error says what is wrong with the value rather than which shape it failed to be first.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)


def _text(value: str) -> str:
    """``value`` if it is text (encodable as UTF-8)."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(
                f"contains {value[e.start]!r} at character {e.start}, a lone UTF-16 surrogate, "
                "which is not text"
            ) from None
    return value


Text = Annotated[str, AfterValidator(_text)]
Seed = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]  # a signed 64-bit integer
StopText = Annotated[Text, Field(min_length=1)]
MAX_STOPS = 4


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
    text: Text


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[TextPart]
    name: Text | None = None

    @field_validator("content", mode="plain")
    @classmethod
    def _content(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _text(value)
        if not isinstance(value, list):
            raise ValueError('must be a string or a list of {"type": "text", "text": ...} parts')
        for i, part in enumerate(value):
            if not (isinstance(part, dict) and part.get("type") == "text"):
                raise ValueError(
                    f'part {i} must be {{"type": "text", "text": ...}}: genlab\'s models read '
                    "text only"
                )
            if not isinstance(part.get("text"), str):
                raise ValueError(f"part {i}'s text must be a string")
            _text(part["text"])
        return [TextPart(type="text", text=part["text"]) for part in value]

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

    model: Text | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int | None = Field(None, ge=1, le=16)
    max_tokens: int | None = Field(None, ge=1)
    stop: StopText | Annotated[list[StopText], Field(max_length=MAX_STOPS)] | None = None
    seed: Seed | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    user: Text | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, Any] | None = None

    _no_penalty = _refused(
        "presence_penalty",
        "frequency_penalty",
        message="penalties are not supported by genlab serve; leave it at 0",
    )
    _no_bias = _refused("logit_bias", message="logit_bias is not supported by genlab serve")

    @field_validator("stop", mode="plain")
    @classmethod
    def _stop(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, list):
            if len(value) > MAX_STOPS:
                raise ValueError(f"at most {MAX_STOPS} stop sequences, got {len(value)}")
            items = value
        elif isinstance(value, str):
            items = [value]
        else:
            raise ValueError(f"must be a string or a list of up to {MAX_STOPS} strings")
        for s in items:
            if not isinstance(s, str) or not s:
                raise ValueError("each stop sequence must be a non-empty string")
            _text(s)
        return value

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
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[Any] | None = None

    _no_tools = _refused("tools", message="tools are not supported by genlab serve")

    @field_validator("top_logprobs")
    @classmethod
    def _needs_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not info.data.get("logprobs"):
            raise ValueError("needs logprobs: true")
        return value

    def logprob_count(self) -> int | None:
        """Alternatives per token the engine must send, or None for no log-probs."""
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(_Generation):
    """``POST /v1/completions``: continue a text, token ids, or each of several of either.

    ``max_tokens: 0`` with ``echo`` only scores the prompt (what evaluation harnesses ask).
    """

    prompt: Text | list[Text] | list[int] | list[list[int]]
    max_tokens: int | None = Field(None, ge=0)
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool | None = None

    @field_validator("prompt", mode="plain")
    @classmethod
    def _prompt(cls, value: Any) -> Any:
        shape = "a string, a list of strings, a list of token ids, or a list of such lists"
        if isinstance(value, str):
            return _text(value)
        if not isinstance(value, list) or not value:
            raise ValueError(f"must be {shape}" + (", not empty" if value == [] else ""))
        if all(isinstance(p, str) for p in value):
            return [_text(p) for p in value]
        if all(_is_id(t) for t in value):
            return value
        if all(isinstance(p, list) for p in value):
            for i, ids in enumerate(value):
                if not ids or not all(_is_id(t) for t in ids):
                    raise ValueError(f"item {i} must be a non-empty list of token ids (ints >= 0)")
            return value
        raise ValueError(f"must be {shape}; token ids are ints >= 0")

    def prompts(self) -> list[str] | list[list[int]]:
        """Each prompt: all texts or all token-id lists."""
        if isinstance(self.prompt, str) or (self.prompt and isinstance(self.prompt[0], int)):
            return [self.prompt]  # type: ignore[list-item]
        return list(self.prompt)  # type: ignore[arg-type]


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


FIELD_NAMES = frozenset(
    name
    for model in (ChatCompletionRequest, CompletionRequest, ChatMessage, TextPart, StreamOptions)
    for name in model.model_fields
)
