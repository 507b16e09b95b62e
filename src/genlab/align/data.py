"""The data of alignment: conversations, preference pairs, and where they come from.

Every stage of the ChatGPT recipe (Ouyang et al., 2022, "Training language models to follow
instructions with human feedback") reads one of two record shapes, the common JSONL formats of
open fine-tuning tools:

- a conversation ``{"messages": [{"role": "user", "content": ...}, ...]}`` (SFT), and
- a comparison ``{"prompt": ..., "chosen": ..., "rejected": ...}`` (reward model, DPO), where the
  prompt is a user message (a string) or a list of messages, and the answers are strings.

A stage's ``data`` is either a path to such a JSONL file or ``"tinyworld"``: the built-in
world's demonstrations and judge-ranked pairs (``genlab.data.tinyworld``), drawn from the train
split of the chosen task families so that evaluation on the test split never sees a training
question. A comparison becomes token ids by the chat template, prompt then answer, so the reward
model and DPO read exactly the layout the chat model writes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from genlab.core.checkpoint import CONFIG_FILE
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes, read_json
from genlab.data.tinyworld import FAMILIES, TaskSuite, World
from genlab.data.tokenizer import Tokenizer

TINYWORLD = "tinyworld"
# The task families a 1-5M parameter model learns in minutes on a CPU (measured in
# docs/chatgpt.md); the others stay available with --families all.
DEFAULT_FAMILIES = ("sentiment", "cipher_from", "cipher_to", "uppercase", "max_list")
WORLD_FILE = "tinyworld.json"  # written into every run trained on TinyWorld: which world

Messages = list[dict[str, Any]]


def parse_families(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """Family names from ``"a,b,c"``, ``"all"`` or a sequence; checked against TinyWorld's."""
    if spec is None:
        return DEFAULT_FAMILIES
    names = list(FAMILIES) if spec == "all" else spec.split(",") if isinstance(spec, str) else spec
    names = [n.strip() for n in names if n.strip()]
    for name in names:
        if name not in FAMILIES:
            raise GenlabError(
                f"unknown task family '{name}'; choose from: all, {', '.join(FAMILIES)}"
            )
    if not names:
        raise GenlabError("no task families given: name at least one (or 'all')")
    return tuple(dict.fromkeys(names))


def task_suite(world_seed: int, families: Sequence[str]) -> TaskSuite:
    """The suite of ``families`` in ``World(world_seed)``, none held out (they are all tuned)."""
    return TaskSuite(World(world_seed), held_out=(), families=families)


def world_seed_of(run: str | os.PathLike) -> int:
    """The TinyWorld seed a run was trained on: its ``tinyworld.json``, else (a pretraining run
    on the built-in corpus) its training seed, which is the world's seed there."""
    run = Path(run)
    if (run / WORLD_FILE).is_file():
        return int(read_json(run / WORLD_FILE, "TinyWorld record")["world_seed"])
    if (run / CONFIG_FILE).is_file():
        seed = read_json(run / CONFIG_FILE, "run config").get("train", {}).get("seed")
        if isinstance(seed, int):
            return seed
    return 0


def world_record(world_seed: int, families: Sequence[str]) -> bytes:
    """The ``tinyworld.json`` of a run: the world and the families it was tuned on."""
    return json.dumps({"world_seed": world_seed, "families": list(families)}, indent=2).encode()


def read_jsonl(path: str | os.PathLike, what: str) -> list[dict[str, Any]]:
    """The records of a JSONL file, with a one-line error naming the first bad line."""
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"{what} file not found: {path} (give a .jsonl file or 'tinyworld')")
    records = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise GenlabError(f"{path}:{n} is not valid JSON ({e.msg})") from e
            if not isinstance(record, dict):
                raise GenlabError(f"{path}:{n} is not a JSON object")
            records.append(record)
    if not records:
        raise GenlabError(f"{path} holds no records")
    return records


def write_jsonl(path: str | os.PathLike, records: Iterable[Mapping[str, Any]]) -> None:
    """Write records one JSON object per line, atomically."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write_bytes(path, text.encode())


def read_conversations(path: str | os.PathLike) -> list[Messages]:
    """The ``messages`` lists of a conversations JSONL; each must contain an assistant turn."""
    out = []
    for n, record in enumerate(read_jsonl(path, "conversations"), 1):
        messages = record.get("messages")
        if not isinstance(messages, list) or not messages:
            raise GenlabError(f"{path}: record {n} has no 'messages' list")
        if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
            raise GenlabError(f"{path}: record {n} has no assistant message to learn from")
        out.append(messages)
    return out


def read_pairs(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The ``{"prompt", "chosen", "rejected"}`` records of a comparisons JSONL, checked."""
    pairs = read_jsonl(path, "comparisons")
    for n, pair in enumerate(pairs, 1):
        for key in ("prompt", "chosen", "rejected"):
            if key not in pair:
                raise GenlabError(f"{path}: record {n} lacks '{key}'")
        if not isinstance(pair["chosen"], str) or not isinstance(pair["rejected"], str):
            raise GenlabError(f"{path}: record {n}: 'chosen' and 'rejected' must be strings")
        prompt_messages(pair["prompt"])  # raises on a malformed prompt
    return pairs


def prompt_messages(prompt: str | Sequence[Mapping[str, Any]]) -> Messages:
    """A prompt as chat messages: a string is one user message; a list is taken as it is."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, Sequence) and prompt and all(isinstance(m, Mapping) for m in prompt):
        return [dict(m) for m in prompt]
    raise GenlabError("a prompt must be a string or a non-empty list of chat messages")


def render_answer(
    tokenizer: Tokenizer, prompt: str | Sequence[Mapping[str, Any]], answer: str
) -> tuple[list[int], int]:
    """Ids of ``prompt`` answered by ``answer`` (ending with ``<|eot|>``), and where the answer
    starts: ``ids[start:]`` are the assistant's tokens."""
    messages = prompt_messages(prompt)
    start = len(tokenizer.render_prompt(messages))
    ids, _ = tokenizer.render_chat([*messages, {"role": "assistant", "content": answer}])
    return ids, start


def pad_right(
    seqs: Sequence[Sequence[int]], pad_id: int, length: int | None = None
) -> torch.Tensor:
    """(N, length) int64 rows, each sequence followed by ``pad_id``."""
    length = length or max(len(s) for s in seqs)
    out = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
    return out


def split_records(records: list[Any], val_fraction: float) -> tuple[list[Any], list[Any]]:
    """A user's records split into training and held-out parts (the held-out ones last)."""
    if not 0.0 < val_fraction < 0.5:
        raise GenlabError(f"val_fraction must be in (0, 0.5), got {val_fraction}")
    n_val = max(1, round(len(records) * val_fraction))
    if len(records) - n_val < 1:
        raise GenlabError(f"only {len(records)} records: too few to hold some out; give more")
    return records[:-n_val], records[-n_val:]
