"""Can a model solve problems longer than its demonstrations? Chain of thought against
least-to-most prompting, with short demonstrations and long test questions.

The claim (Zhou et al., 2023, "Least-to-Most Prompting Enables Complex Reasoning in Large
Language Models"): with demonstrations of short problems, chain-of-thought accuracy falls as the
test problems grow longer, while least-to-most prompting (decompose into subquestions, then solve
them in order, each answer fed forward) keeps most of it (last-letter concatenation, SCAN).
Here the demonstrations of each family are its shortest train-split items (fewest numbers,
words or hops) and the test questions its longest; each rung answers directly, with few-shot
CoT and with least-to-most, all from the same short demonstrations.

    genlab experiment least-to-most
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genlab.core.errors import GenlabError
from genlab.data.tinyworld import World, make_examples
from genlab.data.tinyworld.families.base import Example
from genlab.prompting import PromptSettings
from genlab.recipes.experiments.ladder import LadderConfig, ladder_runs
from genlab.recipes.experiments.prompting_ladder import (
    ask_ladder,
    family_findings,
    gap_finding,
    ladder_table,
    load_note,
    save_rows,
)
from genlab.recipes.experiments.report import DOCS_DIR, load_average, write_page

NAME = "least_to_most"
ARMS = ("direct", "few-shot CoT", "least-to-most")
# family -> the meta field that measures a question's length
LENGTH = {"sort_list": "length", "uppercase": "words", "multi_hop": "hops", "cipher_to": "words"}


@dataclass
class LeastToMostConfig:
    """The families, how short the demonstrations and how long the test questions are."""

    families: tuple[str, ...] = ("sort_list", "uppercase", "multi_hop", "cipher_to")
    n_per_family: int = 50  # long test questions per family
    shots: int = 3  # short demonstrations
    draw: int = 3000  # questions drawn per split before keeping the shortest / longest
    reasoning_tokens: int = 128
    seed: int = 0  # demonstrations drawn and answers sampled
    device: str = "auto"  # where the models answer
    out_dir: str = str(DOCS_DIR)
    ladder: LadderConfig = field(default_factory=LadderConfig)


def length_of(example: Example) -> int:
    return int(example.meta[LENGTH[example.family]])


def short_and_long(
    cfg: LeastToMostConfig,
) -> tuple[list[Example], list[Example], dict[str, tuple[int, int]]]:
    """Per family: demonstrations of the shortest train length, test questions of the longest
    lengths (the top ones until ``n_per_family``), and the two lengths for the page."""
    world = World(cfg.ladder.world)
    pool, questions, spans = [], [], {}
    for family in cfg.families:
        if family not in LENGTH:
            raise GenlabError(f"least-to-most needs a family with a length: {', '.join(LENGTH)}")
        train = make_examples(world, family, cfg.draw, "train", cfg.seed + 1)
        shortest = min(map(length_of, train))
        pool += [e for e in train if length_of(e) == shortest]
        test = sorted(
            make_examples(world, family, cfg.draw, "test", cfg.seed), key=length_of, reverse=True
        )
        chosen = test[: cfg.n_per_family]
        if length_of(chosen[-1]) <= shortest:
            raise GenlabError(f"{family}: too few long test questions; ask for fewer")
        questions += chosen
        spans[family] = (shortest, length_of(chosen[-1]))
    return questions, pool, spans


def run_experiment(cfg: LeastToMostConfig, command: str = "") -> list[dict[str, Any]]:
    """Train (or reuse) the ladder, ask every rung under the three arms, write the page."""
    before, start = load_average(), time.perf_counter()
    runs = ladder_runs(cfg.ladder)
    questions, pool, spans = short_and_long(cfg)
    common = {"shots": cfg.shots, "reasoning_tokens": cfg.reasoning_tokens, "seed": cfg.seed}
    arms = {
        "direct": PromptSettings("few-shot", **common),
        "few-shot CoT": PromptSettings("cot", **common),
        "least-to-most": PromptSettings("least-to-most", **common),
    }
    rows = ask_ladder(runs, arms, questions, pool, cfg.device)
    out = Path(cfg.out_dir)
    save_rows(out, NAME, rows, ARMS, "Long questions, short demonstrations")
    claim = "the claim: clearly positive on questions longer than the demonstrations"
    findings = [gap_finding(rows, "least-to-most", "few-shot CoT", claim), *family_findings(rows)]
    lengths = "; ".join(
        f"{f} ({LENGTH[f]}): demonstrations {a}, test at least {b}" for f, (a, b) in spans.items()
    )
    write_page(
        out / f"{NAME}.md",
        "Least-to-most prompting on questions longer than the demonstrations",
        "With demonstrations of the shortest questions only, does decomposing a long question "
        "into subquestions and solving them in order beat a chain of thought?",
        ladder_table(rows, ARMS, [("least-to-most", "few-shot CoT")]),
        f"{NAME}.png",
        [
            f"{cfg.n_per_family} long test questions per family, {cfg.shots} short train-split "
            f"demonstrations (the same pool for every arm); lengths: {lengths}",
            "least-to-most: one call writes the subquestions (demonstrations of decompositions), "
            "then one call per subquestion with the answers so far (demonstrations of solved "
            "chains); the last answer is the answer",
            "intervals: 95% percentile bootstrap over the questions; gaps paired",
            f"ladder: {', '.join(runs)} in `{cfg.ladder.sweep_dir}/ladder`",
            load_note(before, start),
        ],
        findings,
        command=command,
    )
    return rows
