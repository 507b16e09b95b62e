"""Does a trap task get worse with scale before it gets better?

The claims: on some tasks larger models do worse (McKenzie et al., 2023, "Inverse Scaling: When
Bigger Isn't Better"), for example when a memorised answer conflicts with what the prompt says
(the "memo trap"), and some of those curves turn back up at larger scale (Wei et al., 2023,
"Inverse scaling can become U-shaped"). The experiment's trap: a text states a fact about a
TinyWorld person that contradicts the world ("The home of Nerbar is in Lolton."), then asks for
it again in other words ("Nerbar lives in"); the right continuation is the stated object, the
trap the world's. Each model is scored three ways on the same facts, by which of the two
objects it gives the higher probability:

- **knows**: the question alone (no contradicting sentence): does it prefer the world's object?
- **copies** (the control): the same text about a person the world does not have;
- **trap**: the text about the real person: does it still copy, against what it memorised?

A model that copies but does not know the facts passes the trap; one that knows the facts and
copies weakly fails it; one that learns that the text overrides memory passes again.

    genlab experiment u-shaped
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genlab.core.io import atomic_write_json
from genlab.core.sweep import markdown_table
from genlab.data.tinyworld.traps import Trap, traps
from genlab.data.tinyworld.world import World
from genlab.recipes.experiments.prompting_ladder import interval, interval_text
from genlab.recipes.experiments.report import (
    DOCS_DIR,
    load_average,
    new_figure,
    save_figure,
    write_page,
)
from genlab.recipes.experiments.sweep_models import (
    SweepModel,
    by_size,
    default_sweep,
    prefers,
    sweep_models,
)
from genlab.recipes.scaling import ScalingSweepConfig

NAME = "u_shaped"
SCORES = {
    "knows": "knows the fact (no context)",
    "copies": "copies from context (control)",
    "trap": "copies against memory (trap)",
}


@dataclass
class UShapedConfig:
    """The traps and the models they are set for."""

    n_traps: int = 500
    seed: int = 0
    device: str = "auto"
    out_dir: str = str(DOCS_DIR)
    sweep: ScalingSweepConfig = field(default_factory=default_sweep)


def evaluate(model: SweepModel, items: list[Trap], device: str) -> dict[str, list[float]]:
    """The three scores of one model, each ``[mean, low, high]`` over the traps."""
    gpt, tokenizer = model.open(device)
    stated = [t.stated for t in items]
    memorised = [t.memorised for t in items]
    return {
        "knows": interval(prefers(gpt, tokenizer, memorised, stated, [t.question for t in items])),
        "copies": interval(prefers(gpt, tokenizer, stated, memorised, [t.control for t in items])),
        "trap": interval(prefers(gpt, tokenizer, stated, memorised, [t.prompt for t in items])),
    }


def shape_of(values: list[list[float]]) -> str:
    """``U-shaped`` when the lowest point lies inside the curve and both ends sit above its
    interval; ``inverse`` when the last point is below the first's interval; ``rising`` when
    above; else ``flat``."""
    means = [v[0] for v in values]
    low = int(np.argmin(means))
    if 0 < low < len(values) - 1 and min(means[0], means[-1]) > values[low][2]:
        return "U-shaped"
    if means[-1] < values[0][1]:
        return "inverse"
    if means[-1] > values[0][2]:
        return "rising"
    return "flat"


def run_experiment(cfg: UShapedConfig, command: str = "") -> dict[str, Any]:
    before, start = load_average(), time.perf_counter()
    models = sweep_models(cfg.sweep)
    items = traps(World(cfg.sweep.seed), cfg.n_traps, cfg.seed)
    results = [evaluate(m, items, cfg.device) for m in models]
    chosen = by_size(models)
    pick = {m.label: r for m, r in zip(models, results, strict=True)}
    shapes = {
        "by_loss": shape_of([r["trap"] for r in results]),
        "by_size": shape_of([pick[m.label]["trap"] for m in chosen]),
    }
    record = {
        "models": [m.summary() | r for m, r in zip(models, results, strict=True)],
        "shape": shapes,
    }
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / f"{NAME}.json", record)
    _figure(out / f"{NAME}.png", models, results, chosen, pick)

    rows = [
        [m.label, f"{m.loss:.3f}", *(interval_text(r[k]) for k in SCORES)]
        for m, r in zip(models, results, strict=True)
    ]
    table = markdown_table(["model", "held-out loss", *(f"{v} %" for v in SCORES.values())], rows)
    trap = [r["trap"][0] for r in results]
    lowest = models[int(np.argmin(trap))]
    findings = [
        f"the trap score, model by model from the highest held-out loss to the lowest, is {shapes['by_loss']}: from "
        f"{interval_text(results[0]['trap'])}% ({models[0].label}) to a low of "
        f"{100 * min(trap):.1f}% ({lowest.label}) and {interval_text(results[-1]['trap'])}% "
        f"({models[-1].label}).",
        f"against size at {chosen[0].tokens / 1e6:.2g}M tokens it is {shapes['by_size']}: "
        + ", ".join(f"{m.shape} {interval_text(pick[m.label]['trap'])}%" for m in chosen)
        + ".",
        "what moves it: knowing the facts (no context) rises from "
        f"{interval_text(results[0]['knows'])}% to {interval_text(results[-1]['knows'])}%, "
        f"copying about a stranger (control) from {interval_text(results[0]['copies'])}% to "
        f"{interval_text(results[-1]['copies'])}%; the trap is passed as far as copying wins "
        "over memory.",
    ]
    write_page(
        out / f"{NAME}.md",
        "A trap task by scale: copy the text or recall the world?",
        "When the text contradicts a fact a model has memorised, does it follow the text, and "
        "does that get worse, then better, as the models grow?",
        table,
        f"{NAME}.png",
        [
            f"traps: {len(items)} facts drawn by their corpus weight (seed {cfg.seed}) of five "
            "relations (birthplace, home, pet, job, favourite colour); the contradicting "
            "sentence and the question use different paraphrases; a model prefers the object "
            "whose continuation (to the full stop) it gives the higher log-probability",
            f"models: the {len(models)} runs of the sweep `{cfg.sweep.out}` (and its held-out run "
            "where trained), ordered by their held-out loss, highest first",
            "intervals: 95% bootstrap over traps; a curve is U-shaped when its lowest point is "
            "inside it and both ends sit above that point's interval",
            f"machine load (1/5/15-minute averages) before: {before}, after: {load_average()}; "
            f"{(time.perf_counter() - start) / 60:.1f} minutes (no training)",
        ],
        findings,
        command=command,
    )
    return record


def _figure(
    path: Path,
    models: list[SweepModel],
    results: list[dict],
    chosen: list[SweepModel],
    pick: dict[str, dict],
) -> None:
    fig = new_figure(11, 4)
    left, right = fig.subplots(1, 2)
    loss = [m.loss for m in models]
    for i, (key, title) in enumerate(SCORES.items()):
        mean = [100 * r[key][0] for r in results]
        left.plot(loss, mean, "o-", color=f"C{i}", ms=3, label=title)
        left.fill_between(
            loss,
            [100 * r[key][1] for r in results],
            [100 * r[key][2] for r in results],
            color=f"C{i}",
            alpha=0.2,
        )
        right.plot(
            [m.params for m in chosen],
            [100 * pick[m.label][key][0] for m in chosen],
            "o-",
            color=f"C{i}",
            label=title,
        )
    left.set(xlabel="held-out loss (nats/token)", ylabel="% of traps", title="by held-out loss")
    left.invert_xaxis()
    right.set(
        xscale="log",
        xlabel="non-embedding parameters",
        title=f"by size at {chosen[0].tokens / 1e6:.2g}M tokens",
    )
    for ax in (left, right):
        ax.axhline(50, color="k", lw=0.8, ls=":")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)
