"""The request bodies of the OpenAI API that genlab serves, as strict pydantic models.

Field names, types, ranges and defaults follow the OpenAI API reference for chat completions,
(legacy) completions and image generations, so that its official clients and the tools built on
them work unchanged. Validation is strict: a string where a number belongs is an error, not a
number. Fields this server does not know are ignored; fields it knows but cannot honour
(penalties, logit bias, image URLs) are refused when set, rather than silently dropped.

Function calling (``tools``, ``tool_choice``, ``response_format``, assistant ``tool_calls`` and
``tool`` messages) is validated here as far as one request tells; which tool names exist (the
server may add its own) is checked when the request is planned (``genlab.serve.calls``). A JSON
schema (a tool's ``parameters``, ``response_format``'s ``schema``) must be an object of at most
``MAX_SCHEMA_CHARS`` characters and ``MAX_SCHEMA_DEPTH`` levels: it becomes a grammar, and a
prompt line, for every request that sends it.

Every string must be text: JSON may spell a lone UTF-16 surrogate (``"\ud800"``), which is no
character and which no tokenizer takes, so it is refused here, naming its field. Fields of
several shapes (``stop``, ``prompt``, a message's ``content``) are checked by hand, so that an
error says what is wrong with the value rather than which shape it failed to be first.
"""

from __future__ import annotations

import json
import re
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
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # OpenAI's rule for function (and schema) names
FunctionName = Annotated[str, Field(pattern=f"^{NAME.pattern}$")]
MAX_TOOLS = 128  # OpenAI's limit
MAX_SCHEMA_CHARS = 16_384
MAX_SCHEMA_DEPTH = 16  # nested objects and lists
TOOL_CHOICES = ("none", "auto", "required")


def check_schema(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON schema object of bounded size and depth whose strings are text."""
    if not isinstance(value, dict):
        raise ValueError("must be a JSON schema object")
    size = len(json.dumps(value))
    if size > MAX_SCHEMA_CHARS:
        raise ValueError(f"the schema is {size} characters; at most {MAX_SCHEMA_CHARS}")
    level = [value]
    for _ in range(MAX_SCHEMA_DEPTH + 1):
        inner = []
        for node in level:
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, item in items:
                for text in (key, item):
                    if isinstance(text, str):
                        _text(text)
                if isinstance(item, (dict, list)):
                    inner.append(item)
        if not inner:
            return value
        level = inner
    raise ValueError(f"the schema nests deeper than {MAX_SCHEMA_DEPTH} levels")


JsonSchema = Annotated[dict[str, Any], AfterValidator(check_schema)]


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


class CalledFunction(_Strict):
    name: Text
    arguments: Text  # JSON, as the model wrote it


class ToolCall(_Strict):
    """A call an assistant message made (as an earlier answer returned it)."""

    id: Text | None = None
    type: Literal["function"] = "function"
    function: CalledFunction


class ChatMessage(_Strict):
    """One message. An assistant's may hold ``tool_calls`` (its ``content`` then null or
    absent); a ``tool`` message answers one (its ``tool_call_id`` is accepted, not needed: the
    results follow the calls in order)."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    tool_calls: list[ToolCall] | None = None
    tool_call_id: Text | None = None
    content: Text | list[TextPart] | None = Field(None, validate_default=True)
    name: Text | None = None

    @field_validator("tool_calls")
    @classmethod
    def _calls(cls, value: list[ToolCall] | None, info: ValidationInfo) -> list[ToolCall] | None:
        if value and info.data.get("role") != "assistant":
            raise ValueError("only an assistant message makes tool calls")
        return value

    @field_validator("content", mode="plain")
    @classmethod
    def _content(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            return _text(value)
        if value is None and info.data.get("tool_calls"):
            return None
        if not isinstance(value, list):
            raise ValueError(
                'must be a string or a list of {"type": "text", "text": ...} parts (null only '
                "beside an assistant's tool_calls)"
            )
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

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)

    def to_template(self) -> dict[str, Any]:
        """The message as genlab's chat template takes it ("developer" is the system role)."""
        message: dict[str, Any] = {
            "role": "system" if self.role == "developer" else self.role,
            "content": self.text(),
        }
        if self.tool_calls:
            message["tool_calls"] = [
                {"type": "function", "function": call.function.model_dump()}
                for call in self.tool_calls
            ]
        return message


class FunctionDefinition(_Strict):
    name: FunctionName
    description: Text | None = None
    parameters: JsonSchema | None = None
    strict: bool | None = None


class ToolDefinition(_Strict):
    """One of ``tools``: a function the model may call."""

    type: Literal["function"]
    function: FunctionDefinition

    def listed(self) -> dict[str, Any]:
        """The tool as the prompt lists it (``strict`` is for the grammar, not the model)."""
        function = self.function.model_dump(exclude_none=True, exclude={"strict"})
        return {"type": "function", "function": function}


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
    tools: Annotated[list[ToolDefinition], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None  # accepted; genlab makes one call per turn at most
    response_format: dict[str, Any] | None = None

    @field_validator("tools")
    @classmethod
    def _unique(cls, value: list[ToolDefinition] | None) -> list[ToolDefinition] | None:
        names = [tool.function.name for tool in value or ()]
        twice = next((n for n in names if names.count(n) > 1), None)
        if twice is not None:
            raise ValueError(f"two tools are named '{twice}'")
        return value

    @field_validator("tool_choice", mode="plain")
    @classmethod
    def _tool_choice(cls, value: Any) -> Any:
        if value is None or value in TOOL_CHOICES:
            return value
        named = isinstance(value, dict) and value.get("type") == "function"
        function = value.get("function") if named else None
        if not (isinstance(function, dict) and isinstance(function.get("name"), str)):
            raise ValueError(
                'must be "none", "auto", "required" or {"type": "function", "function": '
                '{"name": ...}}'
            )
        return {"type": "function", "function": {"name": _text(function["name"])}}

    @field_validator("response_format", mode="plain")
    @classmethod
    def _response_format(cls, value: Any) -> Any:
        if value is None:
            return None
        kind = value.get("type") if isinstance(value, dict) else None
        if kind in ("text", "json_object"):
            return {"type": kind}
        spec = value.get("json_schema") if kind == "json_schema" else None
        if not isinstance(spec, dict):
            raise ValueError(
                'must be {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", '
                '"json_schema": {"name": ..., "schema": {...}}}'
            )
        if not (isinstance(spec.get("name"), str) and NAME.fullmatch(spec["name"])):
            raise ValueError("json_schema.name must be 1 to 64 letters, digits, '_' or '-'")
        if not isinstance(spec.get("strict", False), (bool, type(None))):
            raise ValueError("json_schema.strict must be a boolean")
        if "schema" in spec:
            try:
                check_schema(spec["schema"])
            except ValueError as e:
                raise ValueError(f"json_schema.schema: {e}") from None
        return {"type": kind, "json_schema": spec}

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


MAX_IMAGES = 10  # OpenAI's bound on n
MAX_PROMPT_CHARS = 1000  # DALL-E 2's bound (a caption model reads a few words)
MAX_GUIDANCE = 50.0
IMAGE_SIZE = re.compile(r"[1-9][0-9]{0,4}x[1-9][0-9]{0,4}")  # WIDTHxHEIGHT
Quality = Literal["auto", "standard", "hd", "low", "medium", "high", "xhigh", "max"]


class ImageGenerationRequest(_Strict):
    """``POST /v1/images/generations``, with genlab's own ``seed``, ``steps`` (DDIM steps) and
    ``guidance`` (the classifier-free guidance scale).

    ``quality``, ``style`` and ``user`` are checked as OpenAI checks them and otherwise ignored
    (a diffusion run has one quality and one style). ``size`` must be the run's own or ``auto``
    (the server, which knows the run, checks it); ``response_format`` must be ``b64_json`` and
    ``output_format`` ``png``: the server keeps no files for a ``url`` to point at.
    """

    prompt: Text
    model: Text | None = None
    n: int | None = Field(None, ge=1, le=MAX_IMAGES)
    size: str | None = None
    response_format: str | None = None
    output_format: str | None = None
    quality: Quality | None = None
    style: Literal["vivid", "natural"] | None = None
    user: Text | None = None
    stream: bool | None = None
    seed: Seed | None = None
    steps: int | None = Field(None, ge=1)
    guidance: float | None = Field(None, ge=0.0, le=MAX_GUIDANCE)

    _no_stream = _refused("stream", message="streaming images is not supported by genlab serve")

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty; describe the image, e.g. 'a red circle'")
        if len(value) > MAX_PROMPT_CHARS:
            raise ValueError(f"is {len(value)} characters; at most {MAX_PROMPT_CHARS}")
        return value

    @field_validator("size", mode="plain")
    @classmethod
    def _size(cls, value: Any) -> Any:
        if value in (None, "auto") or (isinstance(value, str) and IMAGE_SIZE.fullmatch(value)):
            return value
        raise ValueError("must be 'WIDTHxHEIGHT', e.g. '32x32', or 'auto'")

    @field_validator("response_format", mode="plain")
    @classmethod
    def _b64_only(cls, value: Any) -> Any:
        if value is None or value == "b64_json":
            return value
        if value == "url":
            raise ValueError(
                "only b64_json is served: this server keeps no files for a url to point at"
            )
        raise ValueError("must be 'b64_json' (OpenAI's 'url' is not served here)")

    @field_validator("output_format", mode="plain")
    @classmethod
    def _png_only(cls, value: Any) -> Any:
        if value is None or value == "png":
            return value
        raise ValueError("only png is served")


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


FIELD_NAMES = frozenset(
    name
    for model in (
        ChatCompletionRequest,
        CompletionRequest,
        ChatMessage,
        TextPart,
        StreamOptions,
        ToolCall,
        CalledFunction,
        ToolDefinition,
        FunctionDefinition,
        ImageGenerationRequest,
    )
    for name in model.model_fields
)
