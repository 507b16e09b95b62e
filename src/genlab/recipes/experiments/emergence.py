"""Do abilities appear suddenly with scale, or does the metric make them look sudden?

The claims: some abilities are absent in small models and present in large ones, with no smooth
trend between (Wei et al., 2022, "Emergent Abilities of Large Language Models"); the sharpness
comes from the metric, since exact match needs every token of a multi-token answer right, while
a per-token metric on the same models improves steadily (Schaeffer et al., 2023, "Are Emergent
Abilities of Large Language Models a Mirage?"). The experiment asks the scaling sweep's GPTs
for column arithmetic in the corpus's own worked format (addition of one-, two- and three-digit
numbers, two-digit subtraction, two-digit times one-digit products: one to five written steps) and
scores the same greedy answers three ways: exact match of the final result (sharp), the share
of the result's digits right (smooth), and the per-token log-likelihood of the written-out
reference solution (smooth). Each is plotted against the models' held-out loss (their order of
capability across sizes and budgets); a metric's "largest jump" is the share of its whole rise
that happens between two neighbouring models.

    genlab experiment emergence
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genlab.core.io import atomic_write_json
from genlab.core.sweep import markdown_table
from genlab.data.tinyworld.worked import add_steps, mul_steps, sub_steps
from genlab.prompting.lm import LocalLM
from genlab.recipes.experiments.prompting_ladder import (
    interval,
    interval_text,
    value_interval_text,
)
from genlab.recipes.experiments.report import (
    DOCS_DIR,
    load_average,
    new_figure,
    save_figure,
    write_page,
)
from genlab.recipes.experiments.sweep_models import SweepModel, default_sweep, score, sweep_models
from genlab.recipes.scaling import ScalingSweepConfig

NAME = "emergence"
_RESULT = re.compile(r"So -?\d+ [-+*] -?\d+ = (-?\d+)\.")


def _digits(rng: random.Random, n: int) -> int:
    return rng.randint(10 ** (n - 1) if n > 1 else 0, 10**n - 1)


def _addition(n: int) -> Callable[[random.Random], tuple[str, list[str], int]]:
    def make(rng: random.Random) -> tuple[str, list[str], int]:
        a, b = _digits(rng, n), _digits(rng, n)
        return f"Sum: {a} + {b}", add_steps(a, b), a + b

    return make


def _subtraction(rng: random.Random) -> tuple[str, list[str], int]:
    a, b = sorted((_digits(rng, 2), _digits(rng, 2)), reverse=True)
    return f"Difference: {a} - {b}", sub_steps(a, b), a - b


def _multiplication(rng: random.Random) -> tuple[str, list[str], int]:
    a, b = _digits(rng, 2), rng.randint(2, 9)
    return f"Product: {a} * {b}", mul_steps(a, b), a * b


# a task: its problems as (heading, the reference's written steps, the result); addition at
# one, two and three digits takes one, two and three or four written steps
TASKS: dict[str, Callable[[random.Random], tuple[str, list[str], int]]] = {
    "add 1-digit": _addition(1),
    "add 2-digit": _addition(2),
    "add 3-digit": _addition(3),
    "subtract 2-digit": _subtraction,
    "multiply 2-digit by 1": _multiplication,
}
RARE = 0.1  # an exact-match curve that never reaches this is too low to judge its shape
METRICS = {
    "exact": "exact match of the result",
    "digits": "share of the result's digits right",
    "loglik": "log-likelihood per token of the reference solution",
}


@dataclass
class EmergenceConfig:
    """The problems and the models that answer them."""

    n_problems: int = 200  # per task
    max_new_tokens: int = 100  # the longest reference solution is about 70 tokens
    seed: int = 0  # the problems drawn
    device: str = "auto"
    out_dir: str = str(DOCS_DIR)
    sweep: ScalingSweepConfig = field(default_factory=default_sweep)


def result_of(text: str) -> int | None:
    """The result a worked solution ends with ("So 347 + 586 = 933."), or ``None``."""
    found = _RESULT.search(text)
    return int(found.group(1)) if found else None


def digit_share(answer: int | None, reference: int) -> float:
    """The share of the reference's digits that the answer has in the same place, counted from
    the right (a missing answer has none; extra leading digits cost as a wrong digit each)."""
    if answer is None:
        return 0.0
    ours, theirs = str(answer)[::-1], str(reference)[::-1]
    same = sum(a == b for a, b in zip(ours, theirs, strict=False))
    return same / max(len(ours), len(theirs))


def evaluate(model: SweepModel, problems: dict[str, list], cfg: EmergenceConfig) -> dict[str, Any]:
    """One model's three metrics on every task: per-problem values, then means with intervals."""
    lm = LocalLM(model.folder, device=cfg.device)
    out: dict[str, Any] = {}
    for task, items in problems.items():
        prompts = [f"{head}\n" for head, _, _ in items]
        texts = [g[0] for g in lm.generate_until(prompts, ["\n\n"], cfg.max_new_tokens)]
        answers = [result_of(t) for t in texts]
        exact = [float(a == r) for a, (_, _, r) in zip(answers, items, strict=True)]
        digits = [digit_share(a, r) for a, (_, _, r) in zip(answers, items, strict=True)]
        solutions = ["\n".join(steps) for _, steps, _ in items]
        lps = score(lm.model, lm.tokenizer, prompts, solutions)
        loglik = [float(lp.mean()) for lp in lps]
        out[task] = {
            "exact": interval(exact),
            "digits": interval(digits),
            "loglik": interval(loglik),
            "sample": texts[0],
        }
    return out


def largest_jump(values: list[float]) -> float:
    """The share of a metric's whole range covered by its biggest rise between two neighbouring
    models (1: all at once; about 1/(n - 1): a steady climb)."""
    span = max(values) - min(values)
    rises = np.diff(values)
    return float(rises.max() / span) if span > 0 and len(rises) else 0.0


def run_experiment(cfg: EmergenceConfig, command: str = "") -> dict[str, Any]:
    before, start = load_average(), time.perf_counter()
    models = sweep_models(cfg.sweep)
    rng = random.Random(f"emergence/{cfg.seed}")
    problems = {task: [make(rng) for _ in range(cfg.n_problems)] for task, make in TASKS.items()}
    results = [evaluate(m, problems, cfg) for m in models]
    jumps = {
        task: {k: largest_jump([r[task][k][0] for r in results]) for k in METRICS} for task in TASKS
    }
    record = {
        "models": [m.summary() | {"results": r} for m, r in zip(models, results, strict=True)],
        "largest_jump": jumps,
    }
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / f"{NAME}.json", record)
    _figure(out / f"{NAME}.png", models, results)

    tables = []
    for key, title in METRICS.items():
        text = interval_text if key != "loglik" else value_interval_text
        rows = [
            [m.label, f"{m.loss:.3f}", *(text(r[t][key]) for t in TASKS)]
            for m, r in zip(models, results, strict=True)
        ]
        tables.append(f"**{title}**\n\n" + markdown_table(["model", "held-out loss", *TASKS], rows))
    jump_rows = [[t, *(f"{jumps[t][k]:.2f}" for k in METRICS)] for t in TASKS]
    tables.append(
        "**largest jump between neighbouring models, as a share of the metric's range**\n\n"
        + markdown_table(["task", *METRICS.values()], jump_rows)
    )
    table = "\n\n".join(tables)
    findings = _findings(jumps, models, results)
    write_page(
        out / f"{NAME}.md",
        "Emergence: a sharp metric and smooth ones on the same models",
        "Does multi-step arithmetic appear suddenly as the sweep's GPTs grow, and does the "
        "answer depend on the metric (exact match against per-digit and per-token scores of "
        "the same answers)?",
        table,
        f"{NAME}.png",
        [
            f"models: the {len(models)} runs of the scaling sweep (`{cfg.sweep.out}`, grid "
            f"`{cfg.sweep.grid}`) and its held-out run where trained, ordered by their held-out loss, highest first",
            f"problems: {cfg.n_problems} per task (seed {cfg.seed}), asked as the corpus heads "
            "worked solutions (`Sum: 347 + 586`, `Difference: ...`, `Product: ...`); greedy, "
            f"at most {cfg.max_new_tokens} tokens, to the first blank line",
            "intervals: 95% bootstrap over problems; largest jump: the biggest rise between "
            "neighbouring models (by held-out loss) over the metric's whole range",
            f"machine load (1/5/15-minute averages) before: {before}, after: {load_average()}; "
            f"{(time.perf_counter() - start) / 60:.1f} minutes (sweep runs reused)",
        ],
        findings,
        command=command,
    )
    return record


def _findings(
    jumps: dict[str, dict[str, float]], models: list[SweepModel], results: list[dict]
) -> list[str]:
    lines = []
    for task, jump in jumps.items():
        exact = [r[task]["exact"][0] for r in results]
        digits = [r[task]["digits"][0] for r in results]
        if max(exact) < RARE:
            lines.append(
                f"{task}: exact match stays under {100 * RARE:.0f}% on every model (best "
                f"{100 * max(exact):.1f}%): too rare here to call sudden or smooth, while the "
                f"digits right rise from {100 * digits[0]:.1f}% to {100 * max(digits):.1f}% "
                f"(largest jump {100 * jump['digits']:.0f}% of the range) and the log-likelihood "
                f"per token climbs steadily (largest jump {100 * jump['loglik']:.0f}%)."
            )
            continue
        first = next((m.label for m, e in zip(models, exact, strict=True) if e >= 0.5), None)
        sharper = jump["exact"] > max(jump["digits"], jump["loglik"])
        lines.append(
            f"{task}: exact match goes from {100 * exact[0]:.1f}% to {100 * max(exact):.1f}%"
            + (f", first past 50% at {first}" if first else ", never past 50%")
            + f"; its largest jump covers {100 * jump['exact']:.0f}% of its range, against "
            f"{100 * jump['digits']:.0f}% (digits) and {100 * jump['loglik']:.0f}% (log-likelihood)"
            + (": sharper than the smooth metrics" if sharper else ": no sharper than they are")
            + "."
        )
    return lines


def _figure(path: Any, models: list[SweepModel], results: list[dict]) -> None:
    fig = new_figure(13, 4)
    axes = fig.subplots(1, 3)
    loss = [m.loss for m in models]
    for ax, (key, title) in zip(axes, METRICS.items(), strict=True):
        for i, task in enumerate(TASKS):
            mean = [r[task][key][0] for r in results]
            low = [r[task][key][1] for r in results]
            high = [r[task][key][2] for r in results]
            ax.plot(loss, mean, "o-", color=f"C{i}", ms=3, label=task)
            ax.fill_between(loss, low, high, color=f"C{i}", alpha=0.2)
        ax.set(xlabel="held-out loss (nats/token)", title=title)
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    save_figure(fig, path)
