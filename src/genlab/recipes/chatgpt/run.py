"""The whole demo: every stage, then every model on the same held-out prompts, then the report."""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from genlab.align.reward import load_reward_model
from genlab.core.device import pick_device
from genlab.core.io import atomic_write_bytes, atomic_write_json
from genlab.data.records import write_jsonl
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.recipes.chatgpt.evaluate import (
    StageAnswers,
    answer_all,
    heldout_examples,
    summarize,
    transcript,
)
from genlab.recipes.chatgpt.pipeline import run_stages, say
from genlab.recipes.chatgpt.presets import ChatGPTConfig
from genlab.recipes.chatgpt.report import check_goals, machine, plot_report, render_report

EVALUATED_MODELS = ("pretrained", "sft", "ppo", "dpo")  # evaluated, in the table's order


def evaluate_stages(cfg: ChatGPTConfig) -> tuple[dict[str, Any], list[dict], list[dict]]:
    """Answers of the four models to the held-out prompts, scored; returns (summary by model,
    a transcript of a few prompts, every answer as records)."""
    root = Path(cfg.out)
    device = pick_device("auto")
    settings = cfg.eval
    examples = heldout_examples(cfg.seed, cfg.families, settings.n_per_family, settings.seed)
    reward_model = load_reward_model(root / "reward", device)
    reference, tokenizer = load_gpt(root / "sft", device)
    answers: dict[str, StageAnswers] = {}
    folders = {"pretrained": "pretrain", "sft": "sft", "ppo": "ppo", "dpo": "dpo"}
    for name in EVALUATED_MODELS:
        model, _ = load_gpt(root / folders[name], device)
        answers[name] = answer_all(
            model,
            tokenizer,
            examples,
            settings,
            few_shot_world=cfg.seed if name == "pretrained" else None,
            reference=reference,
            reward_model=reward_model,
        )
    summary = {
        name: summarize(examples, a, None if name == "sft" else answers["sft"])
        for name, a in answers.items()
    }
    summary["sft"]["kl_to_sft"] = 0.0
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
    return summary, transcript(examples, answers, 2 * len(cfg.families)), records


def run_chatgpt(cfg: ChatGPTConfig, resume: bool = False, command: str = "") -> dict[str, Any]:
    """Run every stage, evaluate, and write ``report.json``, ``report.md``, ``answers.jsonl``
    and the plots into ``cfg.out``; return the report."""
    root = Path(cfg.out)
    root.mkdir(parents=True, exist_ok=True)
    start_machine = machine()
    tic = time.perf_counter()
    stages = run_stages(cfg, resume=resume)
    say("evaluating every stage on held-out prompts")
    eval_tic = time.perf_counter()
    models, shown, records = evaluate_stages(cfg)
    eval_seconds = time.perf_counter() - eval_tic
    write_jsonl(root / "answers.jsonl", records)
    plots = plot_report(root, models, cfg.families)
    report = {
        "command": command
        or f"genlab demo --out {cfg.out} --preset {cfg.preset} --seed {cfg.seed}",
        "preset": cfg.preset,
        "seed": cfg.seed,
        "families": list(cfg.families),
        "machine_start": start_machine,
        "machine": machine(),
        "total_seconds": sum(s["seconds"] for s in stages.values()) + eval_seconds,
        "wall_seconds": time.perf_counter() - tic,
        "stages": stages,
        "evaluation": {
            "seconds": eval_seconds,
            "prompts": len(records),
            "settings": asdict(cfg.eval),
            "models": models,
        },
        "goals": check_goals(stages, models),
        "transcript": shown,
        "plots": plots,
        "chat_commands": [
            f"genlab chat {root / 'ppo'}",
            f"genlab chat {root / 'dpo'}",
            f"genlab chat {root / 'sft'} --message {shlex.quote(shown[0]['prompt'])}",
        ],
        "config": json.loads(json.dumps(asdict(cfg), default=str)),
    }
    atomic_write_json(root / "report.json", report)
    atomic_write_bytes(root / "report.md", render_report(report).encode())
    return report
