"""``genlab eval``: score a model on tasks with one prompting strategy, per task family.

The model is a run folder (answered here, in batches) or the URL of an OpenAI-compatible server
(``genlab serve`` or any other, through the ``openai`` client); the tasks are TinyWorld families
or a JSONL file (:mod:`genlab.prompting.tasks`). Each family's accuracy comes with a 95%
bootstrap interval over its questions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_json
from genlab.metrics.bootstrap import bootstrap_mean
from genlab.prompting import Outcome, PromptSettings, answer, open_lm
from genlab.prompting.settings import STRATEGY_HELP
from genlab.prompting.tasks import load_tasks


@dataclass
class EvalConfig:
    """What to evaluate, on what, and how it is prompted."""

    model: str = ""  # a run folder, or http://host:port of an OpenAI-compatible server
    tasks: str = "addition,sentiment"  # TinyWorld families (comma-separated) or a FILE.jsonl
    strategy: str = field(default="few-shot", metadata={"help": STRATEGY_HELP})
    chat: bool = False  # the model is chat-tuned: each prompt goes in as the user's message
    shots: int = 3  # demonstrations per prompt
    samples: int = 5  # self-consistency: answers sampled per question
    temperature: float = 0.7  # self-consistency: their temperature (the rest is greedy)
    labels: str = "gold"  # demonstrations' answers: gold | random
    selection: str = "random"  # demonstrations: random | similar
    max_tokens: int = 24  # tokens for an answer
    reasoning_tokens: int = 96  # tokens for a chain of thought or a decomposition
    split: str = "test"  # TinyWorld split asked: validation | test
    n_per_family: int = 50  # TinyWorld questions per family
    world: int = 0  # the TinyWorld seed the model was trained on
    served_model: str = ""  # with a URL: the model name to ask for (default: the first listed)
    device: str = "auto"  # with a run folder: where it runs
    out: str = ""  # also write the results as JSON here
    seed: int = 0  # demonstrations drawn and samples taken

    def settings(self) -> PromptSettings:
        keys = ("strategy", "shots", "labels", "selection", "samples", "temperature")
        keys += ("max_tokens", "reasoning_tokens", "seed")
        return PromptSettings(**{k: getattr(self, k) for k in keys})


def by_family(outcomes: Sequence[Outcome], seed: int = 0) -> dict[str, dict[str, Any]]:
    """``{family: {"accuracy": a, "ci": [lo, hi], "n": n}}``, families in first-seen order; the
    interval is a 95% percentile bootstrap over the family's questions."""
    results = {}
    for family in dict.fromkeys(o.example.family for o in outcomes):
        own = [float(o.correct) for o in outcomes if o.example.family == family]
        interval = bootstrap_mean(own, seed=seed)
        results[family] = {
            "accuracy": interval.mean,
            "ci": [interval.low, interval.high],
            "n": len(own),
        }
    return results


def run_eval(cfg: EvalConfig) -> dict[str, Any]:
    """Answer every question with ``cfg``'s strategy; ``{"results": {FAMILY: {"accuracy", "ci",
    "n"}}, ...}``, also written to ``cfg.out`` when given."""
    if not cfg.model:
        raise GenlabError("give --model: a run folder or http://host:port of a server")
    settings = cfg.settings()
    questions, pool = load_tasks(cfg.tasks, cfg.split, cfg.n_per_family, cfg.world, cfg.seed)
    lm = open_lm(cfg.model, cfg.device, cfg.served_model or None, cfg.chat)
    start = time.perf_counter()
    outcomes = answer(lm, questions, pool, settings)
    seconds = time.perf_counter() - start
    report = {
        "results": by_family(outcomes, cfg.seed),
        "model": cfg.model,
        "config": asdict(cfg),
        "n": len(outcomes),
        "seconds": seconds,
        "examples": [
            {"prompt": o.example.prompt, "answer": o.answer, "correct": o.correct}
            | {"completions": o.completions}
            for o in outcomes[:5]
        ],
    }
    if cfg.out:
        atomic_write_json(cfg.out, report)
    return report
