"""A text with tool calls inserted between its tokens, as ids a language model reads.

Toolformer (Schick et al., 2023) writes a call and its result into ordinary text,
``... is [Calculator(345 + 678) -> 1023] 1023.``, with special tokens in place of the brackets::

    <|tool_call|>calculator( 345 + 678)<|/tool_call|><|tool_result|> 1023<|/tool_result|>

A call goes between two tokens of the text, so the text's own tokens never change: the filter
compares the loss of the same following tokens with and without the call, and the fine-tuned
model sees the text as pretraining tokenised it. The result's tokens (its two markers included)
are written by the tool at inference, never by the model, so training gives them no loss
(nanochat marks such forced tokens the same way).

A call's arguments and its result are each led by a space. Byte-level BPE spells ``872`` after
``(`` and `` 872`` after a space with different ids; with the space, the numbers a call copies
from the question and the result the answer copies are the very ids of the text, and a model of
a million parameters learns to copy ids long before it learns to respell them (measured on the
ladder's l rung: the annotator wrote the right calculator call for 31 of 200 questions without
the space, the first operand most often wrong).
"""

from __future__ import annotations

from collections.abc import Sequence

from genlab.data.tokenizer import Tokenizer
from genlab.nets.gpt import IGNORE_INDEX
from genlab.tools.base import format_call, parse_call


def spaced_call(call: str) -> str:
    """``calculator( 345 + 678)``: the call with its arguments led by one space."""
    parsed = parse_call(call)
    return call if parsed is None else format_call(parsed[0], " " + parsed[1].strip())


def result_ids(tokenizer: Tokenizer, result: str) -> list[int]:
    """A result's ids, led by a space as the text states it (`` 1023``)."""
    return tokenizer.encode(" " + result.strip()) if result.strip() else []


def call_ids(tokenizer: Tokenizer, call: str, result: str | None) -> list[int]:
    """The call and its result as ids; ``result=None`` is the call with an empty result
    (Toolformer's second baseline: does the call alone help, or its result?)."""
    ids = [tokenizer.tool_call_id, *tokenizer.encode(spaced_call(call)), tokenizer.tool_call_end_id]
    body = result_ids(tokenizer, result) if result else []
    return [*ids, tokenizer.tool_result_id, *body, tokenizer.tool_result_end_id]


def with_calls(
    tokenizer: Tokenizer, ids: Sequence[int], calls: Sequence[tuple[int, str, str]]
) -> tuple[list[int], list[int]]:
    """Inputs and next-token targets of ``<|bos|>`` + ``ids`` with each ``(position, call,
    result)`` inserted before ``ids[position]``; the result's tokens are not targets."""
    seq, scored = [tokenizer.bos_id], [False]
    done = 0
    for position, call, result in sorted(calls):
        seq += ids[done:position]
        scored += [True] * (position - done)
        inserted = call_ids(tokenizer, call, result)
        result_len = len(inserted) - inserted.index(tokenizer.tool_result_id)
        seq += inserted
        scored += [True] * (len(inserted) - result_len) + [False] * result_len
        done = position
    seq += ids[done:]
    scored += [True] * (len(ids) - done)
    targets = [t if s else IGNORE_INDEX for t, s in zip(seq[1:], scored[1:], strict=True)]
    return seq[:-1], targets


def strip_calls(tokenizer: Tokenizer, ids: Sequence[int]) -> list[int]:
    """``ids`` without their call and result segments: the text a reader sees."""
    opening = {tokenizer.tool_call_id: tokenizer.tool_call_end_id}
    opening[tokenizer.tool_result_id] = tokenizer.tool_result_end_id
    out: list[int] = []
    closing: int | None = None
    for t in ids:
        if closing is not None:
            closing = None if t == closing else closing
        elif t in opening:
            closing = opening[t]
        else:
            out.append(t)
    return out
