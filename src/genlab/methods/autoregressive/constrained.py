"""Constrained decoding: a grammar masks the logits, so the text always matches it.

A regular expression (or a JSON schema turned into one) is compiled into a DFA over bytes; walking
every token's bytes from every DFA state gives, once per (pattern, tokenizer), the tokens allowed in
each state and where each leads (Willard & Louf, 2023, "Efficient Guided Generation for Large
Language Models"). A decoding step then costs a table lookup: disallowed tokens get ``-inf``
before the choice, and the sequence's state moves with the token taken. Whatever the model's size,
a function call's arguments then parse and match their schema, and Toolformer's call syntax
(``calculator\\([^()]*\\)``) is kept.

The three steps are outlines-core's (the Rust engine behind outlines, vLLM and TGI): its
``build_regex_from_schema`` and ``Index`` run over our byte-level tokens as bytes, so a token that
holds part of a UTF-8 character is handled by the byte DFA. Before a schema reaches it, genlab
checks the schema against the subset that outlines-core turns into a regex the schema's own
validator accepts (``SCHEMA_KEYWORDS``), since outlines-core silently drops some keywords
(``minimum``, ``multipleOf``, ``pattern`` beside ``maxLength``), lets a ``pattern`` close the
JSON string early and breaks a top-level ``|`` in a pattern.

The constrained span ends with one of ``end_ids`` (e.g. ``<|eot|>`` or ``<|/tool_call|>``),
allowed exactly when the text so far is a full match; after it every token is allowed again.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import torch
from outlines_core import Index, Vocabulary
from outlines_core.json_schema import build_regex_from_schema
from torch import Tensor

from genlab.core.errors import GenlabError

if TYPE_CHECKING:  # decoding imports this module; it needs no tokenizer library
    from genlab.data.tokenizer import Tokenizer


class Constraint(Protocol):
    """One sequence's state machine over token ids."""

    def allowed(self) -> Tensor:
        """Bool mask (vocab,) of the tokens allowed next (read-only: it may be shared)."""
        ...

    def advance(self, token: int) -> None:
        """Take ``token``; raise ``GenlabError`` if it was not allowed."""
        ...

    def is_complete(self) -> bool:
        """Whether the text so far is a full match (the end tokens are then allowed)."""
        ...


class TokenIndex:
    """A pattern compiled against one tokenizer, shared by every sequence that follows it.

    Each state's mask is built on first use and kept: a JSON schema's DFA has hundreds of states,
    of which a sequence visits a few dozen.
    """

    def __init__(self, index: Index, vocab_size: int, end_ids: tuple[int, ...]) -> None:
        self.index = index
        self.end_ids = frozenset(end_ids)
        self.initial = index.get_initial_state()
        self.free = torch.ones(vocab_size, dtype=torch.bool)
        self._vocab_size = vocab_size
        self._end = torch.tensor(end_ids)
        self._masks: dict[int, Tensor] = {}

    def mask(self, state: int) -> Tensor:
        mask = self._masks.get(state)
        if mask is None:
            mask = torch.zeros(self._vocab_size, dtype=torch.bool)
            mask[self.index.get_allowed_tokens(state)] = True
            mask[self._end] = self.index.is_final_state(state)
            self._masks[state] = mask
        return mask


class IndexConstraint:
    """A ``Constraint`` that follows a ``TokenIndex``: its state is the DFA state reached. Once
    an end token is taken the span is over, and every token is allowed again."""

    def __init__(self, index: TokenIndex) -> None:
        self.index = index
        self.state = index.initial
        self.ended = False  # an end token was taken: the span is over

    def allowed(self) -> Tensor:
        return self.index.free if self.ended else self.index.mask(self.state)

    def advance(self, token: int) -> None:
        if self.ended:
            return
        token = int(token)
        if token in self.index.end_ids:
            if not self.is_complete():
                raise GenlabError(
                    f"end token {token} taken before the constrained text is complete"
                )
            self.ended = True
            return
        state = self.index.index.get_next_state(self.state, token)
        if state is None:
            raise GenlabError(f"token {token} is not allowed here by the constraint")
        self.state = state

    def is_complete(self) -> bool:
        return self.ended or self.index.index.is_final_state(self.state)


def regex_constraint(tokenizer: Tokenizer, pattern: str, *, end_ids: Sequence[int]) -> Constraint:
    """A constraint whose text must fully match ``pattern`` (Rust ``regex`` syntax, over text).

    Special tokens (and ``end_ids``) never appear inside the span. The index is cached per
    (tokenizer, pattern, end_ids); each call returns a fresh state machine for one sequence.
    """
    return IndexConstraint(_token_index(tokenizer, pattern, _end_ids(tokenizer, end_ids)))


def json_schema_constraint(
    tokenizer: Tokenizer, schema: Mapping[str, Any], *, end_ids: Sequence[int]
) -> Constraint:
    """A constraint whose text is one JSON value valid under ``schema`` (``SCHEMA_KEYWORDS``).

    Objects are written with their properties in the schema's order, optional ones may be left
    out, and at most one space separates tokens. A schema outside the subset raises
    ``GenlabError`` naming the keyword.
    """
    return regex_constraint(tokenizer, json_schema_regex(schema), end_ids=end_ids)


def allowed_mask(constraint: Constraint, vocab_size: int) -> Tensor:
    """``constraint.allowed()`` fitted to a model's vocabulary: ids the tokenizer lacks (an
    embedding padded past it) are never allowed."""
    allowed = constraint.allowed()
    if allowed.numel() >= vocab_size:
        return allowed[:vocab_size]
    return torch.cat([allowed, allowed.new_zeros(vocab_size - allowed.numel())])


def mask_logits(constraint: Constraint, logits: Tensor) -> Tensor:
    """``logits`` (..., vocab) with the tokens ``constraint`` does not allow set to ``-inf``: for a
    decoding loop of its own (the server's engine) to call on each constrained row."""
    allowed = allowed_mask(constraint, logits.size(-1)).to(logits.device)
    return logits.masked_fill(~allowed, float("-inf"))


# ---- JSON schema -> regex ------------------------------------------------------------------------

ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$schema", "$id", "$comment"}
)
# What genlab passes to outlines-core: the values it writes validate under the schema (the tests
# check each against the ``jsonschema`` package). ``pattern`` is a full match, a subset of the
# schema's search; ``format`` becomes a pattern of the format's shape (``FORMATS``: ASCII digits,
# four-digit years; the calendar is not checked, so February 31st can come out).
SCHEMA_KEYWORDS = ANNOTATIONS | {
    "type",
    "enum",
    "const",
    "anyOf",
    "$ref",
    "$defs",
    "definitions",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "format",
}
TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})
_DATE = "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_TIME = "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]([.][0-9]{1,6})?"
_OFFSET = "(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
# outlines-core's own format regexes allow non-ASCII digits, years of any length, and a time whose
# "\\." lets a backslash into the JSON string
FORMATS = {
    "date": _DATE,
    "time": f"{_TIME}{_OFFSET}",
    "date-time": f"{_DATE}T{_TIME}{_OFFSET}",
    "uuid": "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
}
# keywords whose value is an object or an array (a malformed schema fails here, in one line)
_OBJECTS = frozenset({"properties", "$defs", "definitions", "items"})
_ARRAYS = frozenset({"anyOf", "required", "enum"})
# bytes that would end or break a JSON string if a pattern let them in unescaped
_BREAKS_STRING = frozenset([ord('"'), ord("\\"), *range(0x20)])


def json_schema_regex(schema: Mapping[str, Any]) -> str:
    """The regular expression of JSON texts valid under ``schema``, or ``GenlabError``."""
    checked = _supported(schema, "#")
    try:
        return build_regex_from_schema(json.dumps(checked))
    except ValueError as e:  # e.g. a $ref outside the schema
        first = str(e).strip().splitlines()[0]
        raise GenlabError(f"JSON schema not supported by constrained decoding: {first}") from e


def _supported(schema: Any, where: str) -> dict[str, Any]:
    """A plain-dict copy of ``schema`` once each keyword is in the subset; patterns made safe."""
    if not isinstance(schema, Mapping):
        raise GenlabError(f"JSON schema at {where} is not an object")
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key not in SCHEMA_KEYWORDS:
            raise GenlabError(
                f"JSON schema keyword {key!r} (at {where}) is not supported by constrained decoding"
            )
        if key in _OBJECTS and not isinstance(value, Mapping):
            raise GenlabError(f"JSON schema keyword {key!r} (at {where}) takes an object")
        if key in _ARRAYS and not isinstance(value, (list, tuple)):
            raise GenlabError(f"JSON schema keyword {key!r} (at {where}) takes an array")
        if key in ("properties", "$defs", "definitions"):
            value = {name: _supported(sub, f"{where}/{key}/{name}") for name, sub in value.items()}
        elif key == "anyOf":
            value = [_supported(sub, f"{where}/anyOf/{i}") for i, sub in enumerate(value)]
        elif key == "items":
            value = _supported(value, f"{where}/items")
        elif key == "type":
            value = [value] if isinstance(value, str) else list(value)
            unknown = sorted(set(value) - TYPES)
            if unknown:
                raise GenlabError(f"JSON schema type {unknown[0]!r} (at {where}) is not supported")
        elif key == "additionalProperties" and not isinstance(value, bool):
            raise GenlabError(
                f"JSON schema keyword 'additionalProperties' (at {where}) is supported as true or "
                "false only, not as a schema"
            )
        elif key == "format":
            if value not in FORMATS or "pattern" in schema:
                raise GenlabError(
                    f"JSON schema keyword 'format': {value!r} (at {where}) is not supported "
                    f"(supported: {', '.join(FORMATS)}; not beside 'pattern')"
                )
            key, value = "pattern", _string_pattern(FORMATS[value], where)
        elif key == "pattern":
            value = _string_pattern(value, where)
        out[key] = value
    missing = sorted(set(out.get("required", ())) - set(out.get("properties", {})))
    if missing:
        raise GenlabError(
            f"JSON schema keyword 'required' (at {where}) names {missing[0]!r}, which 'properties' "
            "does not define"
        )
    if "pattern" in out and {"minLength", "maxLength"} & out.keys():
        raise GenlabError(
            f"JSON schema keyword 'pattern' or 'format' (at {where}) beside minLength/maxLength "
            "is not supported; put the length into the pattern"
        )
    return out


def _string_pattern(pattern: str, where: str) -> str:
    """``pattern`` as a full match in one group (outlines-core wraps it in quotes as it is, so
    ``a|b`` would become ``"a`` or ``b"``), refused where a match could hold a quote, a backslash
    or a control character: those would end or break the JSON string."""
    body = pattern.removeprefix("^")
    if body.endswith("$") and not body.endswith("\\$"):
        body = body[:-1]
    body = f"(?:{body})"
    try:
        index = Index(_whole(body), _byte_vocabulary())  # its transitions: the bytes a match holds
    except ValueError as e:
        raise GenlabError(
            f"JSON schema keyword 'pattern' {pattern!r} (at {where}) does not compile: {e}"
        ) from e
    used = {t for moves in index.get_transitions().values() for t in moves}
    if used & _BREAKS_STRING:
        raise GenlabError(
            f"JSON schema keyword 'pattern' {pattern!r} (at {where}) may match a quote, a "
            "backslash or a control character; narrow it"
        )
    return body


def _whole(pattern: str) -> str:
    """``pattern`` anchored at the end of the text: the DFA follows leftmost-first matching, so
    unanchored ``1|12`` would stop at the match ``1`` and never offer ``12``."""
    return f"(?:{pattern})\\z"


@functools.cache
def _byte_vocabulary() -> Vocabulary:
    return Vocabulary(256, {bytes([b]): [b] for b in range(256)})


# ---- indexes over a tokenizer --------------------------------------------------------------------


def _end_ids(tokenizer: Tokenizer, end_ids: Sequence[int]) -> tuple[int, ...]:
    ids = tuple(dict.fromkeys(int(i) for i in end_ids))
    if not ids:
        raise GenlabError("end_ids is empty: give the token(s) that end the constrained span")
    bad = [i for i in ids if not 0 <= i < tokenizer.vocab_size]
    if bad:
        raise GenlabError(
            f"end id {bad[0]} is outside the vocabulary (0..{tokenizer.vocab_size - 1})"
        )
    return ids


@functools.lru_cache(maxsize=64)
def _token_index(tokenizer: Tokenizer, pattern: str, end_ids: tuple[int, ...]) -> TokenIndex:
    try:
        index = Index(_whole(pattern), _vocabulary(tokenizer, end_ids))
    except ValueError as e:
        raise GenlabError(f"regex {pattern!r} does not compile against the vocabulary: {e}") from e
    return TokenIndex(index, tokenizer.vocab_size, end_ids)


@functools.lru_cache(maxsize=8)
def _vocabulary(tokenizer: Tokenizer, end_ids: tuple[int, ...]) -> Vocabulary:
    """The tokens as bytes (a byte-level BPE token is bytes, not text), special tokens left out:
    their text is not what they spell (``decode(skip_special=True)`` drops it)."""
    text_ids: dict[bytes, list[int]] = {}
    excluded = set(end_ids) | set(tokenizer.special.values())
    for i, piece in enumerate(tokenizer.token_bytes):
        if piece and i not in excluded and tokenizer.decode([i], skip_special=True):
            text_ids.setdefault(piece, []).append(i)
    return Vocabulary(end_ids[0], text_ids)
