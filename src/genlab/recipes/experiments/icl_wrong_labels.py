"""Do demonstrations teach the task, or only show it? Gold against random labels, by model size.

The claim (Min et al., 2022, "Rethinking the Role of Demonstrations"): replacing the labels of
in-context demonstrations by random ones barely lowers accuracy (0-5 points on classification);
what the demonstrations carry is the input distribution, the label space and the format. Larger
models lean more on the labels (Wei et al., 2023, "Larger language models do in-context learning
differently": with flipped labels, only large models follow them). Each rung of the ladder
answers the test questions of a few label-like families with no demonstrations, with k gold ones
and with the same k whose labels are drawn at random from the family's label space; the page
reports accuracy with 95% intervals and the paired gold-minus-random gap per size.

    genlab experiment icl-wrong-labels              # CPU ladder (trained once), then minutes
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

NAME = "icl_wrong_labels"
ARMS = ("no demonstrations", "gold labels", "random labels")


@dataclass
class WrongLabelsConfig:
    """The families asked, how many questions, and the demonstrations."""

    families: tuple[str, ...] = ("sentiment", "yes_no_fact", "max_list")
    n_per_family: int = 200  # test questions per family
    shots: int = 4  # demonstrations per prompt (the same ones, gold or random labels)
    seed: int = 0  # demonstrations drawn and answers sampled
    device: str = "auto"  # where the models answer
    out_dir: str = str(DOCS_DIR)
    ladder: LadderConfig = field(default_factory=LadderConfig)


def run_experiment(cfg: WrongLabelsConfig, command: str = "") -> list[dict[str, Any]]:
    """Train (or reuse) the ladder, ask every rung under the three arms, write the page."""
    before, start = load_average(), time.perf_counter()
    runs = ladder_runs(cfg.ladder)
    questions, pool = load_tasks(
        ",".join(cfg.families), "test", cfg.n_per_family, cfg.ladder.world, cfg.seed
    )
    arms = {
        "no demonstrations": PromptSettings("zero-shot", seed=cfg.seed),
        "gold labels": PromptSettings("few-shot", shots=cfg.shots, seed=cfg.seed),
        "random labels": PromptSettings(
            "few-shot", shots=cfg.shots, labels="random", seed=cfg.seed
        ),
    }
    rows = ask_ladder(runs, arms, questions, pool, cfg.device)
    out = Path(cfg.out_dir)
    save_rows(out, NAME, rows, ARMS, "In-context labels: gold vs random")
    claim = "the claim: a few points at most, and more for larger models"
    findings = [gap_finding(rows, "gold labels", "random labels", claim), *family_findings(rows)]
    write_page(
        out / f"{NAME}.md",
        "In-context learning with wrong labels",
        "Do demonstrations teach a model the task, or only show it the format and the label "
        "space? Accuracy with no demonstrations, gold labels and random labels, by size.",
        ladder_table(rows, ARMS, [("gold labels", "random labels")]),
        f"{NAME}.png",
        [
            f"families {', '.join(cfg.families)}: {cfg.n_per_family} test questions each; "
            f"{cfg.shots} demonstrations from the train split, the same ones in both arms, "
            "random labels drawn uniformly from the family's labels (its options, else every "
            "answer in the demonstration pool)",
            "intervals: 95% percentile bootstrap over the questions; the gap is paired "
            "(the same questions and demonstrations)",
            f"ladder: {', '.join(runs)} pretrained alike ({cfg.ladder.steps} steps of "
            f"{cfg.ladder.batch_size} x {cfg.ladder.block_size} tokens), runs in "
            f"`{cfg.ladder.sweep_dir}/ladder`",
            load_note(before, start),
        ],
        findings,
        command=command,
    )
    return rows
