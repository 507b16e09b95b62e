"""The whole prompting suite (issue 14) in one command: the ladder trained once, then every
prompting experiment's page, each with its defaults and this command's ladder, seed and device.

    genlab experiment prompting-all                 # the CPU ladder, then every page
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from genlab.core.sweep import collect, markdown_table
from genlab.recipes.experiments import (
    chain_of_thought,
    icl_wrong_labels,
    instruction_tuning,
    least_to_most,
    prompt_search,
    self_consistency,
)
from genlab.recipes.experiments.ladder import NAME as NAME_LADDER
from genlab.recipes.experiments.ladder import LadderConfig, ladder_runs
from genlab.recipes.experiments.report import DOCS_DIR, load_average, write_page

NAME = "prompting_all"
SUITE = {
    icl_wrong_labels: icl_wrong_labels.WrongLabelsConfig,
    instruction_tuning: instruction_tuning.InstructionTuningConfig,
    chain_of_thought: chain_of_thought.ChainOfThoughtConfig,
    self_consistency: self_consistency.SelfConsistencyConfig,
    least_to_most: least_to_most.LeastToMostConfig,
    prompt_search: prompt_search.PromptSearchConfig,
}


@dataclass
class PromptingAllConfig:
    """What every experiment of the suite shares."""

    seed: int = 0  # demonstrations drawn and answers sampled
    device: str = "auto"  # where the models answer
    out_dir: str = str(DOCS_DIR)
    ladder: LadderConfig = field(default_factory=LadderConfig)


def run_experiment(cfg: PromptingAllConfig, command: str = "") -> dict[str, Any]:
    """Each experiment in turn, then a page of the parts and their minutes; returns each
    part's rows and minutes by name."""
    start = time.perf_counter()
    ladder_runs(cfg.ladder)
    done: dict[str, Any] = {"ladder_minutes": (time.perf_counter() - start) / 60}
    for module, config in SUITE.items():
        sub = replace(config(), seed=cfg.seed, device=cfg.device, out_dir=cfg.out_dir)
        sub.ladder = cfg.ladder
        began = time.perf_counter()
        rows = module.run_experiment(sub, f"{command}  # the {module.NAME} part of the suite")
        done[module.NAME] = {"rows": rows, "minutes": (time.perf_counter() - began) / 60}
    done["minutes"] = (time.perf_counter() - start) / 60
    write_summary(cfg, done, command)
    return done


def write_summary(cfg: PromptingAllConfig, done: dict[str, Any], command: str) -> None:
    """The suite's page: each part, its minutes and its page; the ladder's own training time
    (from its sweep's records) whether it trained now or was reused."""
    rungs = collect(Path(cfg.ladder.sweep_dir) / NAME_LADDER)
    trained = sum(r.get("time_s", 0.0) for r in rungs) / 60
    body = [["ladder (training, or reuse)", f"{done['ladder_minutes']:.1f}", "-"]]
    body += [
        [
            module.NAME.replace("_", "-"),
            f"{done[module.NAME]['minutes']:.1f}",
            f"[{module.NAME}]({module.NAME}.md)",
        ]
        for module in SUITE
    ]
    body.append(["the suite, this call", f"{done['minutes']:.1f}", "-"])
    write_page(
        Path(cfg.out_dir) / f"{NAME}.md",
        "The prompting suite",
        "Every prompting claim of issue 14, asked of one ladder of model sizes, and what the "
        "suite costs (budget: 90 minutes on a 2-core CPU, the ladder's training included).",
        markdown_table(["part", "minutes", "page"], body),
        None,
        [
            f"ladder: rungs {', '.join(cfg.ladder.rungs())}, {cfg.ladder.steps} steps each, "
            f"{cfg.ladder.parallel} at a time; their training took {trained:.1f} minutes of "
            "process time in all (from the sweep's records, whether trained in this call or "
            "reused)",
            f"machine load (1/5/15-minute averages) after: {load_average()}",
        ],
        command=command,
    )
