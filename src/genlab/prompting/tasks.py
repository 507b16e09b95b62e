"""The questions an evaluation asks: TinyWorld families by name, or a JSONL file of your own.

A file holds one task per line: ``{"prompt": ..., "answer": ...}`` plus, optionally, ``family``
(the file's name by default), ``match`` (how answers compare: number, word, sequence, letters,
yesno), ``steps`` (a worked solution, for chain-of-thought demonstrations) and ``subquestions``
(``[{"question", "answer"}]``, for least-to-most). Demonstrations for a file's task are the
file's other tasks; for a TinyWorld family they are drawn from its train split, never the
evaluated one.
"""

from __future__ import annotations

from pathlib import Path

from genlab.core.errors import GenlabError
from genlab.data.records import numbered_records
from genlab.data.tinyworld import World, make_examples
from genlab.data.tinyworld.answers import MATCH_MODES
from genlab.data.tinyworld.families import FAMILIES
from genlab.data.tinyworld.families.base import Example
from genlab.data.tinyworld.tasks import SPLITS

POOL_PER_FAMILY = 200  # train-split examples a TinyWorld family's demonstrations come from


def read_tasks(path: str | Path) -> list[Example]:
    """The tasks of a JSONL file, with a ``file:line`` error for the first bad one."""
    path = Path(path)
    examples = []
    for n, record in numbered_records(path, "tasks"):
        where = f"{path}:{n}"
        for key in ("prompt", "answer"):
            if not isinstance(record.get(key), str) or not record[key].strip():
                raise GenlabError(f"{where} needs a non-empty string {key!r}")
        if record.get("match", "word") not in MATCH_MODES:
            raise GenlabError(
                f"{where}: match {record['match']!r} is unknown; use one of {', '.join(MATCH_MODES)}"
            )
        try:
            examples.append(Example.from_dict({"family": path.stem} | record))
        except (KeyError, TypeError, ValueError) as e:
            raise GenlabError(
                f"{where}: steps must be a list of strings and subquestions a list of "
                f'{{"question", "answer"}} objects ({e})'
            ) from None
    return examples


def load_tasks(
    tasks: str, split: str = "test", n_per_family: int = 50, world: int = 0, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """``(questions, demonstration pool)`` for ``tasks``: a ``.jsonl`` path, or TinyWorld family
    names separated by commas (``n_per_family`` questions of ``split`` each)."""
    if tasks.endswith(".jsonl"):
        examples = read_tasks(tasks)
        return examples, examples
    if split not in SPLITS[1:]:
        raise GenlabError(f"evaluate on validation or test, not {split!r}")
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        raise GenlabError(
            f"unknown task family {', '.join(unknown) or tasks!r}: give a .jsonl file or "
            f"families from: {', '.join(FAMILIES)}"
        )
    w = World(world)
    questions = [e for n in names for e in make_examples(w, n, n_per_family, split, seed)]
    pool = [e for n in names for e in make_examples(w, n, POOL_PER_FAMILY, "train", seed + 1)]
    return questions, pool
