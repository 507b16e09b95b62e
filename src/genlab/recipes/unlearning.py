"""Unlearning a fact model's people, and measuring what it still knows, as TOFU reports it.

What to forget is a spec: ``person:NAME`` (every fact of a person; several names
comma-separated), ``persons:N`` (N trained people of a seeded draw) or a JSONL file of
``{"prompt", "answer"}`` records. Each fact is unlearned in all of its question phrasings; the
retain set is every other trained person's facts. :func:`run_unlearn` writes a GPT run folder
(with the fact model's ``facts.json``, so it opens as a fact model too) and ``unlearning.json``:
the settings, and before and after, the accuracy on the forget set, the retain set (null when no
one is left), the world's other facts and the held-out people's (what guessing scores), and the
loss-based membership-inference AUC of the forget set against the held-out people (0.5:
indistinguishable from never seen; TOFU, Maini et al., 2024).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes
from genlab.data.records import numbered_records
from genlab.data.tinyworld.world import Fact
from genlab.methods.autoregressive.checkpoint import save_gpt
from genlab.metrics.roc import auroc
from genlab.recipes.fact_model import (
    FactModel,
    answers,
    copy_facts,
    fact_prompt,
    fact_target,
    open_fact_model,
    person_facts,
    world_facts,
)
from genlab.research.membership import Pair, answer_nll
from genlab.research.unlearning import UnlearnConfig, unlearn

REPORT_FILE = "unlearning.json"
PHRASINGS = range(3)  # every relation asks its question three ways


@dataclass
class UnlearnRunConfig:
    """The fact model, what it forgets, where the result goes, and how it unlearns."""

    model: str = "runs/fact_model"  # a fact model's run folder
    forget: str = ""  # person:NAME[,NAME], persons:N, or a JSONL file of {"prompt", "answer"}
    out: str = "runs/unlearn"  # run folder to write
    device: str = "auto"  # auto, cpu, cuda, mps
    unlearn: UnlearnConfig = field(default_factory=UnlearnConfig)


@dataclass
class ForgetSet:
    """What a spec names: facts (people) or free (prompt, answer) records, and whose they are."""

    persons: list[str]
    facts: list[Fact]
    records: list[tuple[str, str]]  # (prompt, answer) of a JSONL spec; empty for people


def forget_set(fm: FactModel, spec: str, seed: int) -> ForgetSet:
    """Resolve ``--forget``; every problem is one line naming the fix."""
    if spec.startswith("person:"):
        names = [n.strip() for n in spec.removeprefix("person:").split(",") if n.strip()]
        if not names:
            raise GenlabError("--forget person: needs a name, e.g. person:" + fm.trained[0])
        for name in names:
            if name in fm.holdout:
                raise GenlabError(
                    f"{name} is held out: the fact model never saw their facts, so there is "
                    f"nothing to unlearn; forget one of {', '.join(fm.trained)}"
                )
            if name not in fm.trained:
                raise GenlabError(
                    f"'{name}' is not a person of this fact model's world; forget one of "
                    f"{', '.join(fm.trained)}"
                )
        return _people(fm, list(dict.fromkeys(names)))
    if spec.startswith("persons:"):
        count = spec.removeprefix("persons:")
        if not count.isdigit() or not 1 <= int(count) <= len(fm.trained):
            raise GenlabError(
                f"--forget persons:N needs N in 1..{len(fm.trained)} (the trained people), "
                f"got '{count}'"
            )
        drawn = list(fm.trained)
        random.Random(f"genlab/unlearn/{seed}").shuffle(drawn)
        return _people(fm, sorted(drawn[: int(count)]))
    if not spec:
        raise GenlabError("give --forget person:NAME, persons:N or a JSONL file of prompt/answer")
    if not Path(spec).is_file():
        raise GenlabError(
            f"--forget '{spec}' is neither person:NAME, persons:N nor an existing JSONL file"
        )
    return ForgetSet([], [], _read_records(spec))


def _people(fm: FactModel, names: list[str]) -> ForgetSet:
    return ForgetSet(names, [f for n in names for f in person_facts(fm.world, n)], [])


def _read_records(path: str) -> list[tuple[str, str]]:
    records = []
    for n, record in numbered_records(path, "forget"):
        prompt, answer = record.get("prompt"), record.get("answer")
        if not isinstance(prompt, str) or not isinstance(answer, str) or not answer.strip():
            raise GenlabError(f"{path}:{n} needs a string 'prompt' and a non-empty 'answer'")
        records.append((prompt, answer))
    return records


def fact_questions(fm: FactModel, facts: list[Fact]) -> list[tuple[str, str]]:
    """(prompt, answer) of each fact in each phrasing of its question."""
    return [(fact_prompt(fm.world, f, p), fact_target(f)) for f in facts for p in PHRASINGS]


def encode(fm: FactModel, questions: list[tuple[str, str]]) -> list[Pair]:
    """(context ids, answer ids): the prompt after BOS, as the fact model reads it."""
    tok = fm.tokenizer
    return [([tok.bos_id, *tok.encode(q)], tok.encode(a)) for q, a in questions]


def _record_accuracy(fm: FactModel, records: list[tuple[str, str]]) -> float:
    said = answers(fm, [p for p, _ in records])
    hits = [s == a.strip().rstrip(".") for s, (_, a) in zip(said, records, strict=True)]
    return sum(hits) / len(hits)


def fact_scores(fm: FactModel, facts: list[Fact]) -> list[float]:
    """Each fact's share of its question phrasings answered exactly, greedily (one pass over
    all the prompts: scoring several sets at once costs one call)."""
    if not facts:
        raise GenlabError("no facts to score")
    said = answers(fm, [q for q, _ in fact_questions(fm, facts)])
    n = len(PHRASINGS)
    hits = [s == f.object for s, f in zip(said, (f for f in facts for _ in PHRASINGS), strict=True)]
    return [sum(hits[i : i + n]) / n for i in range(0, len(hits), n)]


def _fact_accuracy(fm: FactModel, facts: list[Fact]) -> float:
    scores = fact_scores(fm, facts)
    return sum(scores) / len(scores)


def measure(
    fm: FactModel,
    target: ForgetSet,
    retain: list[Fact],
    held: list[Fact],
    members: list[Pair],
    others: list[Pair],
) -> dict[str, float | None]:
    """Accuracy on the forget set, the retain set, the world's facts and the held-out people's
    (what guessing scores: the floor forgetting aims at), and the membership AUC of the forget
    answers against the held-out people's (a lower loss says member)."""
    forget_nll, other_nll = answer_nll(fm.model, members), answer_nll(fm.model, others)
    return {
        "forget": _fact_accuracy(fm, target.facts)
        if target.facts
        else _record_accuracy(fm, target.records),
        "retain": _fact_accuracy(fm, retain) if retain else None,
        "world": _fact_accuracy(fm, world_facts(fm.world)),
        "holdout": _fact_accuracy(fm, held),
        "membership_auc": auroc((-forget_nll).tolist(), (-other_nll).tolist()),
        "forget_nll": forget_nll.mean().item(),
    }


def run_unlearn(cfg: UnlearnRunConfig) -> dict[str, Any]:
    """Unlearn ``cfg.forget`` from the fact model ``cfg.model`` into ``cfg.out``; the report."""
    out = Path(cfg.out)
    if (out / "config.json").exists():
        raise GenlabError(f"{out} already holds a model; give another --out")
    fm = open_fact_model(cfg.model, device=str(pick_device(cfg.device)))
    target = forget_set(fm, cfg.forget, cfg.unlearn.seed)
    questions = fact_questions(fm, target.facts) + target.records
    asked = {q for q, _ in questions}
    kept = [n for n in fm.trained if n not in target.persons]
    retain_facts = [f for n in kept for f in person_facts(fm.world, n)]
    retain = [qa for qa in fact_questions(fm, retain_facts) if qa[0] not in asked]
    if cfg.unlearn.uses_retain and not retain:
        raise GenlabError(
            f"{cfg.unlearn.method} needs a retain set, but --forget leaves no other trained "
            "person: forget fewer, or use --method ga or --retain-weight 0"
        )
    held = [f for n in fm.holdout for f in person_facts(fm.world, n)]
    members, others = encode(fm, questions), encode(fm, fact_questions(fm, held))

    before = measure(fm, target, retain_facts, held, members, others)
    history = unlearn(fm.model, members, encode(fm, retain), cfg.unlearn)
    after = measure(fm, target, retain_facts, held, members, others)

    save_gpt(out, fm.model, fm.tokenizer)
    copy_facts(Path(cfg.model), out)
    report = {
        "model": cfg.model,
        "forget": cfg.forget,
        "persons": target.persons,
        "method": cfg.unlearn.method,
        "settings": asdict(cfg.unlearn),
        "forget_examples": len(members),
        "retain_examples": len(retain),
        "before": before,
        "after": after,
        "history": history,
    }
    atomic_write_bytes(out / REPORT_FILE, json.dumps(report, indent=2).encode())
    return report
