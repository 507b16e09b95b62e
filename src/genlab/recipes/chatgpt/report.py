"""The demo's report: goals checked against measurements, plots, and the Markdown page."""

from __future__ import annotations

import io
import os
import platform
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from genlab.core.device import pick_device
from genlab.core.io import atomic_write_bytes
from genlab.core.logging import read_metrics
from genlab.recipes.chatgpt.pipeline import STAGES

GOALS = {
    "sft_accuracy": 0.80,
    "reward_accuracy": 0.90,
    "win_rate": 0.65,
}


def check_goals(stages: dict[str, Any], models: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals for the demo preset, each with its measured figure, whether it is met,
    and when it is not, what the numbers say limits it."""
    sft_m, goals = models["sft"], []
    weak = [f"{f} {a:.0%}" for f, a in sft_m["accuracy_by_family"].items() if a < 0.8]
    goals.append(
        {
            "goal": "SFT exact answers on held-out prompts (greedy)",
            "target": GOALS["sft_accuracy"],
            "measured": sft_m["accuracy_greedy"],
            "met": sft_m["accuracy_greedy"] >= GOALS["sft_accuracy"],
            "note": "families below 80%: " + (", ".join(weak) or "none"),
        }
    )
    rm = stages["reward"]["metrics"]
    goals.append(
        {
            "goal": "reward model pairwise accuracy on held-out comparisons",
            "target": GOALS["reward_accuracy"],
            "measured": rm["test_accuracy"],
            "met": rm["test_accuracy"] >= GOALS["reward_accuracy"],
            "note": "trained on labels with 10% flipped; held-out pairs ordered by the judge",
        }
    )
    ceiling = 1.0 - 0.5 * sft_m["perfect_share_sampled"]
    for name in ("ppo", "dpo"):
        m = models[name]
        correct = (
            m["accuracy_greedy"] >= sft_m["accuracy_greedy"]
            and m["accuracy_sampled"] >= sft_m["accuracy_sampled"]
        )
        goals.append(
            {
                "goal": f"{name.upper()} preferred by the judge over SFT (sampled answers, ties "
                "half), correctness not lower",
                "target": GOALS["win_rate"],
                "measured": m["win_rate_vs_sft_sampled"],
                "met": m["win_rate_vs_sft_sampled"] >= GOALS["win_rate"] and correct,
                "note": (
                    f"exact answers {m['accuracy_greedy']:.1%} greedy / "
                    f"{m['accuracy_sampled']:.1%} sampled vs SFT's {sft_m['accuracy_greedy']:.1%}"
                    f" / {sft_m['accuracy_sampled']:.1%}; {sft_m['perfect_share_sampled']:.0%} "
                    f"of SFT's answers already get the judge's full score, which caps the win "
                    f"rate at {ceiling:.1%}; KL to SFT {m['kl_to_sft']:.2f} nats"
                ),
            }
        )
    return goals


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _curve(ax: Any, records: list[dict], key: str, label: str) -> None:
    pairs = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    if pairs:
        steps, values = zip(*pairs, strict=True)
        ax.plot(steps, values, label=label, marker="o" if len(steps) <= 12 else None, ms=3)


def plot_report(root: Path, models: dict[str, Any], families: tuple[str, ...]) -> list[str]:
    """``plots/losses.png`` (every stage's training curve), ``plots/ppo.png`` (reward and KL at the
    end of each PPO iteration) and ``plots/accuracy_by_family.png``; returns their paths relative to root."""
    out = root / "plots"
    fig = Figure(figsize=(12, 7), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    panels = (
        ("pretrain", "pretraining: next-token loss"),
        ("sft", "SFT: loss on assistant tokens"),
        ("reward", "reward model: Bradley-Terry loss"),
        ("dpo", "DPO: loss (log 2 at the start)"),
    )
    for i, (stage, title) in enumerate(panels):
        ax = fig.add_subplot(2, 2, i + 1)
        records = read_metrics(root / stage)
        _curve(ax, records, "loss", "train")
        _curve(ax, records, "eval_loss", "held out")
        ax.set(title=title, xlabel="step", ylabel="loss")
        ax.grid(alpha=0.3)
        ax.legend()
    atomic_write_bytes(out / "losses.png", _png(fig))

    fig = Figure(figsize=(11, 4), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    records = read_metrics(root / "ppo")
    for i, (key, title, label) in enumerate(
        (
            ("reward", "PPO: reward model score of the rollouts", "mean reward"),
            ("kl", "PPO: KL to the SFT model", "nats per answer"),
        )
    ):
        ax = fig.add_subplot(1, 2, i + 1)
        _curve(ax, records, key, label)
        ax.set(title=title, xlabel="PPO optimizer step (iteration ends)", ylabel=label)
        ax.grid(alpha=0.3)
    atomic_write_bytes(out / "ppo.png", _png(fig))

    fig = Figure(figsize=(11, 4.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / len(models)
    for j, (name, m) in enumerate(models.items()):
        xs = [i + (j - (len(models) - 1) / 2) * width for i in range(len(families))]
        ax.bar(xs, [m["accuracy_by_family"].get(f, 0.0) for f in families], width, label=name)
    ax.set_xticks(range(len(families)), families)
    ax.set(title="Exact answers on held-out prompts (greedy), by task family", ylabel="accuracy")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    atomic_write_bytes(out / "accuracy_by_family.png", _png(fig))
    return ["plots/losses.png", "plots/ppo.png", "plots/accuracy_by_family.png"]


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(pick_device("auto")),
        "load_average": [round(x, 2) for x in load],
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _num(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def render_report(report: dict[str, Any]) -> str:
    """``report.md`` from ``report.json``'s content."""
    r, ev = report, report["evaluation"]
    models = ev["models"]
    lines = [
        "# The ChatGPT recipe on TinyWorld",
        "",
        f"Command: `{r['command']}`  ",
        f"Preset `{r['preset']}`, seed {r['seed']}, total {r['total_seconds'] / 60:.1f} min on "
        f"{r['machine']['device']} ({r['machine']['cpu_count']} cores, "
        f"{r['machine']['torch_threads']} torch threads; load average at start "
        f"{r['machine_start']['load_average']}, at the end {r['machine']['load_average']}).  ",
        f"Task families tuned and evaluated: {', '.join(r['families'])}.",
        "",
        "## Stages",
        "",
        "| stage | steps | time | result |",
        "|---|---|---|---|",
    ]
    st = r["stages"]
    results = {
        "pretrain": f"validation loss {_num(st['pretrain']['metrics'].get('eval_loss'), 3)}, "
        f"{st['pretrain']['metrics'].get('params', 0) / 1e6:.2f}M parameters",
        "sft": f"held-out loss {_num(st['sft']['metrics'].get('eval_loss'), 3)} (assistant tokens)",
        "reward": f"held-out pairwise accuracy {_pct(st['reward']['metrics']['test_accuracy'])}",
        "ppo": f"reward {_num(st['ppo']['metrics'].get('reward'))}, "
        f"KL {_num(st['ppo']['metrics'].get('kl'))} nats (last iteration)",
        "dpo": f"held-out loss {_num(st['dpo']['metrics'].get('eval_loss'), 3)}, implicit "
        f"reward accuracy {_pct(st['dpo']['metrics'].get('eval_reward_accuracy'))}",
    }
    for name in STAGES:
        steps = int(st[name]["metrics"].get("step", 0))
        lines.append(f"| {name} | {steps} | {st[name]['seconds']:.0f} s | {results[name]} |")
    n, k = ev["prompts"], ev["settings"]["samples"]
    lines += [
        "",
        "## Evaluation on held-out prompts",
        "",
        f"{n} prompts (test split, {ev['settings']['n_per_family']} per family); greedy: one "
        f"answer at temperature 0; sampled: {k} answers per prompt at temperature "
        f"{ev['settings']['temperature']}. The pretrained model is prompted "
        f"{ev['settings']['shots']}-shot.",
        "",
        "| model | exact (greedy) | exact (sampled) | judge (greedy) | judge (sampled) "
        "| win vs SFT (greedy) | win vs SFT (sampled) | KL to SFT (nats) | reward model |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in models.items():
        lines.append(
            f"| {name} | {_pct(m['accuracy_greedy'])} | {_pct(m['accuracy_sampled'])} "
            f"| {_num(m['judge_greedy'], 3)} | {_num(m['judge_sampled'], 3)} "
            f"| {_pct(m.get('win_rate_vs_sft_greedy'))} | {_pct(m.get('win_rate_vs_sft_sampled'))}"
            f" | {_num(m['kl_to_sft'])} | {_num(m['reward_sampled'])} |"
        )
    lines += ["", "Exact answers by family (greedy):", ""]
    fams = r["families"]
    lines += ["| model | " + " | ".join(fams) + " |", "|---|" + "---|" * len(fams)]
    for name, m in models.items():
        lines.append(
            f"| {name} | " + " | ".join(_pct(m["accuracy_by_family"].get(f)) for f in fams) + " |"
        )
    lines += [
        "",
        "## Goals",
        "",
        "| goal | target | measured | met | note |",
        "|---|---|---|---|---|",
    ]
    for g in r["goals"]:
        lines.append(
            f"| {g['goal']} | {_pct(g['target'])} | {_pct(g['measured'])} "
            f"| {'yes' if g['met'] else '**no**'} | {g['note']} |"
        )
    lines += ["", "## What each model says", ""]
    for t in r["transcript"]:
        lines.append(f"**{t['prompt']}** (reference: {t['reference']})")
        lines.append("")
        for name in models:
            lines.append(f"- {name}: {t[name]!r}")
        lines.append("")
    lines += ["## Plots", ""]
    lines += [f"![{p}]({p})" for p in r["plots"]]
    lines += [
        "",
        "## Chat with the result",
        "",
        *[f"    {c}" for c in r["chat_commands"]],
        "",
    ]
    return "\n".join(lines)
