"""Does writing the steps first help, and from what size? Direct answers against few-shot and
zero-shot chain of thought on multi-step questions, by model size.

The claims: few-shot chain-of-thought prompting (Wei et al., 2022) raises accuracy on multi-step
problems, but only for large models (an emergent ability: small ones write fluent, wrong steps
and do worse than answering directly); "Let's think step by step." does much of the same with no
demonstrations (Kojima et al., 2022). Each rung answers the test questions of multi-step
families directly (k demonstrations with bare answers), with few-shot CoT (the same number of
demonstrations with worked solutions) and with zero-shot CoT (the trigger, then "Therefore, the
answer is"). The page reports accuracy with 95% intervals and the paired CoT-minus-direct gap
per size.

    genlab experiment chain-of-thought
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genlab.prompting import PromptSettings
from genlab.prompting.tasks import load_tasks
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

NAME = "chain_of_thought"
ARMS = ("direct", "few-shot CoT", "zero-shot CoT")
MULTI_STEP = ("addition", "subtraction", "multiplication", "word_problem", "multi_hop", "max_list")


@dataclass
class ChainOfThoughtConfig:
    """The multi-step families asked, how many questions, and the demonstrations."""

    families: tuple[str, ...] = MULTI_STEP
    n_per_family: int = 50  # test questions per family
    shots: int = 3  # demonstrations (bare answers or worked solutions)
    reasoning_tokens: int = 96  # room for a chain of thought
    seed: int = 0  # demonstrations drawn and answers sampled
    device: str = "auto"  # where the models answer
    out_dir: str = str(DOCS_DIR)
    ladder: LadderConfig = field(default_factory=LadderConfig)


def run_experiment(cfg: ChainOfThoughtConfig, command: str = "") -> list[dict[str, Any]]:
    """Train (or reuse) the ladder, ask every rung under the three arms, write the page."""
    before, start = load_average(), time.perf_counter()
    runs = ladder_runs(cfg.ladder)
    questions, pool = load_tasks(
        ",".join(cfg.families), "test", cfg.n_per_family, cfg.ladder.world, cfg.seed
    )
    common = {"shots": cfg.shots, "reasoning_tokens": cfg.reasoning_tokens, "seed": cfg.seed}
    arms = {
        "direct": PromptSettings("few-shot", **common),
        "few-shot CoT": PromptSettings("cot", **common),
        "zero-shot CoT": PromptSettings("zs-cot", **common),
    }
    rows = ask_ladder(runs, arms, questions, pool, cfg.device)
    out = Path(cfg.out_dir)
    save_rows(out, NAME, rows, ARMS, "Chain of thought by model size")
    claim = "the claim: negative or nil for small models, positive for large ones"
    findings = [
        gap_finding(rows, "few-shot CoT", "direct", claim),
        gap_finding(rows, "zero-shot CoT", "direct", claim),
        *family_findings(rows),
    ]
    write_page(
        out / f"{NAME}.md",
        "Chain of thought by model size",
        "Does writing the steps before the answer help on multi-step questions, and from which "
        "size? Direct answers, few-shot CoT and zero-shot CoT on the same questions.",
        ladder_table(rows, ARMS, [("few-shot CoT", "direct"), ("zero-shot CoT", "direct")]),
        f"{NAME}.png",
        [
            f"families {', '.join(cfg.families)}: {cfg.n_per_family} test questions each; "
            f"{cfg.shots} train-split demonstrations, the same ones for direct and few-shot CoT "
            f"(bare answers or worked solutions); greedy, {cfg.reasoning_tokens} tokens of "
            "reasoning at most",
            'zero-shot CoT: the question, then "Let\'s think step by step.", then the reasoning '
            'and "Therefore, the answer is" (two calls, Kojima et al.)',
            "intervals: 95% percentile bootstrap over the questions; gaps paired",
            f"ladder: {', '.join(runs)} pretrained alike ({cfg.ladder.steps} steps), runs in "
            f"`{cfg.ladder.sweep_dir}/ladder`",
            load_note(before, start),
        ],
        findings,
        command=command,
    )
    return rows
