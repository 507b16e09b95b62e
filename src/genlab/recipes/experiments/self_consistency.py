"""Does voting over sampled answers help, and more for chains of thought than for bare answers?

The claim (Wang et al., 2023, "Self-Consistency Improves Chain of Thought Reasoning"): sampling
several reasoning paths and taking the majority answer beats greedy chain of thought, rising with
the number of paths, because reasoning paths are diverse; voting over bare answers helps little,
as they mostly repeat one answer. The largest rung (by default) answers multi-step questions with
20 sampled few-shot CoT paths and 20 sampled direct answers per question; the vote over the first
1, 3, 5, 10 and 20 is scored, beside greedy decoding, and the diversity (distinct answers among
the 20, the winner's share) is measured.

    genlab experiment self-consistency
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genlab.core.io import atomic_write_json
from genlab.core.sweep import markdown_table
from genlab.prompting import LocalLM, PromptSettings, answer
from genlab.prompting.settings import answer_of, judge
from genlab.prompting.tasks import load_tasks
from genlab.prompting.vote import majority
from genlab.recipes.experiments.chain_of_thought import MULTI_STEP
from genlab.recipes.experiments.ladder import LadderConfig, ladder_runs
from genlab.recipes.experiments.prompting_ladder import interval, interval_text, load_note
from genlab.recipes.experiments.report import (
    DOCS_DIR,
    load_average,
    new_figure,
    save_figure,
    write_page,
)

NAME = "self_consistency"
MODES = {"CoT": True, "direct": False}


@dataclass
class SelfConsistencyConfig:
    """The questions, the vote sizes and the sampling."""

    families: tuple[str, ...] = MULTI_STEP
    n_per_family: int = 50  # test questions per family
    samples: tuple[int, ...] = (1, 3, 5, 10, 20)  # votes scored over the first k samples
    temperature: float = 0.7  # Wang et al. sample at 0.5-0.7
    shots: int = 3
    reasoning_tokens: int = 96
    rungs: tuple[str, ...] = ()  # ladder rungs asked (default: the largest)
    seed: int = 0  # demonstrations drawn and answers sampled
    device: str = "auto"  # where the models answer
    out_dir: str = str(DOCS_DIR)
    ladder: LadderConfig = field(default_factory=LadderConfig)


def run_experiment(cfg: SelfConsistencyConfig, command: str = "") -> list[dict[str, Any]]:
    """Sample max(samples) answers per question once per mode; score the vote of each prefix."""
    before, start = load_average(), time.perf_counter()
    runs = ladder_runs(cfg.ladder)
    chosen = cfg.rungs or (list(runs)[-1],)
    questions, pool = load_tasks(
        ",".join(cfg.families), "test", cfg.n_per_family, cfg.ladder.world, cfg.seed
    )
    rows: list[dict[str, Any]] = []
    for rung in chosen:
        lm = LocalLM(runs[rung], device=cfg.device)
        for mode, reasoning in MODES.items():
            common = {"shots": cfg.shots, "reasoning_tokens": cfg.reasoning_tokens}
            greedy = answer(
                lm,
                questions,
                pool,
                PromptSettings("cot" if reasoning else "few-shot", seed=cfg.seed, **common),
            )
            sampled = answer(
                lm,
                questions,
                pool,
                PromptSettings(
                    "self-consistency",
                    samples=max(cfg.samples),
                    temperature=cfg.temperature,
                    reasoning=reasoning,
                    seed=cfg.seed,
                    **common,
                ),
            )
            paths = [[answer_of(t) for t in o.completions] for o in sampled]
            row: dict[str, Any] = {"rung": rung, "mode": mode}
            row["greedy"] = interval([o.correct for o in greedy])
            for k in cfg.samples:
                row[f"vote@{k}"] = interval(
                    [
                        judge(q, majority(p[:k]).answer)
                        for q, p in zip(questions, paths, strict=True)
                    ]
                )
            row["distinct"] = sum(o.distinct for o in sampled) / len(sampled)
            row["share"] = sum(o.share for o in sampled) / len(sampled)
            row["single_sample"] = sum(
                judge(q, p[0]) for q, p in zip(questions, paths, strict=True)
            ) / len(questions)
            rows.append(row)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / f"{NAME}.json", rows)

    fig = new_figure(6.5, 4.0)
    ax = fig.subplots()
    for i, row in enumerate(rows):
        ys = [100 * row[f"vote@{k}"][0] for k in cfg.samples]
        err = [
            [100 * (row[f"vote@{k}"][0] - row[f"vote@{k}"][1]) for k in cfg.samples],
            [100 * (row[f"vote@{k}"][2] - row[f"vote@{k}"][0]) for k in cfg.samples],
        ]
        label = f"{row['rung']} {row['mode']}"
        ax.errorbar(cfg.samples, ys, yerr=err, marker="o", capsize=3, color=f"C{i}", label=label)
        ax.axhline(100 * row["greedy"][0], color=f"C{i}", ls="--", lw=1, label=f"{label}, greedy")
    ax.set(xscale="log", xlabel="sampled answers voted on", ylabel="accuracy % (95% interval)")
    ax.set_xticks(list(cfg.samples), [str(k) for k in cfg.samples])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, out / f"{NAME}.png")

    headers = ["model", "answers", "greedy %", *(f"vote of {k} %" for k in cfg.samples)]
    headers += ["distinct answers (of 20)", "winner's share"]
    body = [
        [
            r["rung"],
            r["mode"],
            interval_text(r["greedy"]),
            *(interval_text(r[f"vote@{k}"]) for k in cfg.samples),
        ]
        + [f"{r['distinct']:.2f}", f"{r['share']:.2f}"]
        for r in rows
    ]
    top = max(cfg.samples)
    findings = [
        f"{r['rung']} {r['mode']}: greedy {100 * r['greedy'][0]:.1f}%, one sample "
        f"{100 * r['single_sample']:.1f}%, vote of {top} {100 * r[f'vote@{top}'][0]:.1f}%; "
        f"{r['distinct']:.1f} distinct answers among {top} samples"
        for r in rows
    ]
    write_page(
        out / f"{NAME}.md",
        "Self-consistency: voting over sampled answers",
        "Does the majority of several sampled answers beat greedy decoding, and more with chains "
        "of thought than with bare answers (whose samples vary less)?",
        markdown_table(headers, body),
        f"{NAME}.png",
        [
            f"families {', '.join(cfg.families)}: {cfg.n_per_family} test questions each, "
            f"{cfg.shots} demonstrations (worked solutions for CoT, bare answers for direct)",
            f"{top} samples per question at temperature {cfg.temperature}; the vote of k is the "
            "majority of the first k (ties to the earliest); distinct answers counted after "
            "normalising case and punctuation",
            "intervals: 95% percentile bootstrap over the questions",
            f"models: {', '.join(chosen)} of the ladder in `{cfg.ladder.sweep_dir}/ladder`",
            load_note(before, start),
        ],
        findings,
        command=command,
    )
    return rows
