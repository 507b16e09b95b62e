"""Can one fact be changed without retraining, and without changing the others? ROME against
fine-tuning, on the fact model, one edit at a time.

The claim (Meng et al., 2022, "Locating and Editing Factual Associations in GPT"): facts are
recalled by middle-layer MLPs at the subject's last token (causal tracing shows it), and a
rank-one update there changes one fact so that its paraphrases follow (generalisation) while
other subjects' facts stay (specificity); fine-tuning the same layer either fails to generalise
(with a norm constraint, FT+L) or bleeds into neighbours (without). The issue's goals for ROME on
100 edits: efficacy >= 95%, paraphrase >= 80%, specificity >= 90%.

Edits are counterfactual: a known fact's object is replaced by another entity of the same kind.
Settings are chosen on validation edits (the CounterFact score, the harmonic mean of efficacy,
paraphrase and specificity); the test edits are measured once, each from the unedited model.

    genlab experiment editing
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import harmonic_mean
from typing import Any

import torch

from genlab.core.io import atomic_write_json
from genlab.data.tinyworld.world import Fact
from genlab.metrics.bootstrap import bootstrap_mean
from genlab.recipes.editing import (
    METHODS,
    Editor,
    EditSettings,
    known_facts,
    measure,
    neighbours,
    new_object,
    trace_facts,
)
from genlab.recipes.experiments.report import (
    DOCS_DIR,
    load_average,
    new_figure,
    save_figure,
    write_page,
)
from genlab.recipes.fact_model import (
    FactModel,
    FactModelConfig,
    open_fact_model,
    person_facts,
    train_fact_model,
    world_facts,
)
from genlab.research.causal_trace import ROLES, locate_layer

NAME = "editing"
GOALS = {"efficacy": 0.95, "paraphrase": 0.80, "specificity": 0.90}  # the issue's, for ROME
SCORES = ("efficacy", "paraphrase", "specificity", "answer_new", "subject_others")
LABELS = {"rome": "ROME", "ft": "FT (one layer)", "ft-l": "FT+L (constrained)"}
# the settings tried on the validation edits, per method
GRID: dict[str, list[dict[str, float]]] = {
    "rome": [{"clamp_norm": 4.0, "steps": 80, "kl_weight": w} for w in (0.5, 1.0)],
    "ft": [{"lr": lr} for lr in (3e-4, 1e-3)],
    "ft-l": [{"ft_linf": b} for b in (2e-3, 5e-3)],
}


@dataclass
class EditingConfig:
    """How many edits, traces and validation edits; the fact model edited."""

    edits: int = 100  # test edits per method
    val_edits: int = 40  # edits that choose each method's settings
    layer_edits: int = 20  # validation edits that score ROME at each layer
    trace_facts: int = 40  # facts causal tracing averages over
    trace_samples: int = 5  # noise draws per traced fact
    seed: int = 0  # which facts, which new objects, which prefixes
    device: str = "cpu"  # where the fact model edits
    out_dir: str = str(DOCS_DIR)
    fact_model: FactModelConfig = field(default_factory=FactModelConfig)


def candidates(fm: FactModel, seed: int) -> list[tuple[Fact, str]]:
    """Known facts (trained people's and the world's) in a seeded order, each with a new object;
    a fact whose relation has no other known object cannot be made counterfactual, and one with
    no neighbour (another subject of the relation whose object is not the new one) cannot be
    scored for specificity."""
    facts = [f for name in fm.trained for f in person_facts(fm.world, name)]
    facts = known_facts(fm, facts + world_facts(fm.world))
    objects: dict[str, set[str]] = {}
    for f in facts:
        objects.setdefault(f.relation, set()).add(f.object)
    editable = [f for f in facts if len(objects[f.relation]) > 1]
    rng = random.Random(f"genlab/editing/{seed}")
    rng.shuffle(editable)
    pairs = [(f, new_object(f, facts, rng)) for f in editable]
    return [(f, new) for f, new in pairs if neighbours(fm, f, new)]  # specificity needs some


def score(rows: list[dict[str, float]]) -> float:
    """CounterFact's score: the harmonic mean of mean efficacy, paraphrase and specificity."""
    means = [sum(r[k] for r in rows) / len(rows) for k in SCORES[:3]]
    return harmonic_mean(means) if min(means) > 0 else 0.0


def means(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: sum(r[k] for r in rows) / len(rows) for k in SCORES}


def summarise(rows: list[dict[str, float]], seed: int) -> dict[str, Any]:
    """Test edits' means with 95% bootstrap intervals, and CounterFact's score."""
    out: dict[str, Any] = {
        k: bootstrap_mean([r[k] for r in rows], seed=seed).to_dict()
        for k in (*SCORES, "fluency_change")
    }
    return out | {"score": score(rows)}


def margin(measured: dict[str, float]) -> float:
    """How far the worst of the three scores is above its goal (negative: a goal is missed)."""
    return min(measured[k] - goal for k, goal in GOALS.items())


def run_edits(
    fm: FactModel, editor: Editor, method: str, edits: list[tuple[Fact, str]]
) -> list[dict[str, float]]:
    """Each edit from the unedited model: edit, measure, restore the layer's weights exactly."""
    weight = fm.model.blocks[editor.settings.layer].mlp.proj.weight
    original = weight.detach().clone()
    base = measure(fm, edits[0][0], edits[0][1], editor.fluency_ids)["fluency_loss"]
    rows = []
    for fact, new in edits:
        editor.edit(fact, new, method)
        row = measure(fm, fact, new, editor.fluency_ids)
        row["fluency_change"] = row.pop("fluency_loss") - base
        rows.append(row)
        with torch.no_grad():
            weight.copy_(original)
    return rows


def with_setting(settings: EditSettings, method: str, point: dict[str, float]) -> EditSettings:
    if method == "rome":
        return replace(settings, rome=replace(settings.rome, **point))
    if method == "ft":
        return replace(settings, ft=replace(settings.ft, **point))
    return replace(settings, **point)


def run_experiment(cfg: EditingConfig, command: str = "") -> dict[str, Any]:
    """Trace, choose each method's settings on validation edits, measure the test edits."""
    before, start = load_average(), time.perf_counter()
    fm = open_fact_model(train_fact_model(cfg.fact_model), device=cfg.device)
    pool = candidates(fm, cfg.seed)
    n_trace = min(cfg.trace_facts, len(pool))
    cases, traces, effects = trace_facts(fm, [f for f, _ in pool[:n_trace]], cfg.trace_samples)
    layer = locate_layer(effects)
    val = pool[: cfg.val_edits]
    test = pool[cfg.val_edits : cfg.val_edits + cfg.edits]

    base = EditSettings(layer=layer, seed=cfg.seed)
    keys: dict[int, torch.Tensor] = {}  # C^-1 by layer, shared by every editor
    chosen: dict[str, dict[str, float]] = {}
    validation: dict[str, list[dict[str, Any]]] = {}
    results: dict[str, Any] = {}
    ablation: dict[str, Any] = {}
    for method in METHODS:
        tried = []
        for point in GRID[method]:
            editor = Editor(fm, with_setting(base, method, point), keys)
            rows = run_edits(fm, editor, method, val)
            tried.append({"setting": point, "score": score(rows), **means(rows)})
        validation[method] = tried
        # settings that meet every goal on validation by the widest margin, else the best score
        best = max(
            tried, key=lambda t: (margin(t) >= 0, margin(t) if margin(t) >= 0 else t["score"])
        )
        chosen[method] = best["setting"]
        editor = Editor(fm, with_setting(base, method, chosen[method]), keys)
        rows = run_edits(fm, editor, method, test)
        results[method] = summarise(rows, cfg.seed)
        if method == "rome":  # the one-thing ablation: the same edit without the statements
            editor = Editor(fm, replace(editor.settings, statements=False), keys)
            ablation = summarise(run_edits(fm, editor, method, test), cfg.seed)

    rome_by_layer = {}
    for at in range(len(fm.model.blocks) - 1):
        at_layer = replace(base, layer=at, rome=replace(base.rome, **chosen["rome"]))
        editor = Editor(fm, at_layer, keys)
        rome_by_layer[at] = score(run_edits(fm, editor, "rome", val[: cfg.layer_edits]))

    report = {
        "layer": layer,
        "effects": effects.tolist(),
        "roles": list(ROLES),
        "clean": sum(t.clean for t in traces) / len(traces),
        "corrupted": sum(t.corrupted for t in traces) / len(traces),
        "chosen": chosen,
        "validation": validation,
        "rome_by_layer_validation": rome_by_layer,
        "results": results,
        "rome_question_only": ablation,
        "edits": len(test),
        "val_edits": len(val),
        "known_facts": len(pool),
        "model": {
            "n_layer": fm.model.config.n_layer,
            "n_embd": fm.model.config.n_embd,
            "people": fm.world.size,
        },
    }
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / f"{NAME}.json", report)
    _figure(report, out / f"{NAME}.png")
    _page(cfg, report, out, command, before, start)
    return report


def _figure(report: dict[str, Any], path: Path) -> None:
    fig = new_figure(11, 4)
    left, right = fig.subplots(1, 2, width_ratios=(1.1, 1))
    effects = torch.tensor(report["effects"])
    image = left.imshow(effects.T.numpy(), cmap="Purples", aspect="auto")
    left.set_yticks(range(len(ROLES)), ROLES, fontsize=8)
    left.set_xticks(range(effects.size(0)))
    left.set_xlabel("layer whose MLP output is restored")
    left.set_title("causal tracing: indirect effect on p(answer)")
    fig.colorbar(image, ax=left)
    width = 0.25
    for i, method in enumerate(METHODS):
        means = [report["results"][method][k]["mean"] for k in SCORES[:3]]
        right.bar([x + i * width for x in range(3)], means, width, label=LABELS[method])
    right.set_xticks([x + width for x in range(3)], SCORES[:3])
    for x, goal in enumerate(GOALS.values()):  # ROME's goals, over its bars
        right.plot([x - width / 2, x + width / 2], [goal, goal], "k--", lw=1)
    right.set_ylim(0, 1.25)
    right.set_title(f"{report['edits']} test edits (dashes: ROME's goals)")
    right.legend(fontsize=8, ncol=3, loc="upper center")
    save_figure(fig, path)


def _page(
    cfg: EditingConfig, report: dict[str, Any], out: Path, command: str, before: str, start: float
) -> None:
    header = (
        "| method | settings | efficacy | paraphrase | specificity | greedy answer is new | "
        "subject's other facts | fluency loss change | score |"
    )
    lines = [header, "|" + " --- |" * 9]

    def row(label: str, setting: dict[str, float], r: dict[str, Any]) -> str:
        iv = [
            f"{100 * r[k]['mean']:.1f} [{100 * r[k]['low']:.1f}, {100 * r[k]['high']:.1f}]"
            for k in SCORES
        ]
        named = ", ".join(f"{k} {v:g}" for k, v in setting.items())
        return (
            f"| {label} | {named} | "
            + " | ".join(iv)
            + f" | {r['fluency_change']['mean']:+.4f} | {100 * r['score']:.1f} |"
        )

    for method in METHODS:
        lines.append(row(LABELS[method], report["chosen"][method], report["results"][method]))
        if method == "rome":
            lines.append(
                row(
                    "ROME, edit question only",
                    report["chosen"]["rome"],
                    report["rome_question_only"],
                )
            )
    lines += [
        "",
        f"**Validation** ({report['val_edits']} edits per setting; the chosen setting meets "
        "the goals by the widest margin if any meets them, else has the best score)",
        "",
        "| method | settings | efficacy | paraphrase | specificity | greedy answer is new | "
        "subject's other facts | score |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for method in METHODS:
        for t in report["validation"][method]:
            setting = ", ".join(f"{k} {v:g}" for k, v in t["setting"].items())
            lines.append(
                f"| {LABELS[method]} | {setting} | "
                + " | ".join(f"{100 * t[k]:.1f}" for k in SCORES)
                + f" | {100 * t['score']:.1f} |"
            )
    rome = report["results"]["rome"]
    goals = GOALS
    met = [k for k, g in goals.items() if rome[k]["mean"] >= g]
    missed = [
        f"{k} {100 * rome[k]['mean']:.1f}% (goal {100 * g:.0f}%)"
        for k, g in goals.items()
        if k not in met
    ]
    by_layer = ", ".join(
        f"layer {k}: {100 * v:.1f}" for k, v in report["rome_by_layer_validation"].items()
    )
    findings = [
        f"Causal tracing over {cfg.trace_facts} known facts: the answer's probability is "
        f"{report['clean']:.2f} clean and {report['corrupted']:.2f} with the subject corrupted; "
        f"restoring layer {report['layer']}'s MLP output at the last subject token brings back "
        "the most (left of the figure), so ROME edits that layer.",
        f"ROME's validation score by layer: {by_layer} (the traced layer "
        + (
            "is"
            if max(report["rome_by_layer_validation"], key=report["rome_by_layer_validation"].get)
            == report["layer"]
            else "is not"
        )
        + " the best one).",
        "ROME's goals: " + ("all met" if not missed else "missed: " + "; ".join(missed)) + ".",
        "Writing the edit on the statements as well as the question: paraphrase "
        f"{100 * report['rome_question_only']['paraphrase']['mean']:.1f}% -> "
        f"{100 * rome['paraphrase']['mean']:.1f}%, efficacy "
        f"{100 * report['rome_question_only']['efficacy']['mean']:.1f}% -> "
        f"{100 * rome['efficacy']['mean']:.1f}%. The questions here name the relation before "
        "the subject, so the subject's key at layer "
        f"{report['layer']} already carries the question's words and a value fitted to one "
        "question is read differently after another; ROME's GPT-2 prompts put the subject "
        "first.",
    ]
    write_page(
        out / f"{NAME}.md",
        "Editing one fact: ROME against fine-tuning",
        "Can one fact of a trained model be changed in place so that its paraphrases follow "
        "and other subjects' facts do not? Scores in % with 95% bootstrap intervals over the "
        "test edits.",
        "\n".join(lines),
        f"{NAME}.png",
        [
            f"fact model: {report['model']['n_layer']} layers x {report['model']['n_embd']}, a "
            f"world of {report['model']['people']} people ({report['known_facts']} facts known in the edit phrasing)",
            f"{report['edits']} test edits and {report['val_edits']} validation edits per method, "
            "each from the unedited model; new object: the object of another known fact of the "
            "same relation (CounterFact's rule)",
            "what each edit is written on: the edit question and the relation's statements cut "
            "before the object (`The birthplace of Tenu is`), the sentences the model learnt "
            "its facts from; ROME also after 5 prefixes of trained text; the FT rows get the "
            'same prompts; "ROME, edit question only" is the chosen ROME without the '
            "statements (one thing differs)",
            "efficacy: log p(new) > log p(old) after the edit prompt (question phrasing 1 of 3); "
            "paraphrase: the same on phrasings 2 and 3 (never seen by the edit); specificity: "
            "10 other subjects asked the same question still prefer their own object to the new "
            "one; greedy answer and the subject's other facts by greedy decoding; fluency: "
            "change of the mean loss on 200 trained texts",
            "settings chosen on the validation edits (disjoint from the test edits): the one "
            "meeting the issue's three goals by the widest margin (the worst score's distance "
            "above its goal), else the best score (the harmonic mean of efficacy, paraphrase "
            "and specificity, CounterFact's)",
            f"load {before} before; {time.perf_counter() - start:.0f} s in all",
        ],
        findings,
        command=command,
    )
