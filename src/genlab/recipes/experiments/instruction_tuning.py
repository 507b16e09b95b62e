"""Does instruction tuning teach a model to follow instructions it never saw? Zero-shot accuracy
on held-out task families before and after tuning, by model size.

The claim (FLAN, Wei et al., 2022; T0, Sanh et al., 2022): fine-tuning on many tasks phrased as
instructions raises zero-shot accuracy on whole task families left out of the tuning, and the
gain grows with model size (FLAN: below about 8B weights tuning *hurt* unseen tasks). Each rung
of the ladder is fine-tuned (SFT, chat template) on the tuned families' demonstrations; the
held-out families (each with a sibling skill in tuning: yes/no facts, comparing two numbers,
spelling) are asked zero-shot before (the pretrained rung, pretraining's question layout, and
for reference with 3 demonstrations) and after (the tuned rung, the bare instruction as the
user's message). Seen families are scored the same way, for contrast.

    genlab experiment instruction-tuning
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from genlab.align.sft import SFTConfig
from genlab.align.stage import fine_tuning
from genlab.core.sweep import Metrics, Point, point_dir, run_sweep
from genlab.data.record_sources import ConversationData
from genlab.data.tinyworld.families import FAMILIES
from genlab.data.tinyworld.tasks import DEFAULT_HELD_OUT
from genlab.prompting import LocalLM, PromptSettings, answer
from genlab.prompting.tasks import load_tasks
from genlab.recipes.experiments.ladder import LadderConfig, ladder_runs
from genlab.recipes.experiments.prompting_ladder import (
    GROUP,
    cell,
    family_findings,
    gap_finding,
    ladder_table,
    load_note,
    save_rows,
)
from genlab.recipes.experiments.report import DOCS_DIR, load_average, write_page
from genlab.recipes.stages import SFTStage, run_sft

NAME = "instruction_tuning"
TRAIN_POINT = "genlab.recipes.experiments.instruction_tuning:train_point"
ARMS = ("before, zero-shot", "before, 3-shot", "after tuning, zero-shot")


@dataclass
class InstructionTuningConfig:
    """Which families are held out, how each rung is tuned, how many questions."""

    held_out: tuple[str, ...] = DEFAULT_HELD_OUT  # never in the tuning data
    seen: tuple[str, ...] = ("addition", "sentiment", "max_list")  # tuned, scored for contrast
    n_per_family: int = 100  # test questions per family
    sft_steps: int = 400  # each rung's fine-tuning steps (32 conversations each)
    sft_lr: float = 1e-3
    n_train: int = 12000  # tuning demonstrations
    shots: int = 3  # the "before, 3-shot" reference arm
    seed: int = 0  # demonstrations drawn and tuning data shuffled
    device: str = "auto"  # where the models train and answer
    out_dir: str = str(DOCS_DIR)
    ladder: LadderConfig = field(default_factory=LadderConfig)

    def tuned(self) -> tuple[str, ...]:
        return tuple(f for f in FAMILIES if f not in self.held_out)


def train_point(settings: Point, run_dir: Path) -> Metrics:
    """One rung's instruction tuning: SFT on the tuned families' demonstrations."""
    stage = SFTStage(
        SFTConfig(
            base=settings["bases"][settings["rung"]],
            out=str(run_dir / "run"),
            train=replace(
                fine_tuning(settings["sft_steps"], settings["sft_lr"], 20),
                seed=settings["seed"],
                device=settings["device"],
                progress=False,
                tensorboard=False,
            ),
        ),
        ConversationData(
            families=",".join(settings["families"]),
            world_seed=settings["world"],
            n_train=settings["n_train"],
            n_eval=200,
        ),
    )
    metrics = run_sft(stage)
    return {k: v for k, v in metrics.items() if k in ("eval_loss", "step", "time_s")}


def tuned_runs(cfg: InstructionTuningConfig, ladder: dict[str, Path]) -> dict[str, Path]:
    out = Path(cfg.ladder.sweep_dir) / NAME
    budget = {"sft_steps": cfg.sft_steps, "sft_lr": cfg.sft_lr, "n_train": cfg.n_train}
    budget |= {"families": list(cfg.tuned()), "world": cfg.ladder.world, "seed": cfg.seed}
    budget |= {"device": cfg.device, "bases": {r: str(p) for r, p in ladder.items()}}
    points: list[Point] = [{"rung": r} for r in ladder]
    run_sweep(TRAIN_POINT, points, out, budget, cfg.ladder.parallel)
    return {p["rung"]: point_dir(out, TRAIN_POINT, p, budget) / "run" for p in points}


def run_experiment(cfg: InstructionTuningConfig, command: str = "") -> list[dict[str, Any]]:
    """Train (or reuse) the ladder and its tuned copies, ask both, write the page."""
    before, start = load_average(), time.perf_counter()
    ladder = ladder_runs(cfg.ladder)
    tuned = tuned_runs(cfg, ladder)
    rows: list[dict[str, Any]] = []
    for group, families in (("held-out", cfg.held_out), ("seen", cfg.seen)):
        questions, pool = load_tasks(
            ",".join(families), "test", cfg.n_per_family, cfg.ladder.world, cfg.seed
        )
        for rung in ladder:
            base = LocalLM(ladder[rung], device=cfg.device)
            chat = LocalLM(tuned[rung], device=cfg.device, chat=True)
            params = sum(p.numel() for p in base.model.parameters())
            arms = {
                "before, zero-shot": (base, PromptSettings("zero-shot", seed=cfg.seed)),
                "before, 3-shot": (
                    base,
                    PromptSettings("few-shot", shots=cfg.shots, seed=cfg.seed),
                ),
                "after tuning, zero-shot": (chat, PromptSettings("instruction", seed=cfg.seed)),
            }
            for arm, (lm, settings) in arms.items():
                began = time.perf_counter()
                outcomes = answer(lm, questions, pool, settings)
                row = cell(rung, params, arm, outcomes, time.perf_counter() - began)
                rows.append(row | {GROUP: group})
    out = Path(cfg.out_dir)
    held = [r for r in rows if r[GROUP] == "held-out"]
    seen = [r for r in rows if r[GROUP] == "seen"]
    save_rows(out, NAME, rows, ARMS, "Held-out families, before and after tuning", held)
    gap = [(ARMS[2], ARMS[0])]
    tables = [
        f"**held-out families**\n\n{ladder_table(held, ARMS, gap)}",
        f"**seen families**\n\n{ladder_table(seen, ARMS, gap)}",
    ]
    claim = "the claim: positive on held-out families, and growing with size"
    findings = [gap_finding(held, ARMS[2], ARMS[0], claim), *family_findings(rows)]
    write_page(
        out / f"{NAME}.md",
        "Instruction tuning and unseen instructions",
        "Does fine-tuning on instructions raise zero-shot accuracy on task families never tuned "
        "on, and does the gain grow with model size?",
        "\n\n".join(tables),
        f"{NAME}.png",
        [
            f"held out of tuning: {', '.join(cfg.held_out)}; seen (tuned, scored for contrast): "
            f"{', '.join(cfg.seen)}; {cfg.n_per_family} test questions per family",
            f"tuning: SFT of each rung on {cfg.n_train} demonstrations of the "
            f"{len(cfg.tuned())} other families, {cfg.sft_steps} steps of 32, lr {cfg.sft_lr}; "
            f"runs in `{cfg.ladder.sweep_dir}/{NAME}`",
            "before: pretraining's question layout (zero-shot, or 3 train-split "
            "demonstrations); after: the bare question as the user's message, the whole reply "
            "read for its answer",
            "intervals: 95% percentile bootstrap over the questions; gaps paired",
            load_note(before, start),
        ],
        findings,
        command=command,
    )
    return rows
