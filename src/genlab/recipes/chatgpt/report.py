"""The demo's report: goals checked against measurements, plots, and the Markdown page."""

from __future__ import annotations

import io
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from genlab.align.best_of_n import best_of_n_kl
from genlab.align.ppo_monitor import GUARD_FILE
from genlab.core.device import pick_device
from genlab.core.io import atomic_write_bytes
from genlab.core.logging import read_metrics
from genlab.metrics.bootstrap import Interval, bootstrap_mean
from genlab.recipes.chatgpt.overoptimisation import plot_overoptimisation
from genlab.recipes.chatgpt.pipeline import STAGES

GOALS = {
    "sft_exact": 0.85,  # SFT's exact answers on held-out prompts (greedy), mean at least
    "reward_accuracy": 0.90,  # the reward model's pairwise accuracy on held-out comparisons
    "win_rate": 0.65,  # PPO's and DPO's win rate against SFT (sampled answers), mean at least
    "win_rate_low": 0.55,  # ... and its lower 95% bound above this
    "exact_drop": 0.01,  # PPO's and DPO's exact answers (greedy) at most 1 point below SFT's
}
TUNED = ("ppo", "dpo")  # the models held to the win-rate goal
COMPARED = (*TUNED, "best_of_n")  # compared with SFT in the goal table (best-of-n: a baseline)
EXACT_KEY = {"best_of_n": "exact_sampled"}  # its picks are samples: compared with SFT's samples
_EPS = 1e-9  # a mean over seeds of exactly -1 point must count as -1 point


def goal_figures(runs: Sequence[Mapping[str, Any]]) -> dict[str, Interval]:
    """Every figure of the goal table from each seed's per-item outcomes (a report's
    ``evaluation.outcomes``): the mean over seeds with its 95% stratified bootstrap interval,
    which for one seed is an interval over its prompts (or comparisons) alone."""

    def items(name: str, key: str) -> list[list[float]]:
        return [run["models"][name][key] for run in runs]

    sft = items("sft", "exact_greedy")
    figures = {
        "sft_exact": bootstrap_mean(sft),
        "reward_accuracy": bootstrap_mean([run["reward_pairs"] for run in runs]),
    }
    for name in COMPARED:
        figures[f"{name}_win"] = bootstrap_mean(items(name, "win_vs_sft_sampled"))
        # paired by prompt (by answer): best-of-n has no greedy answer, its picks are samples
        key = EXACT_KEY.get(name, "exact_greedy")
        diffs = [
            [a - b for a, b in zip(mine, base, strict=True)]
            for mine, base in zip(items(name, key), items("sft", key), strict=True)
        ]
        figures[f"{name}_exact_vs_sft"] = bootstrap_mean(diffs)
        if all("kl_to_sft" in run["models"][name] for run in runs):
            figures[f"{name}_kl"] = bootstrap_mean(items(name, "kl_to_sft"))
    return figures


def check_goals(figures: Mapping[str, Interval]) -> list[dict[str, Any]]:
    """The goal table: each figure with its goal, target and whether it is met (``None`` where
    it has none: KL, and the best-of-n baseline). A goal is met when all its rows are."""
    f, g = figures, GOALS
    checks: list[tuple[str | None, str, str, str | None, bool | None]] = [
        # goal, figure, label, target, met
        ("sft", "sft_exact", "SFT exact answers (greedy)", f">= {g['sft_exact']:.0%}",
         f["sft_exact"].mean >= g["sft_exact"] - _EPS),
        ("reward", "reward_accuracy", "reward model pairwise accuracy (held-out comparisons)",
         f">= {g['reward_accuracy']:.0%}", f["reward_accuracy"].mean >= g["reward_accuracy"] - _EPS),
    ]  # fmt: skip
    for name in COMPARED:
        goal = name if name in TUNED else None  # best-of-n: a baseline, held to no goal
        win, diff = f[f"{name}_win"], f[f"{name}_exact_vs_sft"]
        checks += [
            (goal, f"{name}_win", f"{name} win rate vs SFT (sampled, ties half)",
             f">= {g['win_rate']:.0%}, lower bound > {g['win_rate_low']:.0%}",
             win.mean >= g["win_rate"] - _EPS and win.low > g["win_rate_low"]),
            (goal, f"{name}_exact_vs_sft",
             f"{name} exact ({EXACT_KEY.get(name, 'exact_greedy')[6:]}) minus SFT's",
             f">= -{100 * g['exact_drop']:.0f} point", diff.mean >= -g["exact_drop"] - _EPS),
            (None, f"{name}_kl", f"{name} KL to SFT (nats per answer)", None, None),
        ]  # fmt: skip
    return [
        {
            "goal": goal,
            "figure": key,
            "label": label,
            "target": target if goal else None,
            "measured": f[key].to_dict(),
            "met": met if goal else None,
        }
        for goal, key, label, target, met in checks
        if key in f
    ]


def goals_met(rows: Sequence[Mapping[str, Any]]) -> dict[str, bool]:
    """Each goal (sft, reward, ppo, dpo) and whether every row of it is met."""
    met: dict[str, bool] = {}
    for row in rows:
        if row["goal"] is not None:
            met[row["goal"]] = met.get(row["goal"], True) and bool(row["met"])
    return met


def goal_notes(sft: Mapping[str, Any]) -> list[str]:
    """What SFT's numbers say limits the goals: its weak families, and the win-rate ceiling set
    by SFT answers the judge already scores in full (against them a model can only tie)."""
    weak = [f"{f} {a:.0%}" for f, a in sft["accuracy_by_family"].items() if a < 0.8]
    perfect = sft["perfect_share_sampled"]
    return [
        "SFT's families below 80% exact: " + (", ".join(weak) or "none") + ".",
        f"{perfect:.0%} of SFT's sampled answers get the judge's full score, which caps a win "
        f"rate against SFT at {1.0 - 0.5 * perfect:.1%}.",
    ]


def format_point(key: str, value: float) -> str:
    """A figure alone, by its name: KL in nats, a judge score in [0, 1], a difference of exact
    rates in points, any other rate in %."""
    if "kl" in key:
        return f"{value:.2f}"
    if "judge" in key:
        return f"{value:.3f}"
    if key.endswith("_exact_vs_sft"):
        return f"{100 * value:+.1f} pts"
    return f"{value:.1%}"


def format_figure(key: str, interval: Interval | Mapping[str, float]) -> str:
    """A figure with its interval, ``"65.2% [60.1, 70.3]"``, in ``format_point``'s unit."""
    i = interval if isinstance(interval, Interval) else Interval(**interval)
    if "kl" in key or "judge" in key:
        return i.format(percent=False, digits=2 if "kl" in key else 3)
    if key.endswith("_exact_vs_sft"):
        return f"{format_point(key, i.mean)} [{100 * i.low:+.1f}, {100 * i.high:+.1f}]"
    return i.format(percent=True)


def render_goal_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The goal table's Markdown lines: figure, target, mean [95% interval], met."""
    lines = ["| figure | target | mean [95% interval] | met |", "|---|---|---|---|"]
    for r in rows:
        met = "" if r["met"] is None else "yes" if r["met"] else "**no**"
        lines.append(
            f"| {r['label']} | {r['target'] or '-'} "
            f"| {format_figure(r['figure'], r['measured'])} | {met} |"
        )
    return lines


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
    end of each PPO iteration), ``plots/accuracy_by_family.png`` and, when PPO's monitor ran,
    ``plots/overoptimisation.png``; returns their paths relative to root."""
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
    plots = ["plots/losses.png", "plots/ppo.png", "plots/accuracy_by_family.png"]
    if (root / "ppo" / GUARD_FILE).is_file():
        plot_overoptimisation(root / "ppo", out / "overoptimisation.png")
        plots.append("plots/overoptimisation.png")
    return plots


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


def evaluation_note(prompts: int, settings: Mapping[str, Any]) -> str:
    """What the evaluation measured on: the split, the decoding, the best-of-n baseline."""
    split = (
        "test split"
        if settings["split"] == "test"
        else "**validation split**: a tuning run; the figures that count are the test split's"
    )
    n = settings["best_of_n"]
    return (
        f"{prompts} prompts ({settings['n_per_family']} per family, {split}); greedy: one "
        f"answer at temperature 0; sampled: {settings['samples']} answers per prompt at "
        f"temperature {settings['temperature']}. The pretrained model is prompted "
        f"{settings['shots']}-shot. best_of_n: each answer the reward model's best of {n} SFT "
        f"samples (its first pick stands for greedy); its KL to SFT is the analytic "
        f"log n - (n-1)/n = {best_of_n_kl(n):.2f} nats (Stiennon et al., 2020), not an estimate."
    )


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
    n = ev["prompts"]
    lines += [
        "",
        "## Evaluation on held-out prompts",
        "",
        evaluation_note(n, ev["settings"]),
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
        f"Mean over the {n} prompts (the comparisons, for the reward model) with a 95% bootstrap "
        "interval; `genlab demo --seeds N` measures over seeds too.",
        "",
        *render_goal_table(r["goals"]),
        "",
        *[f"- {note}" for note in goal_notes(models["sft"])],
    ]
    if r.get("ppo_stop"):
        lines += [
            "",
            "## PPO: the reward model's score against the judge's",
            "",
            "Every few iterations the policy answers held-out (validation) prompts; the reward "
            "model and the judge score the answers (Gao et al., 2022: the judge's score rises, "
            "then falls as KL grows while the reward model's keeps rising). " + r["ppo_stop"],
            "",
            "![plots/overoptimisation.png](plots/overoptimisation.png)",
        ]
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
