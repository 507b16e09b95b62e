"""Write a TinyWorld data set to a folder, with a dataset card.

Everything genlab's recipes read from TinyWorld can be written as plain files (text and JSONL),
so a user sees exactly what a model was trained on, and can swap in their own files of the same
shape. The folder carries a dataset card (``README.md``; after Gebru et al., 2021, "Datasheets
for Datasets"): what is in it, how many of each, how it was made, and the judge's rules.

Layout::

    README.md             the dataset card
    manifest.json         settings and counts, machine-readable
    corpus.txt            pretraining documents, separated by blank lines
    facts.jsonl           every fact with its Zipf rank, weight, frequency class and corpus count
    tasks/train.jsonl     tuned families (also validation.jsonl, test.jsonl)
    tasks/held_out.jsonl  held-out families (unseen instructions)
    demonstrations.jsonl  {"messages": [user, assistant]} for supervised fine-tuning
    preferences.jsonl     {"prompt", "chosen", "rejected"} for reward models and DPO
    tool_text.txt         tool-shaped paragraphs, one per line
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes, atomic_write_json
from genlab.data.tinyworld.families import FAMILIES
from genlab.data.tinyworld.judge import describe_rules
from genlab.data.tinyworld.preferences import demonstrations, preference_pairs
from genlab.data.tinyworld.tasks import DEFAULT_HELD_OUT, SPLITS, TaskSuite
from genlab.data.tinyworld.tool_text import tool_text
from genlab.data.tinyworld.world import DEFAULT_SIZE, FREQ_CLASSES, World


@dataclass(frozen=True)
class TinyWorldConfig:
    """What to write; every field has a default that runs in seconds."""

    seed: int = 0
    size: int = DEFAULT_SIZE
    corpus_chars: int = 2_000_000
    train_per_family: int = 200
    eval_per_family: int = 50
    demonstrations: int = 2000
    pairs: int = 2000
    noise: float = 0.1
    tool_docs: int = 500
    held_out: tuple[str, ...] = DEFAULT_HELD_OUT

    def check(self) -> None:
        for name in (
            "corpus_chars",
            "train_per_family",
            "eval_per_family",
            "demonstrations",
            "pairs",
            "tool_docs",
        ):
            if getattr(self, name) < 0:
                raise GenlabError(
                    f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}"
                )
        if not 0.0 <= self.noise <= 1.0:
            raise GenlabError(f"label noise is a probability in [0, 1], got {self.noise}")
        unknown = [f for f in self.held_out if f not in FAMILIES]
        if unknown:
            raise GenlabError(
                f"unknown held-out family {unknown[0]!r}; choose from: {', '.join(FAMILIES)}"
            )


def _jsonl(records: Iterable[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def _write_corpus(path: Path, docs: Iterable[str]) -> tuple[int, int]:
    """Stream documents to a temporary file, then rename it into place (atomic, any size)."""
    tmp = path.with_name(f".{path.name}.tmp")
    n_docs = n_chars = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for doc in docs:
                text = ("\n\n" if n_docs else "") + doc
                f.write(text)
                n_docs, n_chars = n_docs + 1, n_chars + len(text)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return n_docs, n_chars


def write_tinyworld(
    out: str | os.PathLike, config: TinyWorldConfig = TinyWorldConfig()
) -> dict[str, Any]:
    """Write the data set described by ``config`` into folder ``out``; return its counts."""
    config.check()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GenlabError(f"--out {out} exists and is not a folder")
    (out / "tasks").mkdir(parents=True, exist_ok=True)
    world = World(config.seed, config.size)
    suite = TaskSuite(world, held_out=config.held_out)

    fact_counts: Counter[int] = Counter()
    docs = world.corpus(n_chars=config.corpus_chars, seed=config.seed, fact_counts=fact_counts)
    n_docs, n_chars = _write_corpus(out / "corpus.txt", docs)
    facts = [{**f.to_dict(), "corpus_count": fact_counts[f.index]} for f in world.facts]
    atomic_write_bytes(out / "facts.jsonl", _jsonl(facts))

    task_counts: dict[str, dict[str, int]] = {}
    for split in (*SPLITS, "held_out"):
        n = config.train_per_family if split == "train" else config.eval_per_family
        examples = suite.examples(split, n, config.seed)
        atomic_write_bytes(out / "tasks" / f"{split}.jsonl", _jsonl(e.to_dict() for e in examples))
        task_counts[split] = dict(Counter(e.family for e in examples))

    demos = (
        demonstrations(suite, config.demonstrations, config.seed) if config.demonstrations else []
    )
    atomic_write_bytes(out / "demonstrations.jsonl", _jsonl(demos))
    pairs = preference_pairs(suite, config.pairs, config.seed, config.noise) if config.pairs else []
    atomic_write_bytes(out / "preferences.jsonl", _jsonl(pairs))
    tools = tool_text(world, config.tool_docs, config.seed)
    atomic_write_bytes(out / "tool_text.txt", "".join(d + "\n" for d in tools).encode())

    counts = {
        "corpus_documents": n_docs,
        "corpus_characters": n_chars,
        "facts": len(world.facts),
        "facts_by_class": {c: sum(f.freq_class == c for f in world.facts) for c in FREQ_CLASSES},
        "tasks": task_counts,
        "demonstrations": len(demos),
        "preference_pairs": len(pairs),
        "tool_text_documents": len(tools),
    }
    config_dict = {**asdict(config), "held_out": list(config.held_out)}
    atomic_write_json(
        out / "manifest.json", {"config": config_dict, "counts": counts, "world": repr(world)}
    )
    atomic_write_bytes(
        out / "README.md", _card(world, suite, config, counts, demos, pairs, tools).encode()
    )
    return counts


def _card(
    world: World,
    suite: TaskSuite,
    config: TinyWorldConfig,
    counts: dict[str, Any],
    demos: list[dict[str, Any]],
    pairs: list[dict[str, str]],
    tools: list[str],
) -> str:
    """The dataset card: contents, counts, how to read it, the judge's rules, samples."""
    classes = counts["facts_by_class"]
    rows = "\n".join(
        f"| {name} | {'held out' if name in suite.held_out else 'tuned'} | "
        + " | ".join(str(counts["tasks"][s].get(name, 0)) for s in (*SPLITS, "held_out"))
        + f" | {FAMILIES[name].description} |"
        for name in suite.families
    )
    sample_doc = next(world.corpus(n_docs=1, seed=config.seed))
    lines = [
        f"# TinyWorld (seed {config.seed}, size {config.size})",
        "",
        "An invented world and text about it, generated by `genlab data tinyworld` "
        f"(genlab.data.tinyworld). {world!r}. The cipher language is called {world.language}.",
        "Nothing here comes from real data: every fact is made up, every answer is checkable.",
        "",
        "## Contents",
        "",
        "| file | what | count |",
        "|---|---|---|",
        f"| corpus.txt | pretraining documents (encyclopedia 40%, stories 25%, arithmetic 20%, dialogues 15%), blank-line separated | {counts['corpus_documents']} documents, {counts['corpus_characters']} characters |",
        f"| facts.jsonl | every fact: subject, relation, object, Zipf rank, weight, frequency class, times stated in corpus.txt | {counts['facts']} ({classes['frequent']} frequent, {classes['medium']} medium, {classes['rare']} rare) |",
        f"| tasks/{{train,validation,test}}.jsonl | instruction examples of the tuned families | {', '.join(str(sum(counts['tasks'][s].values())) for s in SPLITS)} |",
        f"| tasks/held_out.jsonl | examples of the held-out families ({', '.join(suite.held_out) or 'none'}) | {sum(counts['tasks']['held_out'].values())} |",
        f"| demonstrations.jsonl | SFT chats of mixed style (30% terse, 25% sentence, 15% worked steps, 30% padded), all correct | {counts['demonstrations']} |",
        f"| preferences.jsonl | `{{prompt, chosen, rejected}}` ranked by the judge, label noise {config.noise} | {counts['preference_pairs']} |",
        f"| tool_text.txt | prose where a calculator, calendar, fact lookup or translator helps (no tool calls) | {counts['tool_text_documents']} |",
        "",
        "Frequency classes: facts are shuffled and the fact of rank r is stated in proportion to 1/r;",
        "the top 10% of ranks are `frequent`, the next 30% `medium`, the rest `rare`.",
        "",
        "## Task families",
        "",
        "Each example (one JSON object per line) has `family`, `prompt`, `answer`, `steps` (a worked",
        "solution), `subquestions` (a least-to-most decomposition, the last answering the prompt),",
        "`match`, `case_sensitive` and `meta`. Splits are decided by a hash of each question's",
        "content, so all phrasings of one question share a split and the splits never overlap.",
        "",
        "| family | role | train | validation | test | held_out | skill |",
        "|---|---|---|---|---|---|---|",
        rows,
        "",
        "## Checking answers",
        "",
        "An answer is right when its *final answer* matches the reference: the text after the last",
        '"answer is" or "answer:" (up to the end of that sentence), or else the last sentence of the',
        "last line; stripped of quotes and a trailing period; compared by the family's `match` mode",
        "(number: last integer; word: equal or ends with the answer; sequence; letters; yes/no). See",
        "`genlab.data.tinyworld.answers`.",
        "",
        "## The judge's rules",
        "",
        "The judge scores a response; preference pairs are ranked by it.",
        "",
        describe_rules(),
        "",
        "## Samples",
        "",
        "A corpus document:",
        "",
        "```text",
        sample_doc,
        "```",
        "",
    ]
    if demos:
        lines += [
            "A demonstration:",
            "",
            "```json",
            json.dumps(demos[0], ensure_ascii=False),
            "```",
            "",
        ]
    if pairs:
        lines += [
            "A preference pair:",
            "",
            "```json",
            json.dumps(pairs[0], ensure_ascii=False),
            "```",
            "",
        ]
    if tools:
        lines += ["Tool-shaped text:", "", "```text", tools[0], "```", ""]
    return "\n".join(lines)
