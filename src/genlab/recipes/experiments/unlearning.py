"""Can the fact model forget two people and keep everything else it knows?

The claim TOFU measures (Maini et al., 2024, "TOFU: A Task of Fictitious Unlearning for LLMs"):
a few steps of fine-tuning against a forget set approach what retraining without it would give,
the forget set's answers fall to what a model that never saw them says, while the rest of what
the model knows stays. Here the model is the fact model (``recipes/fact_model.py``), which knows
every fact of its trained people and never saw those of its held-out people, so "never seen" is
measured, not assumed:

- **forget accuracy**: greedy answers to the forgotten people's questions (every fact, every
  phrasing); the goal is chance, the accuracy on the held-out people's questions;
- **retain accuracy**: the other trained people's; the goal is within 2 points of the original;
- **general accuracy**: the world's other facts (towns, countries, creatures, objects), never
  part of the retain set;
- **membership inference**: the loss attack's AUC (Yeom et al., 2018) between the forgotten
  people's answers and the held-out people's; the goal is 0.5, and an AUC far below 0.5 says the
  forgotten answers are now *less* likely than never-seen ones, which also gives them away.

Each method of :mod:`genlab.research.unlearning` (gradient ascent, gradient difference, NPO) is
tuned on ``val_sets`` validation forget sets (other people; their figures averaged) over a grid of
its settings, measured every ``eval_every`` steps: the setting chosen meets the goals in order (forget accuracy at chance,
retain accuracy kept, the AUC nearest 0.5; :func:`choose`). It is then run once on each of
``test_sets`` disjoint test forget sets, each from the original model, and reported with 95%
bootstrap intervals over facts (stratified by forget set).

    genlab experiment unlearning
"""

from __future__ import annotations

import itertools
import json
import random
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.core.device import pick_device
from genlab.core.errors import GenlabError, refuse_invalid
from genlab.core.io import atomic_write_json
from genlab.core.sweep import markdown_table
from genlab.data.tinyworld.world import Fact
from genlab.metrics.bootstrap import bootstrap_mean
from genlab.metrics.roc import auroc
from genlab.recipes.experiments.report import (
    DOCS_DIR,
    load_average,
    new_figure,
    save_figure,
    write_page,
)
from genlab.recipes.fact_model import (
    FACTS_FILE,
    FactModel,
    FactModelConfig,
    open_fact_model,
    person_facts,
    train_fact_model,
    world_facts,
)
from genlab.recipes.unlearning import encode, fact_questions, fact_scores
from genlab.research.membership import Pair, answer_nll
from genlab.research.unlearning import METHODS, UnlearnConfig, unlearn

NAME = "unlearning"
# preset -> the fact model's settings (cpu: the shared default model; toy: tiny, for tests)
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {},
    "toy": {
        "world_size": 10, "n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64,
        "vocab_size": 320, "steps": 300, "batch_size": 16, "lr": 3e-3,
    },
}  # fmt: skip
DEFAULT_MODEL = "runs/fact_model"


@dataclass
class UnlearningConfig:
    """The fact model, the forget sets, the methods and the grid they are tuned over."""

    preset: str = "cpu"  # cpu: runs/fact_model (the default); toy: a tiny one, in a temp folder
    model: str = "auto"  # fact model folder, trained there if missing; auto: the preset's
    methods: tuple[str, ...] = METHODS  # ga, graddiff, npo
    forget_size: int = 2  # people per forget set
    val_sets: int = 2  # validation forget sets the settings are chosen on (figures averaged)
    test_sets: int = 7  # disjoint test forget sets, each unlearned from the original model
    lrs: tuple[float, ...] = (3e-5, 1e-4, 3e-4)  # learning rates tried on validation
    retain_weights: tuple[float, ...] = (4.0,)  # retain-loss weights tried (graddiff, npo)
    betas: tuple[float, ...] = (1.0, 3.0)  # NPO inverse temperatures tried
    layer_sets: tuple[str, ...] = (
        "all",
        "mlp",
    )  # all, mlp (every block's MLP) or a parameter prefix
    max_steps: int = 100  # unlearning steps on validation
    eval_every: int = 20  # validation measures every this many steps: the trade-off curve
    batch_size: int = 8  # forget (and retain) questions per step
    max_retain_drop: float = 0.02  # the goal: retain accuracy within this of the original
    seed: int = 0  # the forget sets' draw and the unlearning batches
    device: str = "auto"  # where the fact model trains and unlearns
    out_dir: str = str(DOCS_DIR)  # where the page, its JSON and its figure go

    def __post_init__(self) -> None:
        checks = {
            "preset": self.preset in PRESETS,
            "model": bool(self.model.strip()),
            "methods": bool(self.methods) and set(self.methods) <= set(METHODS),
            "forget_size": self.forget_size >= 1,
            "val_sets": self.val_sets >= 1,
            "test_sets": self.test_sets >= 1,
            "lrs": bool(self.lrs) and all(x > 0 for x in self.lrs),
            "retain_weights": bool(self.retain_weights) and all(x > 0 for x in self.retain_weights),
            "betas": bool(self.betas) and all(x > 0 for x in self.betas),
            "layer_sets": bool(self.layer_sets) and all(self.layer_sets),
            "max_steps": self.max_steps >= 1,
            "eval_every": 1 <= self.eval_every <= self.max_steps,
            "batch_size": self.batch_size >= 1,
            "max_retain_drop": self.max_retain_drop >= 0,
        }
        refuse_invalid(self, checks, "unlearning setting")


def layer_names(fm: FactModel, layer_set: str) -> tuple[str, ...] | None:
    """``all`` -> None (every parameter), ``mlp`` -> every block's MLP, else the prefix itself."""
    if layer_set == "all":
        return None
    if layer_set == "mlp":
        return tuple(f"blocks.{i}.mlp" for i in range(len(fm.model.blocks)))
    return (layer_set,)


def draw_sets(fm: FactModel, cfg: UnlearningConfig) -> list[list[str]]:
    """The validation forget sets, then the test ones: disjoint people of a seeded draw."""
    count = cfg.val_sets + cfg.test_sets
    need = count * cfg.forget_size
    if need > len(fm.trained) - 1:
        raise GenlabError(
            f"{count} forget sets of {cfg.forget_size} people need {need} trained "
            f"people and one more to retain; the fact model has {len(fm.trained)}: lower "
            "--val-sets, --test-sets or --forget-size"
        )
    people = list(fm.trained)
    random.Random(f"genlab/experiment/unlearning/{cfg.seed}").shuffle(people)
    k = cfg.forget_size
    return [sorted(people[i * k : (i + 1) * k]) for i in range(count)]


@dataclass
class Task:
    """One forget set and what is measured around it."""

    persons: list[str]
    forget: list[Fact]
    retain: list[Fact]
    held: list[Fact]
    world: list[Fact]
    members: list[Pair]  # encoded forget questions (the attack's members)
    others: list[Pair]  # encoded held-out questions (its non-members)
    retain_pairs: list[Pair]  # encoded retain questions (what graddiff and NPO keep)


def task(fm: FactModel, persons: list[str]) -> Task:
    forget = [f for n in persons for f in person_facts(fm.world, n)]
    retain = [f for n in fm.trained if n not in persons for f in person_facts(fm.world, n)]
    held = [f for n in fm.holdout for f in person_facts(fm.world, n)]
    return Task(
        persons, forget, retain, held, world_facts(fm.world),
        encode(fm, fact_questions(fm, forget)), encode(fm, fact_questions(fm, held)),
        encode(fm, fact_questions(fm, retain)),
    )  # fmt: skip


@torch.inference_mode()
def measure(fm: FactModel, t: Task) -> dict[str, np.ndarray]:
    """Per-fact scores of every set (one greedy pass) and the attack's per-answer losses."""
    sets = {"forget": t.forget, "retain": t.retain, "world": t.world, "holdout": t.held}
    scores = np.array(fact_scores(fm, [f for facts in sets.values() for f in facts]))
    bounds = np.cumsum([0, *(len(f) for f in sets.values())])
    out = {k: scores[a:b] for k, a, b in zip(sets, bounds[:-1], bounds[1:], strict=True)}
    out["forget_nll"] = answer_nll(fm.model, t.members).cpu().numpy()
    out["holdout_nll"] = answer_nll(fm.model, t.others).cpu().numpy()
    return out


def summary(m: dict[str, np.ndarray]) -> dict[str, float]:
    """A measurement's means and the attack's AUC (a lower loss says member)."""
    return {
        "forget": float(m["forget"].mean()),
        "retain": float(m["retain"].mean()),
        "world": float(m["world"].mean()),
        "holdout": float(m["holdout"].mean()),
        "auc": auroc(-m["forget_nll"], -m["holdout_nll"]),
        "forget_nll": float(m["forget_nll"].mean()),
    }


def trajectory(
    fm: FactModel, original: dict[str, torch.Tensor], t: Task, ucfg: UnlearnConfig, every: int
) -> list[tuple[int, dict[str, np.ndarray]]]:
    """Unlearn ``t`` from the original weights by ``ucfg``, measuring every ``every`` steps
    (and at the last); the model is left at the last step."""
    fm.model.load_state_dict(original)
    points: list[tuple[int, dict[str, np.ndarray]]] = []

    def on_step(record: dict[str, Any]) -> None:
        if record["step"] % every == 0 or record["step"] == ucfg.steps:
            points.append((record["step"], measure(fm, t)))

    unlearn(fm.model, t.members, t.retain_pairs, ucfg, on_step=on_step)
    return points


def mean_summary(summaries: list[dict[str, float]]) -> dict[str, float]:
    """Several forget sets' figures as one: the mean of each."""
    return {k: float(np.mean([s[k] for s in summaries])) for k in summaries[0]}


def grid(cfg: UnlearningConfig, method: str) -> list[dict[str, Any]]:
    """The settings a method is tuned over (retain weights only where it has a retain loss,
    betas only for NPO)."""
    weights = cfg.retain_weights if method != "ga" else (0.0,)
    betas = cfg.betas if method == "npo" else (1.0,)
    return [
        {"lr": lr, "retain_weight": w, "beta": b, "layers": layers}
        for lr, w, b, layers in itertools.product(cfg.lrs, weights, betas, cfg.layer_sets)
    ]


def unlearn_config(
    fm: FactModel, cfg: UnlearningConfig, method: str, s: dict[str, Any], steps: int
) -> UnlearnConfig:
    return UnlearnConfig(
        method=method, steps=steps, lr=s["lr"], batch_size=cfg.batch_size, beta=s["beta"],
        retain_weight=s["retain_weight"], layers=layer_names(fm, s["layers"]), seed=cfg.seed,
    )  # fmt: skip


def choose(points: list[dict[str, Any]], chance: float, retain_floor: float) -> dict[str, Any]:
    """The goals in order: among the points whose forget accuracy is at most ``chance`` and
    whose retain accuracy is at least ``retain_floor``, the AUC nearest 0.5 (then fewer steps);
    with none keeping retain, the best retain accuracy at chance; with none at chance, the
    lowest forget accuracy (then the best retain accuracy)."""
    at_chance = [p for p in points if p["forget"] <= chance]
    kept = [p for p in at_chance if p["retain"] >= retain_floor]
    if kept:
        return min(kept, key=lambda p: (abs(p["auc"] - 0.5), p["step"]))
    if at_chance:
        return min(at_chance, key=lambda p: (-p["retain"], abs(p["auc"] - 0.5), p["step"]))
    return min(points, key=lambda p: (p["forget"], -p["retain"], p["step"]))


def auc_interval(
    pairs: list[tuple[np.ndarray, np.ndarray]], seed: int, n: int = 1000
) -> list[float]:
    """The mean AUC over forget sets with its 95% interval, resampling members and non-members
    within each set."""
    rng = np.random.default_rng(seed)
    est = float(np.mean([auroc(-p, -q) for p, q in pairs]))
    draws = [
        np.mean([auroc(-p[rng.integers(0, len(p), len(p))], -q[rng.integers(0, len(q), len(q))])
                 for p, q in pairs])
        for _ in range(n)
    ]  # fmt: skip
    low, high = np.quantile(draws, [0.025, 0.975])
    return [est, float(low), float(high)]


def interval(groups: list[np.ndarray], seed: int) -> list[float]:
    iv = bootstrap_mean([g.astype(float) for g in groups], seed=seed)
    return [iv.mean, iv.low, iv.high]


def report_row(
    before: list[dict[str, np.ndarray]], after: list[dict[str, np.ndarray]], seed: int
) -> dict[str, Any]:
    """One method on the test sets: each figure's mean over sets with its interval, and the
    paired changes of retain and world accuracy."""
    row: dict[str, Any] = {
        k: interval([m[k] for m in after], seed) for k in ("forget", "retain", "world", "holdout")
    }
    for k in ("retain", "world"):
        row[f"{k}_change"] = interval(
            [a[k] - b[k] for a, b in zip(after, before, strict=True)], seed
        )
    row["auc"] = auc_interval([(m["forget_nll"], m["holdout_nll"]) for m in after], seed)
    row["forget_nll"] = float(np.mean([m["forget_nll"].mean() for m in after]))
    row["per_set"] = [summary(m) for m in after]
    return row


def fact_model(cfg: UnlearningConfig, folder: Path) -> Path:
    """Train (or reuse) the preset's fact model in ``folder``."""
    fm_cfg = FactModelConfig(out=str(folder), device=cfg.device, **PRESETS[cfg.preset])
    if cfg.preset == "toy":
        fm_cfg = replace(fm_cfg, progress=False)
    return train_fact_model(fm_cfg)


def run_experiment(cfg: UnlearningConfig, command: str = "") -> dict[str, Any]:
    """Tune each method on validation, run it on every test set, write the page."""
    if cfg.model != "auto" or cfg.preset == "cpu":
        return _run(cfg, Path(DEFAULT_MODEL if cfg.model == "auto" else cfg.model), command)
    with tempfile.TemporaryDirectory(prefix="genlab-unlearning-") as tmp:
        return _run(cfg, Path(tmp) / "fact_model", command)


def _run(cfg: UnlearningConfig, folder: Path, command: str) -> dict[str, Any]:
    before_load, start = load_average(), time.perf_counter()
    fact_model(cfg, folder)
    fm = open_fact_model(folder, device=str(pick_device(cfg.device)))
    fm.model.eval()
    original = {k: v.detach().clone() for k, v in fm.model.state_dict().items()}
    sets = draw_sets(fm, cfg)
    vals = [task(fm, persons) for persons in sets[: cfg.val_sets]]
    val_before = mean_summary([summary(measure(fm, t)) for t in vals])
    chance, floor = val_before["holdout"], val_before["retain"] - cfg.max_retain_drop

    validation: dict[str, list[dict[str, Any]]] = {}
    chosen: dict[str, dict[str, Any]] = {}
    for method in cfg.methods:
        points = []
        for s in grid(cfg, method):
            ucfg = unlearn_config(fm, cfg, method, s, cfg.max_steps)
            runs = [trajectory(fm, original, t, ucfg, cfg.eval_every) for t in vals]
            for at in zip(*runs, strict=True):  # the same steps in every set
                merged = mean_summary([summary(m) for _, m in at])
                points.append({**s, "step": at[0][0], **merged})
        validation[method] = points
        chosen[method] = choose(points, chance, floor)

    tests = [task(fm, persons) for persons in sets[cfg.val_sets :]]
    fm.model.load_state_dict(original)
    test_before = [measure(fm, t) for t in tests]
    rows = {"original": report_row(test_before, test_before, cfg.seed)}
    for method in cfg.methods:
        c = chosen[method]
        ucfg = unlearn_config(fm, cfg, method, c, c["step"])
        after = [trajectory(fm, original, t, ucfg, c["step"])[-1][1] for t in tests]
        rows[method] = report_row(test_before, after, cfg.seed)
    fm.model.load_state_dict(original)

    meta = json.loads((folder / FACTS_FILE).read_text())
    record = {
        "config": asdict(cfg),
        "fact_model": {
            "path": str(folder),
            "config": meta["config"],
            "trained": len(fm.trained),
            "holdout": len(fm.holdout),
            "params": sum(p.numel() for p in fm.model.parameters()),
        },
        "validation_sets": sets[: cfg.val_sets],
        "test_sets": sets[cfg.val_sets :],
        "validation_before": val_before,
        "validation": validation,
        "chosen": chosen,
        "test": rows,
        "goals": {m: goals(rows[m], rows["original"], cfg) for m in cfg.methods},
        "minutes": (time.perf_counter() - start) / 60,
        "load_before": before_load,
        "load_after": load_average(),
    }
    write_outputs(cfg, record, command)
    return record


def goals(row: dict[str, Any], original: dict[str, Any], cfg: UnlearningConfig) -> dict[str, bool]:
    """The three goals on test: forget accuracy at most chance (the held-out people's accuracy
    of the original model), retain accuracy within ``max_retain_drop``, and 0.5 inside the
    attack AUC's interval."""
    return {
        "forget_at_chance": row["forget"][0] <= original["holdout"][0],
        "retain_kept": row["retain_change"][0] >= -cfg.max_retain_drop,
        "auc_near_half": row["auc"][1] <= 0.5 <= row["auc"][2],
    }


def pct(v: list[float]) -> str:
    return f"{100 * v[0]:.1f} [{100 * v[1]:.1f}, {100 * v[2]:.1f}]"


def pts(v: list[float]) -> str:
    return f"{100 * v[0]:+.1f} [{100 * v[1]:+.1f}, {100 * v[2]:+.1f}]"


def setting_text(c: dict[str, Any], method: str) -> str:
    parts = [f"lr {c['lr']:g}", f"{c['step']} steps"]
    if method != "ga":
        parts.append(f"retain weight {c['retain_weight']:g}")
    if method == "npo":
        parts.append(f"beta {c['beta']:g}")
    return ", ".join([*parts, f"layers {c['layers']}"])


def write_outputs(cfg: UnlearningConfig, record: dict[str, Any], command: str) -> None:
    """``unlearning.json``, ``unlearning.png`` and the page."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / f"{NAME}.json", record)
    figure(out / f"{NAME}.png", record, cfg)
    rows = record["test"]
    headers = [
        "model", "forget acc % [95%]", "retain acc % [95%]", "retain change, points [95%]",
        "general acc % [95%]", "general change, points", "held-out acc % (chance)",
        "attack AUC [95%]", "forget NLL / token", "setting (chosen on validation)",
    ]  # fmt: skip
    table_rows = [
        [
            name if name == "original" else f"**{name}**",
            pct(r["forget"]), pct(r["retain"]), pts(r["retain_change"]), pct(r["world"]),
            f"{100 * r['world_change'][0]:+.1f}", pct(r["holdout"]),
            f"{r['auc'][0]:.3f} [{r['auc'][1]:.3f}, {r['auc'][2]:.3f}]", f"{r['forget_nll']:.2f}",
            "-" if name == "original" else setting_text(record["chosen"][name], name),
        ]
        for name, r in ((n, rows[n]) for n in ("original", *cfg.methods))
    ]  # fmt: skip
    v = record["validation_before"]
    val_headers = ["method", "setting tried", "forget acc %", "retain acc %", "general acc %",
                   "attack AUC"]  # fmt: skip
    val_rows = []
    for method in cfg.methods:
        points = record["validation"][method]
        for s in grid(cfg, method):
            mine = [p for p in points if all(p[k] == x for k, x in s.items())]
            best = choose(mine, v["holdout"], v["retain"] - cfg.max_retain_drop)
            mark = "**" if best == record["chosen"][method] else ""
            val_rows.append([
                method, mark + setting_text(best, method) + mark, f"{100 * best['forget']:.1f}",
                f"{100 * best['retain']:.1f}", f"{100 * best['world']:.1f}", f"{best['auc']:.3f}",
            ])  # fmt: skip
    table = (
        f"**Test**: {cfg.test_sets} forget sets of {cfg.forget_size} people, each unlearned "
        "from the original model by the setting chosen on validation; means over the sets, "
        "95% bootstrap intervals over facts within each set (the attack's over answers)\n\n"
        + markdown_table(headers, table_rows)
        + f"\n\n**Validation** ({cfg.val_sets} forget sets, figures averaged; original: "
        f"forget {100 * v['forget']:.1f}%, retain {100 * v['retain']:.1f}%, general "
        f"{100 * v['world']:.1f}%, chance "
        f"{100 * v['holdout']:.1f}%, AUC {v['auc']:.3f}): each setting at its best step by the "
        "rule below, the chosen one in bold\n\n" + markdown_table(val_headers, val_rows)
    )
    fmr = record["fact_model"]
    fc = fmr["config"]
    write_page(
        out / f"{NAME}.md",
        "Unlearning: forgetting two people of the fact model (TOFU's measures)",
        "Can a few steps of fine-tuning make the fact model forget everything about two people "
        "(about 10% of those it was trained on) so that it answers their questions no better "
        "than those of people it never saw, keeps the other people's facts within "
        f"{100 * cfg.max_retain_drop:g} points, and leaves a loss-based membership-inference "
        "attack at AUC 0.5? Gradient ascent, gradient difference and NPO, measured as TOFU "
        "does (Maini et al., 2024).",
        table,
        f"{NAME}.png",
        [
            f"fact model: `{fmr['path']}`, {fc['n_layer']} layers x {fc['n_embd']} "
            f"({fmr['params'] / 1e6:.2f}M weights), {fc['steps']} steps on every fact of "
            f"{fmr['trained']} people (and the world's other facts), {fmr['holdout']} people "
            f"held out (world seed {fc['world_seed']}, {fc['world_size']} people)",
            f"forget sets: a seeded draw (seed {cfg.seed}) of disjoint sets of "
            f"{cfg.forget_size} trained people; validation "
            + "; ".join(", ".join(s) for s in record["validation_sets"])
            + "; test "
            + "; ".join(", ".join(s) for s in record["test_sets"]),
            "accuracy: greedy answer (to the first period) equal to the object, over every fact "
            "and all 3 phrasings of its question; a fact's score is its share of phrasings; "
            "general accuracy: the world's facts about towns, countries, creatures, objects",
            "attack: per-token NLL of each answer given its question, members the forgotten "
            "people's questions, non-members the held-out people's; AUC by "
            "`genlab.metrics.roc.auroc` (a lower loss says member)",
            f"unlearning: AdamW, constant lr, batch {cfg.batch_size} forget (+ {cfg.batch_size} "
            "retain) questions, gradient clip 1; retain set: every other trained person's "
            f"questions; grid on validation: lr {', '.join(f'{x:g}' for x in cfg.lrs)}, retain "
            f"weight {', '.join(f'{x:g}' for x in cfg.retain_weights)}, beta "
            f"{', '.join(f'{x:g}' for x in cfg.betas)}, layers {', '.join(cfg.layer_sets)}, "
            f"measured every {cfg.eval_every} of {cfg.max_steps} steps",
            "choice (on validation only; each test set is unlearned once, by the chosen "
            "setting): the goals in order: among the steps and settings whose forget accuracy "
            "is at most chance (the original's held-out accuracy) and whose retain accuracy is "
            f"within {100 * cfg.max_retain_drop:g} points of the original, the AUC nearest 0.5 "
            "(then fewer steps); with none keeping retain, the best retain accuracy at chance; "
            "with none at chance, the lowest forget accuracy",
            "goals on test: forget accuracy <= chance; retain change >= "
            f"-{100 * cfg.max_retain_drop:g} points; 0.5 inside the AUC's 95% interval",
            "`--layers` leaves every other tensor bit-identical: tested in "
            "`tests/research/test_unlearning.py::test_only_the_named_layers_change` and "
            "`tests/cli/test_unlearn_cli.py::test_layers_leave_every_other_tensor_bit_identical`",
            f"machine load (1/5/15-minute averages, as `uptime` shows) before: "
            f"{record['load_before']}, after: {record['load_after']}; "
            f"{record['minutes']:.1f} minutes for this call (the fact model's training not "
            "included when it was reused)",
        ],
        findings(record, cfg),
        command=command,
    )


def findings(record: dict[str, Any], cfg: UnlearningConfig) -> list[str]:
    """What the tables say, in sentences, from the numbers."""
    rows, o = record["test"], record["test"]["original"]
    lines = [
        f"The original model answers {100 * o['forget'][0]:.1f}% of the test forget sets' "
        f"questions, {100 * o['retain'][0]:.1f}% of the retain set's and "
        f"{100 * o['holdout'][0]:.1f}% of the never-seen people's (chance: the relations' "
        f"common answers); the attack tells the forget set from never-seen people at AUC "
        f"{o['auc'][0]:.3f}."
    ]
    names = {"forget_at_chance": "forget at chance", "retain_kept": "retain kept",
             "auc_near_half": "AUC near 0.5"}  # fmt: skip
    for method in cfg.methods:
        r, g = rows[method], record["goals"][method]
        missed = [names[k] for k, ok in g.items() if not ok]
        verdict = "all three goals met" if not missed else "missed: " + ", ".join(missed)
        lines.append(
            f"{method} ({setting_text(record['chosen'][method], method)}): forget "
            f"{100 * r['forget'][0]:.1f}%, retain change {100 * r['retain_change'][0]:+.1f} "
            f"points, general change {100 * r['world_change'][0]:+.1f} points, AUC "
            f"{r['auc'][0]:.3f}: {verdict}."
        )
        if r["auc"][2] < 0.5:
            lines.append(
                f"{method}'s AUC is below 0.5: the forgotten answers are now less likely than "
                "never-seen people's (over-forgetting), so an attacker who knows the direction "
                f"tells them apart at AUC {1 - r['auc'][0]:.3f}"
                + (" (mildly)." if r["auc"][0] > 0.4 else "; the loss rose far past chance.")
            )
    v = record["validation_before"]
    lines.append(
        f"What limits the figures: each method is tuned on {cfg.val_sets} validation forget "
        f"set(s) of {cfg.forget_size} people (a few dozen facts: one fact moves the accuracy "
        "by a point or more), so the choice on validation carries noise into test; chance itself moves "
        f"(the held-out people's accuracy is {100 * v['holdout']:.1f}% before and changes as "
        "the model unlearns); gradient ascent is unbounded, so forgetting and collapse come "
        "together; the world's facts are not in the retain set, so what graddiff loses there "
        "is not repaired. Levers tried on validation (the second table): lr, steps, retain "
        f"weight {', '.join(f'{x:g}' for x in cfg.retain_weights)}, NPO's beta "
        f"{', '.join(f'{x:g}' for x in cfg.betas)}, layers {', '.join(cfg.layer_sets)}."
    )
    return lines


def figure(path: Path, record: dict[str, Any], cfg: UnlearningConfig) -> None:
    """The validation trade-off (retain against forget accuracy along the steps of each
    setting), the attack's AUC along the steps, and the test figures per method."""
    fig = new_figure(15, 4.5)
    trade, auc_ax, test_ax = fig.subplots(1, 3)
    v = record["validation_before"]
    for i, method in enumerate(cfg.methods):
        points = record["validation"][method]
        c = record["chosen"][method]
        for s in grid(cfg, method):
            mine = [p for p in points if all(p[k] == x for k, x in s.items())]
            best = all(c[k] == x for k, x in s.items())
            xs, ys = (
                [v["forget"], *(p["forget"] for p in mine)],
                [v["retain"], *(p["retain"] for p in mine)],
            )
            style = dict(color=f"C{i}", alpha=1.0 if best else 0.3, lw=1.5 if best else 0.8)
            trade.plot(xs, ys, "o-", ms=3, label=f"{method}" if best else None, **style)
            steps = [0, *(p["step"] for p in mine)]
            auc_ax.plot(steps, [v["auc"], *(p["auc"] for p in mine)], "o-", ms=3,
                        label=f"{method}, lr {s['lr']:g}" if best else None, **style)  # fmt: skip
        trade.plot([c["forget"]], [c["retain"]], "*", ms=14, color=f"C{i}", mec="k")
    trade.axvline(v["holdout"], color="k", ls=":", lw=1, label="chance (held-out people)")
    trade.axhline(v["retain"] - cfg.max_retain_drop, color="k", ls="--", lw=1,
                  label=f"original retain - {100 * cfg.max_retain_drop:g} points")  # fmt: skip
    trade.set(xlabel="forget accuracy", ylabel="retain accuracy",
              title="trade-off along the steps (validation; star: chosen)")  # fmt: skip
    auc_ax.axhline(0.5, color="k", ls=":", lw=1)
    auc_ax.set(xlabel="unlearning step", ylabel="attack AUC", ylim=(-0.02, 1.02),
               title="membership inference (validation)")  # fmt: skip
    rows = record["test"]
    names = ["original", *cfg.methods]  # JSON may have sorted the keys
    metrics = [("forget", "forget acc"), ("retain", "retain acc"), ("world", "general acc"),
               ("auc", "attack AUC")]  # fmt: skip
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        vals = np.array([rows[name][k] for k, _ in metrics])
        x = np.arange(len(metrics)) + (j - (len(names) - 1) / 2) * width
        err = np.clip([vals[:, 0] - vals[:, 1], vals[:, 2] - vals[:, 0]], 0, None)
        color = "C7" if name == "original" else f"C{cfg.methods.index(name)}"
        test_ax.bar(x, vals[:, 0], width, yerr=err, capsize=2, color=color, label=name)
    test_ax.axhline(rows["original"]["holdout"][0], color="k", ls=":", lw=1, label="chance")
    test_ax.axhline(0.5, color="grey", lw=0.5)
    test_ax.set_xticks(np.arange(len(metrics)), [m for _, m in metrics])
    test_ax.set(ylim=(0, 1.05), title=f"test ({cfg.test_sets} forget sets, 95% intervals)")
    for ax in (trade, auc_ax, test_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)
