"""A ladder of GPT sizes pretrained on one TinyWorld corpus: the models the prompting experiments
(issue 14) compare.

Prompting claims are about what a pretrained model does with a prompt, and most of them are
claims about scale (wrong labels hurt large models more, chain of thought helps only large
ones). So each experiment asks the same questions of several sizes trained alike: the rungs
share the corpus, the tokenizer (trained from the same text), the steps and the batch, and
differ only in depth and width. A rung is a point of the sweep runner: trained once, reused by
every experiment and rerun.

The corpus is TinyWorld's encyclopedia and stories, plus solved train-split questions of every
task family in pretraining's question layout, answered bare (``The answer is X.``), with the
worked steps, or with the steps after "Let's think step by step." (web text is where large
models learn what that trigger means; here the corpus says it), and questions decomposed into
subquestions and solved one subquestion at a time (the two layouts of least-to-most prompting).
No validation or test question is in it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes
from genlab.core.sweep import Metrics, Point, point_dir, run_sweep
from genlab.core.train_config import TrainConfig
from genlab.data.tinyworld import World, make_examples
from genlab.data.tinyworld.families import FAMILIES
from genlab.data.tinyworld.families.base import Example
from genlab.prompting.cot import TRIGGER
from genlab.prompting.layout import SEPARATOR, direct, qa_text
from genlab.prompting.least_to_most import decomposition_text, solution_text
from genlab.recipes.experiments.report import SWEEPS_DIR
from genlab.recipes.pretrain import PretrainConfig, pretrain

NAME = "ladder"
TRAIN_POINT = "genlab.recipes.experiments.ladder:train_point"
RUN = "run"
CORPUS = "corpus.jsonl"

# rung name -> (layers, heads, width); the CPU rungs train in minutes, the GPU ones need one
RUNGS = {
    "xs": (2, 2, 32),
    "s": (2, 4, 64),
    "m": (4, 4, 96),
    "l": (4, 4, 128),
    "xl": (6, 6, 192),
    "xxl": (8, 8, 256),
    "xxxl": (12, 12, 384),
}
PRESETS = {
    "toy": ("xs", "s"),  # for tests and smoke runs
    "cpu": ("xs", "s", "m", "l"),
    "gpu": ("m", "l", "xl", "xxl", "xxxl"),
}


@dataclass
class LadderConfig:
    """Which rungs, and the corpus and training budget every rung shares."""

    preset: str = "cpu"  # cpu: four sizes that train on a laptop; gpu: five, up to 21M; toy: two
    corpus_chars: int = 600_000  # TinyWorld encyclopedia and story text
    task_examples: int = 1500  # solved train-split questions per task family
    steps: int = 1000  # optimizer steps per rung
    batch_size: int = 16
    block_size: int = 256  # room for a few-shot prompt with worked solutions
    lr: float = 2e-3
    vocab_size: int = 1024
    world: int = 0  # the TinyWorld every rung learns (the experiments ask about it)
    seed: int = 0  # the corpus drawn and the weights initialised
    device: str = "auto"  # where the rungs train
    sweep_dir: str = str(SWEEPS_DIR)
    parallel: int = 2  # rungs trained at once

    def rungs(self) -> tuple[str, ...]:
        if self.preset not in PRESETS:
            raise GenlabError(
                f"unknown ladder preset {self.preset!r}; choose from: {', '.join(PRESETS)}"
            )
        return PRESETS[self.preset]

    def budget(self) -> Point:
        keys = ("corpus_chars", "task_examples", "steps", "batch_size", "block_size", "lr")
        return {k: getattr(self, k) for k in (*keys, "vocab_size", "world", "seed", "device")}


def solved_text(example: Example, style: str) -> str:
    """One solved question in one of the corpus's answer styles."""
    if style == "direct" or not example.steps:
        return qa_text(example.prompt, direct(example.answer))
    if style == "cot":
        return qa_text(example.prompt, example.worked_solution)
    return qa_text(example.prompt, f"{TRIGGER} {example.worked_solution}")


def ladder_documents(budget: Point) -> list[str]:
    """The corpus every rung pretrains on (see the module docstring); shuffled, deterministic."""
    world = World(budget["world"])
    seed = budget["seed"]
    docs = list(world.corpus(n_chars=budget["corpus_chars"], seed=seed))
    rng = random.Random(f"genlab/ladder/{seed}")
    for family in FAMILIES:
        solved = make_examples(world, family, budget["task_examples"], "train", seed + 7)
        i = 0
        while i < len(solved):
            k = rng.randint(3, 6)
            group = solved[i : i + k]
            layout = rng.choices(
                ("direct", "cot", "trigger", "decompose", "subsolve"), (4, 3, 1, 1, 1)
            )[0]
            if layout == "decompose" and group[0].subquestions:
                texts = [
                    decomposition_text(e.prompt, [q for q, _ in e.subquestions]) for e in group
                ]
            elif layout == "subsolve" and group[0].subquestions:
                texts = [solution_text(e.prompt, e.subquestions) for e in group]
            else:
                texts = [
                    solved_text(e, layout if layout in ("direct", "cot") else "trigger")
                    for e in group
                ]
            docs.append(SEPARATOR.join(texts))
            i += k
    rng.shuffle(docs)
    return docs


def corpus_file(out: Path, budget: Point) -> Path:
    """The corpus as JSONL in the sweep folder, written once per budget (the rungs share it)."""
    path = point_dir(out, TRAIN_POINT, {"part": "corpus"}, budget) / CORPUS
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = "\n".join(json.dumps({"text": d}) for d in ladder_documents(budget))
        atomic_write_bytes(path, (lines + "\n").encode())
    return path


def train_point(settings: Point, run_dir: Path) -> Metrics:
    """One rung: pretrain its shape on the shared corpus (written beside the rungs' folders)."""
    n_layer, n_head, n_embd = RUNGS[settings["rung"]]
    budget = {k: settings[k] for k in LadderConfig().budget()}
    cfg = PretrainConfig(
        out=str(run_dir / RUN),
        data=str(corpus_file(run_dir.parent, budget)),
        preset="mini",
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        block_size=settings["block_size"],
        vocab_size=settings["vocab_size"],
        pos="rope",
        train=TrainConfig(
            max_steps=settings["steps"],
            batch_size=settings["batch_size"],
            lr=settings["lr"],
            warmup_steps=min(100, settings["steps"] // 10),
            eval_every=max(settings["steps"] // 5, 1),
            checkpoint_every=max(settings["steps"] // 2, 1),
            weight_decay=0.1,
            seed=settings["seed"],
            device=settings["device"],
            progress=False,
            tensorboard=False,
        ),
    )
    metrics = pretrain(cfg)
    return {k: metrics[k] for k in ("eval_loss", "params", "step", "time_s") if k in metrics}


def ladder_runs(cfg: LadderConfig, rungs: Sequence[str] | None = None) -> dict[str, Path]:
    """Each rung's run folder (of ``rungs``, default the preset's), trained unless the sweep has
    it already: an experiment that needs one size trains only that one."""
    out, budget = Path(cfg.sweep_dir) / NAME, cfg.budget()
    unknown = [r for r in rungs or () if r not in RUNGS]
    if unknown:
        raise GenlabError(f"unknown ladder rung {unknown[0]!r}; choose from: {', '.join(RUNGS)}")
    corpus_file(out, budget)  # once, before the rungs' processes start
    points: list[Point] = [{"rung": r} for r in (cfg.rungs() if rungs is None else rungs)]
    run_sweep(TRAIN_POINT, points, out, budget, cfg.parallel)
    return {p["rung"]: point_dir(out, TRAIN_POINT, p, budget) / RUN for p in points}
