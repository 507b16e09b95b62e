"""The records of alignment: conversations, comparisons and prompts, as JSONL.

Every stage of the ChatGPT recipe (Ouyang et al., 2022, "Training language models to follow
instructions with human feedback") reads one of three record shapes, the common JSONL formats of
open fine-tuning tools:

- a conversation ``{"messages": [{"role": "user", "content": ...}, ...]}`` (SFT),
- a comparison ``{"prompt": ..., "chosen": ..., "rejected": ...}`` (reward model, DPO), where the
  prompt is a user message (a string) or a list of messages, and the answers are strings,
- a prompt ``{"prompt": ...}`` (PPO; comparison and conversation files work too).

A user's file and TinyWorld (``genlab.data.tinyworld``) produce the same records, so the stages
in ``genlab.align`` never know where their data came from. A user's file is checked as it is
read, every problem named by ``file:line`` (the physical line, blank lines counted), so a bad
record fails before training starts rather than deep inside it. Files are UTF-8, a byte-order
mark at the start allowed (editors on Windows write one).
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes
from genlab.data.chat_template import check_messages
from genlab.data.tokenizer import Tokenizer

T = TypeVar("T")

Messages = list[dict[str, Any]]
Prompt = str | Messages


def read_jsonl(path: str | os.PathLike, what: str) -> list[dict[str, Any]]:
    """The records of a JSONL file, with a one-line error naming the first bad line."""
    return [record for _, record in numbered_records(path, what)]


def numbered_records(path: str | os.PathLike, what: str) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` of each non-blank line, so errors can name ``file:line``."""
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"{what} file not found: {path} (give a .jsonl file or 'tinyworld')")
    records = list(iter_jsonl(path))
    if not records:
        raise GenlabError(f"{path} holds no records")
    return records


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of each non-blank line, read lazily (corpora can be large).

    Lines are decoded one by one, so a byte that is not UTF-8 is reported at its line."""
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            if n == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise GenlabError(
                    f"{path}:{n} is not UTF-8 (byte {e.object[e.start]:#04x} at column "
                    f"{e.start + 1}); save the file as UTF-8"
                ) from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise GenlabError(f"{path}:{n} is not valid JSON ({e.msg})") from e
            if not isinstance(record, dict):
                raise GenlabError(f"{path}:{n} is not a JSON object")
            yield n, record


def _at(path: str | os.PathLike, n: int, check: Callable[[], T]) -> T:
    """``check()``, its one-line error prefixed with ``file:line``."""
    try:
        return check()
    except GenlabError as e:
        raise GenlabError(f"{path}:{n}: {e}") from None


def write_jsonl(path: str | os.PathLike, records: Iterable[Mapping[str, Any]]) -> None:
    """Write records one JSON object per line, atomically."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write_bytes(path, text.encode())


def read_conversations(path: str | os.PathLike) -> list[Messages]:
    """The ``messages`` lists of a conversations JSONL, each checked against the chat template
    and containing an assistant turn."""
    out = []
    for n, record in numbered_records(path, "conversations"):
        messages = record.get("messages")
        if not isinstance(messages, list) or not messages:
            raise GenlabError(f"{path}:{n} has no 'messages' list")
        roles = [role for role, _, _ in _at(path, n, lambda m=messages: check_messages(m))]
        if "assistant" not in roles:
            raise GenlabError(f"{path}:{n} has no assistant message to learn from")
        out.append(messages)
    return out


def read_comparisons(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The ``{"prompt", "chosen", "rejected"}`` records of a comparisons JSONL, checked."""
    pairs = []
    for n, pair in numbered_records(path, "comparisons"):
        for key in ("prompt", "chosen", "rejected"):
            if key not in pair:
                raise GenlabError(f"{path}:{n} lacks '{key}'")
        if not isinstance(pair["chosen"], str) or not isinstance(pair["rejected"], str):
            raise GenlabError(f"{path}:{n}: 'chosen' and 'rejected' must be strings")
        _at(path, n, lambda p=pair["prompt"]: check_messages(prompt_messages(p)))
        pairs.append(pair)
    return pairs


def read_prompts(path: str | os.PathLike) -> list[Prompt]:
    """Prompts from a JSONL whose lines hold ``{"prompt": ...}`` (comparison files work too) or
    ``{"messages": [...]}`` (a trailing assistant message is dropped, so SFT files work too)."""
    prompts: list[Prompt] = []
    for n, record in numbered_records(path, "prompts"):
        if "prompt" in record:
            prompt = record["prompt"]
        elif isinstance(record.get("messages"), list):
            prompt = list(record["messages"])
            last = prompt[-1] if prompt else None
            if isinstance(last, Mapping) and last.get("role") == "assistant":
                prompt.pop()
        else:
            raise GenlabError(f'{path}:{n} holds neither "prompt" nor "messages"')
        _at(path, n, lambda p=prompt: check_messages(prompt_messages(p)))
        prompts.append(prompt)
    return prompts


def prompt_messages(prompt: str | Sequence[Mapping[str, Any]]) -> Messages:
    """A prompt as chat messages: a string is one user message; a list is taken as it is."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, Sequence) and prompt and all(isinstance(m, Mapping) for m in prompt):
        return [dict(m) for m in prompt]
    raise GenlabError("a prompt must be a string or a non-empty list of chat messages")


def render_answer(tokenizer: Tokenizer, prompt: Prompt, answer: str) -> tuple[list[int], int]:
    """Ids of ``prompt`` answered by ``answer`` (ending with ``<|eot|>``), and where the answer
    starts: ``ids[start:]`` are the assistant's tokens. The reward model and DPO read exactly
    the layout the chat model writes."""
    messages = prompt_messages(prompt)
    start = len(tokenizer.render_prompt(messages))
    ids, _ = tokenizer.render_chat([*messages, {"role": "assistant", "content": answer}])
    return ids, start


def split_records(records: list[Any], val_fraction: float) -> tuple[list[Any], list[Any]]:
    """A user's records split into training and held-out parts (the held-out ones last)."""
    if not 0.0 < val_fraction < 0.5:
        raise GenlabError(f"val_fraction must be in (0, 0.5), got {val_fraction}")
    n_val = max(1, round(len(records) * val_fraction))
    if len(records) - n_val < 1:
        raise GenlabError(f"only {len(records)} records: too few to hold some out; give more")
    return records[:-n_val], records[-n_val:]
