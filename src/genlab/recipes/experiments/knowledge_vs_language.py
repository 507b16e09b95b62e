"""Does a model learn its language from less text than its world knowledge?

The claim (Zhang et al., 2021, "When Do You Need Billions of Words of Pretraining Data?"; the
lecture's "big data" part): syntax and grammar are learned from a small fraction of the data
that factual knowledge needs. The experiment scores the scaling sweep's GPTs, each shape
trained on 16K to 4M tokens (the sweep's runs and shorter ones of the same shapes), on minimal
pairs (BLiMP's method: the model must give the acceptable sentence the higher probability):
grammar pairs (subject-verb agreement, word order, the article) and fact pairs (a true statement against the same sentence with a false object of
the same kind and length in tokens). For each shape it reports how many training tokens it
takes to reach 90% of the score its longest run reaches, counted from the floor that the same
shape scores untrained (its random initialisation, which need not be 50%).

    genlab experiment knowledge-vs-language
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genlab.core.io import atomic_write_json
from genlab.core.rng import seed_everything
from genlab.core.sweep import markdown_table
from genlab.data.tinyworld.minimal_pairs import GRAMMAR, MinimalPair, fact_pairs, grammar_pairs
from genlab.data.tinyworld.world import World
from genlab.data.tokenizer import Tokenizer
from genlab.nets.gpt import GPT
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
    default_sweep,
    extra_models,
    prefers,
    sweep_models,
)
from genlab.recipes.scaling import ScalingSweepConfig

NAME = "knowledge_vs_language"
PROBES = ("grammar", "facts")
SHARE = 0.9  # of the way from the untrained floor to the longest run's score


@dataclass
class KnowledgeLanguageConfig:
    """The pairs and the models."""

    n_pairs: int = 300  # per grammar phenomenon, and fact pairs
    # shorter runs of every swept shape (in OUT-early beside the sweep): grammar is learned
    # before the sweep's smallest budget
    early_tokens: tuple[int, ...] = (16_384, 32_768, 65_536, 131_072)
    seed: int = 0
    device: str = "auto"
    out_dir: str = str(DOCS_DIR)
    sweep: ScalingSweepConfig = field(default_factory=default_sweep)


def probe(
    model: GPT, tokenizer: Tokenizer, grammar: Sequence[MinimalPair], facts: Sequence[MinimalPair]
) -> dict[str, list[float]]:
    """Accuracy ``[mean, low, high]`` on each grammar phenomenon, grammar as a whole and facts."""
    out: dict[str, list[float]] = {}
    hits: dict[str, list[float]] = {}
    for name, pairs in (("grammar", grammar), ("facts", facts)):
        won = prefers(model, tokenizer, [p.good for p in pairs], [p.bad for p in pairs])
        hits[name] = [float(w) for w in won]
        for pair, w in zip(pairs, won, strict=True):
            key = pair.phenomenon if name == "grammar" else f"facts {pair.freq_class}"
            hits.setdefault(key, []).append(float(w))
    for key, values in hits.items():
        out[key] = interval(values)
    return out


def untrained(model: SweepModel, seed: int, device: str) -> tuple[GPT, Tokenizer]:
    """The shape's random initialisation (the sweep's seed), with the trained run's tokenizer."""
    trained, tokenizer = model.open(device)
    seed_everything(seed)
    return GPT(trained.config).to(next(trained.parameters()).device).eval(), tokenizer


def tokens_to_reach(tokens: Sequence[int], scores: Sequence[float], floor: float) -> float | None:
    """Training tokens at which the score first reaches ``SHARE`` of the way from ``floor`` to
    the last (longest) run's score, interpolated in log tokens between the runs around it (the
    first run's tokens when it is already there; ``None`` when the runs never rise above the
    floor)."""
    goal = floor + SHARE * (scores[-1] - floor)
    if scores[-1] <= floor:
        return None
    for i, (t, s) in enumerate(zip(tokens, scores, strict=True)):
        if s >= goal:
            if i == 0:
                return float(t)
            t0, s0 = tokens[i - 1], scores[i - 1]
            frac = (goal - s0) / (s - s0)
            return float(math.exp(math.log(t0) + frac * (math.log(t) - math.log(t0))))
    return float(tokens[-1])


def run_experiment(cfg: KnowledgeLanguageConfig, command: str = "") -> dict[str, Any]:
    before, start = load_average(), time.perf_counter()
    swept = [m for m in sweep_models(cfg.sweep) if not m.held_out]
    heads = {(p["layers"], p["width"]): p["heads"] for p in cfg.sweep.points()}
    early = [
        {"layers": layers, "heads": heads[(layers, width)], "width": width, "budget": budget}
        for layers, width in dict.fromkeys((m.layers, m.width) for m in swept)
        for budget in cfg.early_tokens
    ]
    models = extra_models(cfg.sweep, early, "early") + swept
    world = World(cfg.sweep.seed)
    tokenizer = Tokenizer.load(models[0].folder)
    grammar = grammar_pairs(world, cfg.n_pairs, cfg.seed)
    facts = fact_pairs(
        world, cfg.n_pairs, cfg.seed, length=lambda s: len(tokenizer.encode(" " + s))
    )
    scores = {m.label: probe(*m.open(cfg.device), grammar, facts) for m in models}
    shapes = list(dict.fromkeys(m.shape for m in sorted(models, key=lambda m: (m.layers, m.width))))
    floors, reach = {}, {}
    for shape in shapes:
        runs = sorted((m for m in models if m.shape == shape), key=lambda m: m.tokens)
        floors[shape] = probe(*untrained(runs[0], cfg.sweep.seed, cfg.device), grammar, facts)
        reach[shape] = {
            p: tokens_to_reach(
                [m.tokens for m in runs],
                [scores[m.label][p][0] for m in runs],
                floors[shape][p][0],
            )
            for p in PROBES
        }
    record = {
        "models": [m.summary() | scores[m.label] for m in models],
        "untrained": floors,
        "tokens_to_90pct": reach,
    }
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / f"{NAME}.json", record)
    _figure(out / f"{NAME}.png", models, scores, floors, shapes)

    columns = [*GRAMMAR, "grammar", "facts", "facts frequent", "facts rare"]
    rows = [
        [
            f"{shape}, untrained",
            *(interval_text(floors[shape].get(c, [math.nan] * 3)) for c in columns),
        ]
        for shape in shapes
    ] + [
        [m.label, *(interval_text(scores[m.label].get(c, [math.nan] * 3)) for c in columns)]
        for m in sorted(models, key=lambda m: (m.params, m.tokens))
    ]
    reach_rows = [
        [shape, *(_tokens_text(reach[shape][p]) for p in PROBES), _ratio_text(reach[shape])]
        for shape in shapes
    ]
    table = (
        markdown_table(["model", *(f"{c} %" for c in columns)], rows)
        + f"\n\n**Training tokens to reach {100 * SHARE:.0f}% of the longest run's score** "
        "(from the untrained floor)\n\n"
        + markdown_table(["shape", "grammar", "facts", "facts / grammar"], reach_rows)
    )
    ratios = [
        reach[s]["facts"] / reach[s]["grammar"]
        for s in shapes
        if reach[s]["facts"] and reach[s]["grammar"]
    ]
    rising = [s for s in shapes if _still_rising(models, scores, s)]
    findings = [
        "grammar pairs at the longest run of each shape: "
        + ", ".join(f"{s} {interval_text(_longest(models, scores, s)['grammar'])}%" for s in shapes)
        + "; fact pairs: "
        + ", ".join(f"{s} {interval_text(_longest(models, scores, s)['facts'])}%" for s in shapes)
        + ".",
        f"tokens to {100 * SHARE:.0f}% of the final score: facts need "
        + (
            f"{min(ratios):.1f}x to {max(ratios):.1f}x the tokens grammar needs"
            if ratios
            else "(not measurable: a probe never rose above its floor)"
        )
        + f" (the runs span {min(m.tokens for m in models):,} to {max(m.tokens for m in models):,} "
        "tokens; a figure at the first means 'by the first run')"
        + (
            f"; facts are still rising at the longest runs of {', '.join(rising)}, whose score "
            "stands in for the final one, so their figures are lower bounds."
            if rising
            else "."
        ),
        "frequent facts against rare ones at the longest runs: "
        + ", ".join(
            f"{s} {interval_text(_longest(models, scores, s).get('facts frequent', [math.nan] * 3))}"
            f"% vs {interval_text(_longest(models, scores, s).get('facts rare', [math.nan] * 3))}%"
            for s in shapes
        )
        + ".",
    ]
    write_page(
        out / f"{NAME}.md",
        "Knowledge vs language: how much text each needs",
        "Do the sweep's GPTs learn the corpus's grammar from far fewer tokens than its facts?",
        table,
        f"{NAME}.png",
        [
            f"pairs: {cfg.n_pairs} per grammar phenomenon ({', '.join(GRAMMAR)}) and {len(facts)} "
            f"fact pairs (seed {cfg.seed}), facts drawn uniformly over five relations "
            "(birthplace, home, pet, job, favourite colour), the false object of the same kind "
            "and as many tokens; a pair is won when the whole acceptable sentence has the higher "
            "log-probability",
            f"models: the {len(models)} runs of the sweep `{cfg.sweep.out}` (each a full run at "
            "its budget, warm-up and decay included) and {len(early)} shorter runs of the same shapes "
            f"({', '.join(f'{t:,}' for t in cfg.early_tokens)} tokens, in `{cfg.sweep.out}-early`), "
            "and each shape untrained",
            "intervals: 95% bootstrap over pairs; tokens to 90%: interpolated in log tokens",
            f"machine load (1/5/15-minute averages) before: {before}, after: {load_average()}; "
            f"{(time.perf_counter() - start) / 60:.1f} minutes (no training)",
        ],
        findings,
        command=command,
    )
    return record


def _still_rising(models: list[SweepModel], scores: dict, shape: str) -> bool:
    """Whether the facts score of the shape's longest run is above its second-longest run's
    interval: the curve has not levelled off."""
    runs = sorted((m for m in models if m.shape == shape), key=lambda m: m.tokens)
    last, before = scores[runs[-1].label]["facts"], scores[runs[-2].label]["facts"]
    return last[0] > before[2]


def _longest(models: list[SweepModel], scores: dict, shape: str) -> dict[str, list[float]]:
    return scores[max((m for m in models if m.shape == shape), key=lambda m: m.tokens).label]


def _tokens_text(tokens: float | None) -> str:
    return "never above the floor" if tokens is None else f"{tokens / 1e6:.2f}M"


def _ratio_text(reach: dict[str, float | None]) -> str:
    grammar, facts = reach["grammar"], reach["facts"]
    return f"{facts / grammar:.1f}x" if grammar and facts else "-"


def _figure(
    path: Path,
    models: list[SweepModel],
    scores: dict[str, dict],
    floors: dict[str, dict],
    shapes: list[str],
) -> None:
    fig = new_figure(11, 4)
    axes = fig.subplots(1, 2)
    for ax, probe_name in zip(axes, PROBES, strict=True):
        for i, shape in enumerate(shapes):
            runs = sorted((m for m in models if m.shape == shape), key=lambda m: m.tokens)
            values = np.array([scores[m.label][probe_name] for m in runs]) * 100
            ax.plot([m.tokens for m in runs], values[:, 0], "o-", color=f"C{i}", label=shape)
            ax.fill_between(
                [m.tokens for m in runs], values[:, 1], values[:, 2], color=f"C{i}", alpha=0.2
            )
            ax.axhline(100 * floors[shape][probe_name][0], color=f"C{i}", ls=":", lw=0.8)
        ax.set(
            xscale="log",
            xlabel="training tokens",
            ylabel="pairs won %",
            title=f"{probe_name} minimal pairs (dotted: untrained)",
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)
