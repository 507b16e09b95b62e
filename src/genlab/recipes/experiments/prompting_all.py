"""The whole prompting suite (issue 14) in one command: the ladder trained once, then every
prompting experiment's page, each with its defaults and this command's ladder, seed and device.

    genlab experiment prompting-all                 # the CPU ladder, then every page
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from genlab.recipes.experiments import (
    chain_of_thought,
    icl_wrong_labels,
    instruction_tuning,
    least_to_most,
    prompt_search,
    self_consistency,
)
from genlab.recipes.experiments.ladder import LadderConfig, ladder_runs
from genlab.recipes.experiments.report import DOCS_DIR

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
    """Each experiment in turn; returns its rows and minutes by name."""
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
    return done
