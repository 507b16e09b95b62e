"""The whole demo: every stage, then every model on the same held-out prompts, then the report."""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from genlab.align.ppo_monitor import GUARD_FILE
from genlab.align.reward import load_reward_model
from genlab.core.device import pick_device
from genlab.core.io import atomic_write_bytes, atomic_write_json
from genlab.data.records import write_jsonl
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.recipes.chatgpt.evaluate import (
    StageAnswers,
    answer_all,
    answer_best_of_n,
    heldout_examples,
    pair_outcomes,
    summarize,
    transcript,
)
from genlab.recipes.chatgpt.overoptimisation import describe_stop
from genlab.recipes.chatgpt.pipeline import run_stages, say, stage_configs
from genlab.recipes.chatgpt.presets import ChatGPTConfig
from genlab.recipes.chatgpt.report import (
    check_goals,
    goal_figures,
    goals_met,
    machine,
    plot_report,
    render_report,
)

# evaluated, in the table's order; each but best_of_n is the stage folder of that name
EVALUATED_MODELS = ("pretrained", "sft", "ppo", "dpo", "best_of_n")
FOLDERS = {"pretrained": "pretrain", "sft": "sft", "ppo": "ppo", "dpo": "dpo"}


@dataclass
class Evaluation:
    """Every model's summary and per-item outcomes, the reward model's per-pair outcomes, a
    transcript of a few prompts and every answer as records."""

    models: dict[str, dict[str, Any]]
    outcomes: dict[str, Any]  # {"models": {name: {key: items}}, "reward_pairs": items}
    shown: list[dict[str, Any]]
    records: list[dict[str, Any]]


def heldout_pairs(cfg: ChatGPTConfig) -> list[dict[str, Any]]:
    """The reward stage's held-out comparisons of the evaluated split, as ``run_reward`` loads
    them (held-out pairs do not depend on the training count, so none are drawn)."""
    stage = stage_configs(cfg)["reward"]
    data = replace(stage.data, n_pairs=0)
    _, validation, test, _ = data.load(stage.reward.base, stage.reward.train.seed)
    return test if cfg.eval.split == "test" else validation


def evaluate_stages(cfg: ChatGPTConfig) -> Evaluation:
    """Answers of every model to the held-out prompts of ``cfg.eval.split``, scored, and the
    reward model's view of the held-out comparisons."""
    root = Path(cfg.out)
    device = pick_device("auto")
    settings = cfg.eval
    examples = heldout_examples(
        cfg.seed, cfg.families, settings.n_per_family, settings.seed, settings.split
    )
    reward_model = load_reward_model(root / "reward", device)
    reference, tokenizer = load_gpt(root / "sft", device)
    answers: dict[str, StageAnswers] = {}
    for name in EVALUATED_MODELS:
        if name == "best_of_n":
            answers[name] = answer_best_of_n(reference, tokenizer, examples, settings, reward_model)
            continue
        model, _ = load_gpt(root / FOLDERS[name], device)
        answers[name] = answer_all(
            model,
            tokenizer,
            examples,
            settings,
            few_shot_world=cfg.seed if name == "pretrained" else None,
            reference=None if name == "sft" else reference,
            reward_model=reward_model,
        )
    models, outcomes = {}, {}
    for name, a in answers.items():
        models[name], outcomes[name] = summarize(
            examples, a, None if name == "sft" else answers["sft"]
        )
    models["sft"]["kl_to_sft"] = 0.0  # the reference itself
    records = [
        {
            "family": e.family,
            "prompt": e.prompt,
            "reference": e.answer,
            **{
                name: {"greedy": a.greedy[i], "sampled": a.sampled[i]}
                for name, a in answers.items()
            },
        }
        for i, e in enumerate(examples)
    ]
    return Evaluation(
        models=models,
        outcomes={
            "models": outcomes,
            "reward_pairs": pair_outcomes(reward_model, heldout_pairs(cfg)),
        },
        shown=transcript(examples, answers, 2 * len(cfg.families)),
        records=records,
    )


def demo_command(cfg: ChatGPTConfig) -> str:
    """The ``genlab demo`` command line that runs ``cfg`` alone."""
    split = "" if cfg.eval.split == "test" else f" --eval-split {cfg.eval.split}"
    return f"genlab demo --out {cfg.out} --preset {cfg.preset} --seed {cfg.seed}{split}"


def run_chatgpt(cfg: ChatGPTConfig, resume: bool = False, command: str = "") -> dict[str, Any]:
    """Run every stage, evaluate, and write ``report.json``, ``report.md``, ``answers.jsonl``
    and the plots into ``cfg.out``; return the report."""
    root = Path(cfg.out)
    root.mkdir(parents=True, exist_ok=True)
    start_machine = machine()
    tic = time.perf_counter()
    stages = run_stages(cfg, resume=resume)
    say(f"evaluating every model on held-out prompts ({cfg.eval.split} split)")
    eval_tic = time.perf_counter()
    ev = evaluate_stages(cfg)
    eval_seconds = time.perf_counter() - eval_tic
    write_jsonl(root / "answers.jsonl", ev.records)
    plots = plot_report(root, ev.models, cfg.families)
    figures = goal_figures([ev.outcomes])
    goals = check_goals(figures)
    report = {
        "command": command or demo_command(cfg),
        "preset": cfg.preset,
        "seed": cfg.seed,
        "families": list(cfg.families),
        "machine_start": start_machine,
        "machine": machine(),
        "total_seconds": sum(s["seconds"] for s in stages.values()) + eval_seconds,
        "wall_seconds": time.perf_counter() - tic,
        "stages": stages,
        "evaluation": {
            "split": cfg.eval.split,
            "seconds": eval_seconds,
            "prompts": len(ev.records),
            "settings": asdict(cfg.eval),
            "models": ev.models,
            "outcomes": ev.outcomes,  # per item, for bootstrap intervals (genlab.metrics)
        },
        "figures": {key: interval.to_dict() for key, interval in figures.items()},
        "goals": goals,
        "goals_met": goals_met(goals),
        "transcript": ev.shown,
        "plots": plots,
        "ppo_stop": describe_stop(root / "ppo") if (root / "ppo" / GUARD_FILE).is_file() else None,
        "chat_commands": [
            f"genlab chat {root / 'ppo'}",
            f"genlab chat {root / 'dpo'}",
            f"genlab chat {root / 'sft'} --message {shlex.quote(ev.shown[0]['prompt'])}",
        ],
        "config": json.loads(json.dumps(asdict(cfg), default=str)),
    }
    atomic_write_json(root / "report.json", report)
    atomic_write_bytes(root / "report.md", render_report(report).encode())
    return report
