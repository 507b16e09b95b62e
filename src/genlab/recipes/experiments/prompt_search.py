"""Can a prompt be found automatically? A hand-written instruction against one found by the model
itself (APE) and against a trained soft prompt, on held-out input/output pairs.

The claims: an instruction the model proposes from input/output pairs and that is selected by
its accuracy on held-out pairs matches or beats a human's (APE, Zhou et al., 2023); a soft
prompt trained by gradient descent with the model frozen does better still, the more so the
larger the model (prompt tuning, Lester et al., 2021). For each task (capital letters,
reversing a word, the Rozish cipher) the model answers test inputs under: no instruction; a
hand-written one; the APE instruction (16 proposals from the model, selected on validation
pairs); APE with one round of Monte Carlo search (variations of the best three); and a soft
prompt of 16 vectors trained on the training pairs (the base frozen, the chat-role rows
trainable), the input as the user's message.

    genlab experiment prompt-search
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from genlab.adapt.config import AdapterOptions
from genlab.align.sft import SFTConfig
from genlab.align.stage import fine_tuning
from genlab.core.io import atomic_write_bytes, atomic_write_json
from genlab.core.sweep import Metrics, Point, markdown_table, point_dir, run_sweep
from genlab.data.record_sources import ConversationData
from genlab.data.tinyworld import World, make_examples
from genlab.prompting import LocalLM
from genlab.prompting.instruction_induction import Pair, execution_hits, induce
from genlab.prompting.layout import direct
from genlab.recipes.experiments.ladder import LadderConfig, ladder_runs
from genlab.recipes.experiments.prompting_ladder import interval, interval_text, load_note
from genlab.recipes.experiments.report import (
    DOCS_DIR,
    load_average,
    new_figure,
    save_figure,
    write_page,
)
from genlab.recipes.stages import SFTStage, run_sft

NAME = "prompt_search"
TRAIN_POINT = "genlab.recipes.experiments.prompt_search:train_point"
# task -> (TinyWorld family, the key field holding its input, a hand-written instruction)
TASKS = {
    "capitals": ("uppercase", "text", "Write this in capital letters:"),
    "reverse": ("reverse_word", "word", "Spell this word backwards:"),
    "rozish": ("cipher_to", "text", "Translate into Rozish:"),
}
ARMS = ("no instruction", "hand-written", "APE", "APE + search", "soft prompt")


@dataclass
class PromptSearchConfig:
    """The tasks, the pairs, the search and the soft prompt."""

    tasks: tuple[str, ...] = tuple(TASKS)
    n_train: int = 2000  # training pairs (APE shows 5 at a time; the soft prompt trains on all)
    n_valid: int = 50  # validation pairs: APE's selection
    n_test: int = 100  # test pairs: every arm's score
    candidates: int = 16  # APE proposals
    keep: int = 3  # search: variations of the best this many
    prompt_tokens: int = 16  # soft-prompt length
    soft_steps: int = 300  # soft-prompt training steps (32 pairs each)
    soft_lr: float = 3e-2
    rung: str = ""  # the ladder rung asked (default: the largest)
    seed: int = 0  # pairs, proposals and training
    device: str = "auto"  # where the model answers and the soft prompt trains
    out_dir: str = str(DOCS_DIR)
    ladder: LadderConfig = field(default_factory=LadderConfig)


def pairs(task: str, split: str, n: int, world: int, seed: int) -> list[Pair]:
    """``n`` input/output pairs of ``task`` from one split (inputs quoted, as TinyWorld asks)."""
    family, key_field, _ = TASKS[task]
    found = []
    for e in make_examples(World(world), family, n, split, seed):
        fields = dict(part.split("=", 1) for part in e.meta["key"].split("|")[2:])
        found.append(Pair(f"'{fields[key_field]}'", e.answer))
    return found


def train_point(settings: Point, run_dir: Path) -> Metrics:
    """One soft prompt: prompt tuning of the frozen rung on one task's training pairs."""
    data = run_dir / "pairs.jsonl"
    records = [
        {
            "messages": [
                {"role": "user", "content": p.input},
                {"role": "assistant", "content": direct(p.output)},
            ]
        }
        for p in pairs(
            settings["task"], "train", settings["n_train"], settings["world"], settings["seed"]
        )
    ]
    atomic_write_bytes(data, "\n".join(json.dumps(r) for r in records).encode())
    stage = SFTStage(
        SFTConfig(
            base=settings["base"],
            out=str(run_dir / "run"),
            train=replace(
                fine_tuning(settings["soft_steps"], settings["soft_lr"], 20),
                seed=settings["seed"],
                device=settings["device"],
                progress=False,
                tensorboard=False,
            ),
        ),
        ConversationData(data=str(data), val_fraction=0.05),
        AdapterOptions(adapter="prompt", prompt_tokens=settings["prompt_tokens"]),
    )
    metrics = run_sft(stage)
    return {k: v for k, v in metrics.items() if k in ("eval_loss", "step", "time_s")}


def run_experiment(cfg: PromptSearchConfig, command: str = "") -> list[dict[str, Any]]:
    """Score every arm on every task's test pairs; the page compares them."""
    before, start = load_average(), time.perf_counter()
    runs = ladder_runs(cfg.ladder)
    rung = cfg.rung or list(runs)[-1]
    base = runs[rung]
    out_runs = Path(cfg.ladder.sweep_dir) / NAME
    budget = {"base": str(base), "n_train": cfg.n_train, "prompt_tokens": cfg.prompt_tokens}
    budget |= {"soft_steps": cfg.soft_steps, "soft_lr": cfg.soft_lr, "world": cfg.ladder.world}
    budget |= {"seed": cfg.seed, "device": cfg.device}
    points: list[Point] = [{"task": t} for t in cfg.tasks]
    run_sweep(TRAIN_POINT, points, out_runs, budget, cfg.ladder.parallel)
    lm = LocalLM(base, device=cfg.device)
    rows: list[dict[str, Any]] = []
    for task in cfg.tasks:
        world, seed = cfg.ladder.world, cfg.seed
        train = pairs(task, "train", cfg.n_train, world, seed)
        valid = pairs(task, "validation", cfg.n_valid, world, seed)
        test = pairs(task, "test", cfg.n_test, world, seed)
        hand = TASKS[task][2]
        # one search: its proposals alone are APE, its final ranking APE with search
        searched = induce(lm, train, valid, cfg.candidates, rounds=1, keep=cfg.keep, seed=seed)
        chosen = {"no instruction": "", "hand-written": hand, "APE": searched.proposed[0][0]}
        chosen["APE + search"] = searched.best
        row: dict[str, Any] = {"task": task, "rung": rung, "instructions": chosen}
        for arm, instruction in chosen.items():
            row[arm] = interval(execution_hits(lm, [instruction], test, seed=seed)[0])
        soft = point_dir(out_runs, TRAIN_POINT, {"task": task}, budget) / "run"
        tuned = LocalLM(soft, device=cfg.device, chat=True)
        row["soft prompt"] = interval(execution_hits(tuned, [""], test, seed=seed, bare=True)[0])
        row["ape_candidates"] = searched.proposed[:5]
        row["search_candidates"] = searched.scores[:5]
        rows.append(row)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / f"{NAME}.json", rows)

    fig = new_figure(7.0, 4.0)
    ax = fig.subplots()
    width = 0.8 / len(ARMS)
    for i, arm in enumerate(ARMS):
        xs = [t + (i - len(ARMS) / 2 + 0.5) * width for t in range(len(rows))]
        ys = [100 * r[arm][0] for r in rows]
        err = [
            [100 * (r[arm][0] - r[arm][1]) for r in rows],
            [100 * (r[arm][2] - r[arm][0]) for r in rows],
        ]
        ax.bar(xs, ys, width, yerr=err, capsize=2, label=arm, color=f"C{i}")
    ax.set_xticks(range(len(rows)), [r["task"] for r in rows])
    ax.set(ylabel="test accuracy % (95% interval)", title=f"Prompt search on the {rung} rung")
    ax.legend(fontsize=7)
    save_figure(fig, out / f"{NAME}.png")

    body = [[r["task"], *(interval_text(r[a]) for a in ARMS)] for r in rows]
    findings = [
        f"{r['task']}: hand-written {r['instructions']['hand-written']!r}; APE chose "
        f"{r['instructions']['APE']!r} (validation {100 * r['ape_candidates'][0][1]:.0f}%), "
        f"search chose {r['instructions']['APE + search']!r}"
        for r in rows
    ]
    write_page(
        out / f"{NAME}.md",
        "Prompt search: hand-written, APE and soft prompts",
        "Does an instruction the model finds itself, or a trained soft prompt, beat a "
        "hand-written instruction on held-out pairs?",
        markdown_table(["task", *(f"{a} %" for a in ARMS)], body),
        f"{NAME}.png",
        [
            f"model: the {rung} rung of the ladder (`{cfg.ladder.sweep_dir}/ladder`); every arm "
            f"scored on the same {cfg.n_test} test pairs per task, exact match (case aside)",
            f"APE: {cfg.candidates} proposals sampled at temperature 1 from prompts of 5 training "
            f"pairs, the best on {cfg.n_valid} validation pairs kept; search: one round of "
            f"variations of the best {cfg.keep}",
            f"soft prompt: {cfg.prompt_tokens} vectors (and the chat-role rows) trained on "
            f"{cfg.n_train} pairs, {cfg.soft_steps} steps of 32, lr {cfg.soft_lr}, the rung "
            f"frozen; runs in `{out_runs}`",
            "intervals: 95% percentile bootstrap over the test pairs",
            load_note(before, start),
        ],
        findings,
        command=command,
    )
    return rows
