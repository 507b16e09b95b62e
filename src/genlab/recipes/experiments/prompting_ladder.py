"""What the prompting experiments share: ask every rung of the ladder the same questions under
several prompting arms, score each cell with an interval, and write the page.

Each cell (rung x arm) is scored over the same questions, so two arms' difference is measured
per question (a paired bootstrap), not from two separate intervals.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from genlab.core.io import atomic_write_json
from genlab.core.sweep import markdown_table
from genlab.data.tinyworld.families.base import Example
from genlab.metrics.bootstrap import bootstrap_mean
from genlab.prompting import LocalLM, Outcome, PromptSettings, answer
from genlab.recipes.experiments.report import load_average, new_figure, save_figure

Row = dict[str, Any]
GROUP = "group"  # a row's question set, where an experiment asks more than one


def cell(rung: str, params: int, arm: str, outcomes: Sequence[Outcome], seconds: float) -> Row:
    """One rung under one arm: accuracy with its 95% interval, per family, and the vote's
    diversity where there was a vote."""
    overall = bootstrap_mean([float(o.correct) for o in outcomes])
    families = dict.fromkeys(o.example.family for o in outcomes)
    return {
        "rung": rung,
        "params": params,
        "arm": arm,
        "accuracy": overall.mean,
        "low": overall.low,
        "high": overall.high,
        "n": len(outcomes),
        "families": {
            f: sum(o.correct for o in outcomes if o.example.family == f)
            / sum(o.example.family == f for o in outcomes)
            for f in families
        },
        "distinct": sum(o.distinct for o in outcomes) / len(outcomes),
        "share": sum(o.share for o in outcomes) / len(outcomes),
        "seconds": seconds,
        "correct": [o.correct for o in outcomes],
        "examples": [
            {"prompt": o.example.prompt, "reference": o.example.answer, "answer": o.answer}
            | {"completions": o.completions[:3]}
            for o in outcomes[:3]
        ],
    }


def ask_ladder(
    runs: Mapping[str, Path],
    arms: Mapping[str, PromptSettings],
    questions: Sequence[Example],
    pool: Sequence[Example],
    device: str,
) -> list[Row]:
    """Every rung under every arm, the same questions and demonstration pool for each."""
    rows = []
    for rung, run in runs.items():
        lm = LocalLM(run, device=device)
        params = sum(p.numel() for p in lm.model.parameters())
        for arm, settings in arms.items():
            start = time.perf_counter()
            outcomes = answer(lm, questions, pool, settings)
            rows.append(cell(rung, params, arm, outcomes, time.perf_counter() - start))
    return rows


def paired_gap(rows: Sequence[Row], rung: str, a: str, b: str) -> tuple[float, float, float]:
    """Arm ``a`` minus arm ``b`` on one rung, over the same questions: mean and 95% interval."""
    first = next(r for r in rows if r["rung"] == rung and r["arm"] == a)["correct"]
    second = next(r for r in rows if r["rung"] == rung and r["arm"] == b)["correct"]
    gap = bootstrap_mean([float(x) - float(y) for x, y in zip(first, second, strict=True)])
    return gap.mean, gap.low, gap.high


def interval(hits: Sequence[float]) -> list[float]:
    """``[mean, low, high]``: a share of hits with its 95% percentile-bootstrap interval."""
    score = bootstrap_mean([float(h) for h in hits])
    return [score.mean, score.low, score.high]


def interval_text(value: Sequence[float]) -> str:
    """``[mean, low, high]`` as percentages: ``57.2 [53.3, 61.2]``."""
    mean, low, high = value
    return f"{100 * mean:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def value_interval_text(value: Sequence[float]) -> str:
    """``[mean, low, high]`` of a figure that is not a share: ``0.097 [0.069, 0.145]``."""
    mean, low, high = value
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def pct(row: Row) -> str:
    return interval_text([row["accuracy"], row["low"], row["high"]])


def gap_text(gap: tuple[float, float, float]) -> str:
    mean, low, high = gap
    return f"{100 * mean:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def ladder_table(
    rows: Sequence[Row], arms: Sequence[str], gaps: Sequence[tuple[str, str]] = ()
) -> str:
    """One line per rung, a column per arm (accuracy % [95%]), then a column per paired gap
    ``(a, b)``: arm a minus arm b on the same questions."""
    rungs = list(dict.fromkeys(r["rung"] for r in rows))
    body = []
    for rung in rungs:
        own = {r["arm"]: r for r in rows if r["rung"] == rung}
        first = next(iter(own.values()))
        line = [rung, f"{first['params'] / 1e6:.2f}M", *(pct(own[a]) for a in arms)]
        body.append(line + [gap_text(paired_gap(rows, rung, a, b)) for a, b in gaps])
    headers = ["model", "weights", *(f"{a} %" for a in arms)]
    return markdown_table(headers + [f"{a} - {b} [95%]" for a, b in gaps], body)


def gap_finding(rows: Sequence[Row], a: str, b: str, claim: str) -> str:
    """One sentence: arm a minus arm b at every size, and what the claim expects."""
    rungs = list(dict.fromkeys(r["rung"] for r in rows))
    gaps = "; ".join(f"{r} {gap_text(paired_gap(rows, r, a, b))}" for r in rungs)
    return f"{a} minus {b}, by size: {gaps} points ({claim})."


def family_findings(rows: Sequence[Row]) -> list[str]:
    """Each cell's accuracy per family, one line per rung and arm."""
    return [
        f"{r['rung']}, {r['arm']}{f' ({r[GROUP]})' if GROUP in r else ''}: "
        + ", ".join(f"{f} {100 * a:.0f}%" for f, a in r["families"].items())
        for r in rows
    ]


def save_rows(
    out: Path,
    name: str,
    rows: Sequence[Row],
    arms: Sequence[str],
    title: str,
    plotted: Sequence[Row] | None = None,
) -> None:
    """``NAME.json`` (every row, without the per-question flags) and ``NAME.png`` (accuracy by
    size of ``plotted``, default every row)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / f"{name}.json", public(rows))
    ladder_figure(rows if plotted is None else plotted, arms, out / f"{name}.png", title)


def ladder_figure(rows: Sequence[Row], arms: Sequence[str], path: Path, title: str) -> None:
    """Accuracy against weights, a line per arm, with the 95% intervals."""
    fig = new_figure(6.5, 4.0)
    ax = fig.subplots()
    for i, arm in enumerate(arms):
        own = sorted((r for r in rows if r["arm"] == arm), key=lambda r: r["params"])
        xs = [r["params"] for r in own]
        ys = [100 * r["accuracy"] for r in own]
        err = [
            [100 * (r["accuracy"] - r["low"]) for r in own],
            [100 * (r["high"] - r["accuracy"]) for r in own],
        ]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=arm, color=f"C{i}")
    ax.set(xscale="log", xlabel="weights", ylabel="accuracy % (95% interval)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def public(rows: Sequence[Row]) -> list[Row]:
    """Rows without the per-question flags (kept only for paired differences)."""
    return [{k: v for k, v in r.items() if k != "correct"} for r in rows]


def load_note(before: str, start: float) -> str:
    return (
        f"machine load (1/5/15-minute averages) before: {before}, after: {load_average()}; "
        f"{(time.perf_counter() - start) / 60:.1f} minutes in all (a trained ladder is reused)"
    )
