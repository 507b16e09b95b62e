"""Are larger models better calibrated, and does RLHF make a model less so?

The claims: a pretrained model's confidence in its answer tracks how often it is right, more so
as models grow (Kadavath et al., 2022, "Language Models (Mostly) Know What They Know"); after
RLHF the same model is much less calibrated (OpenAI, 2023, GPT-4 technical report, figure 8).
The experiment asks multiple-choice questions and takes a model's confidence as the
probability it gives its chosen option, normalised over the options, as both papers do:

- **by size**: the scaling sweep's GPTs complete TinyWorld fact statements ("The birthplace of
  Ada is"), every object of the fact's kind an option (24 towns, 16 creatures, the jobs, the
  colours); expected calibration error (ECE, 10 bins) and accuracy per model, reliability
  diagrams for one model per size at the same tokens;
- **before and after RLHF**: the demo's SFT model against its PPO and DPO models (``genlab
  demo``: the same size, pretraining and SFT), on the demo's held-out questions that have options
  (a review's two labels, the numbers of a list), each option scored as the assistant's whole
  answer in the chat template, said plainly ("negative") or the demo's way ("The answer is
  negative."), the two summed.

    genlab experiment calibration
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_json, read_json
from genlab.core.sweep import markdown_table
from genlab.data.tinyworld import Example
from genlab.data.tinyworld.relations import RELATIONS, cloze, ends_with_object
from genlab.data.tinyworld.world import World
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.methods.autoregressive.scoring import continuation_logprobs
from genlab.metrics.bootstrap import bootstrap_statistic
from genlab.metrics.calibration import expected_calibration_error, reliability
from genlab.nets.gpt import GPT
from genlab.recipes.chatgpt.evaluate import heldout_examples
from genlab.recipes.experiments.prompting_ladder import interval_text, value_interval_text
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
    score,
    sweep_models,
)
from genlab.recipes.scaling import ScalingSweepConfig

NAME = "calibration"
RELATIONS_ASKED = ("born_in", "lives_in", "pet", "job", "favourite_colour")
RLHF_MODELS = ("sft", "ppo", "dpo")  # before RLHF, then after it two ways
CHOICE_FAMILIES = ("sentiment", "max_list")  # the demo's families whose answers are options
N_BINS = 10


@dataclass
class CalibrationConfig:
    """The questions, the models and where the RLHF models are."""

    n_questions: int = 500  # fact questions for the sweep's models
    n_per_family: int = 200  # held-out demo questions per family with options
    demo: str = "runs/demo"  # a finished `genlab demo` folder (its sft, ppo and dpo models)
    seed: int = 0
    device: str = "auto"
    out_dir: str = str(DOCS_DIR)
    sweep: ScalingSweepConfig = field(default_factory=default_sweep)


@dataclass(frozen=True)
class Choice:
    """A question and its options as continuations; ``answer`` is the right one's index."""

    prompt: str
    options: tuple[str, ...]
    answer: int


def fact_choices(world: World, n: int, seed: int) -> list[Choice]:
    """``n`` fact statements cut before their object (facts drawn uniformly from
    ``RELATIONS_ASKED``), every object of the fact's kind an option."""
    rng = random.Random(f"calibration/{seed}")
    facts = [f for f in world.facts if f.relation in RELATIONS_ASKED]
    out = []
    for fact in rng.sample(facts, min(n, len(facts))):
        relation = RELATIONS[fact.relation]
        stem, cut = cloze(rng.choice([t for t in relation.statements if ends_with_object(t)]))
        stem = world.render(stem, fact.subject, "")
        objects = world.entities(relation.object_kind)
        options = tuple(" " + world.render(cut, fact.subject, o) for o in objects)
        out.append(Choice(stem, options, objects.index(fact.object)))
    return out


def option_probabilities(
    model: GPT, tokenizer: Tokenizer, choices: Sequence[Choice]
) -> list[np.ndarray]:
    """Each question's options' probabilities, normalised over its options, for a pretrained
    model reading plain text."""
    prompts = [c.prompt for c in choices for _ in c.options]
    options = [o for c in choices for o in c.options]
    totals = [float(lp.sum()) for lp in score(model, tokenizer, prompts, options)]
    return _normalised(totals, [len(c.options) for c in choices])


def _normalised(totals: list[float], sizes: list[int]) -> list[np.ndarray]:
    out, start = [], 0
    for size in sizes:
        logits = torch.tensor(totals[start : start + size])
        out.append(torch.softmax(logits, 0).numpy())
        start += size
    return out


def chat_choices(examples: Sequence[Example]) -> list[Choice]:
    """The demo's held-out questions with a few possible answers: a review's labels, a list's
    numbers."""
    out = []
    for e in examples:
        options = tuple(e.options) or tuple(e.meta["numbers"].split(", "))
        out.append(Choice(e.prompt, options, options.index(e.answer)))
    return out


def chat_probabilities(
    model: GPT, tokenizer: Tokenizer, choices: Sequence[Choice]
) -> list[np.ndarray]:
    """Each option scored as the assistant's whole answer (to the end of its turn), said plainly
    and as "The answer is X.", the two probabilities summed; normalised over the options."""
    contexts, answers = [], []
    for c in choices:
        prompt = tokenizer.render_prompt([{"role": "user", "content": c.prompt}])
        for option in c.options:
            for said in (option, f"The answer is {option}."):
                turn = [
                    {"role": "user", "content": c.prompt},
                    {"role": "assistant", "content": said},
                ]
                full = tokenizer.render_chat(turn, add_generation_prompt=False)[0]
                if full[: len(prompt)] != prompt:
                    raise GenlabError(
                        "the chat template renders a prompt that its answer does not extend"
                    )
                contexts.append(prompt)
                answers.append(full[len(prompt) :])
    lps = continuation_logprobs(model, contexts, answers)
    pairs = [
        float(torch.logsumexp(torch.stack([a.sum(), b.sum()]), 0))
        for a, b in zip(lps[::2], lps[1::2], strict=True)
    ]
    return _normalised(pairs, [len(c.options) for c in choices])


def summary(probs: Sequence[np.ndarray], choices: Sequence[Choice], seed: int) -> dict[str, Any]:
    """Accuracy and ECE with 95% bootstrap intervals over questions, and the reliability bins."""
    confidence = np.array([p.max() for p in probs])
    correct = np.array([int(p.argmax()) == c.answer for p, c in zip(probs, choices, strict=True)])
    ece = bootstrap_statistic(
        lambda i: expected_calibration_error(confidence[i], correct[i], N_BINS),
        len(choices),
        seed=seed,
    )
    accuracy = bootstrap_statistic(lambda i: float(correct[i].mean()), len(choices), seed=seed)
    bins = reliability(confidence, correct, N_BINS)
    return {
        "ece": [ece.mean, ece.low, ece.high],
        "accuracy": [accuracy.mean, accuracy.low, accuracy.high],
        "confidence": float(confidence.mean()),
        "bins": {
            "count": bins.count.tolist(),
            "confidence": np.nan_to_num(bins.confidence, nan=-1).tolist(),
            "accuracy": np.nan_to_num(bins.accuracy, nan=-1).tolist(),
        },
    }


def run_experiment(cfg: CalibrationConfig, command: str = "") -> dict[str, Any]:
    before, start = load_average(), time.perf_counter()
    demo = Path(cfg.demo)
    missing = [m for m in RLHF_MODELS if not (demo / m / "model.safetensors").is_file()]
    if missing:
        raise GenlabError(
            f"{demo} has no finished {', '.join(missing)} model(s): run `genlab demo --out {demo}` "
            "first (about 20 minutes on a laptop CPU) or give --demo a finished demo folder"
        )
    models = sweep_models(cfg.sweep)
    world = World(cfg.sweep.seed)
    facts = fact_choices(world, cfg.n_questions, cfg.seed)
    sizes: list[dict[str, Any]] = []
    for m in models:
        model, tokenizer = m.open(cfg.device)
        sizes.append(summary(option_probabilities(model, tokenizer, facts), facts, cfg.seed))

    demo_seed = _read_demo_seed(demo)
    examples = heldout_examples(demo_seed, CHOICE_FAMILIES, cfg.n_per_family, seed=demo_seed)
    chats = chat_choices(examples)
    rlhf = {}
    for name in RLHF_MODELS:
        model, tokenizer = load_gpt(demo / name, device=pick_device(cfg.device))
        rlhf[name] = summary(chat_probabilities(model, tokenizer, chats), chats, cfg.seed)

    record = {
        "by_size": [m.summary() | s for m, s in zip(models, sizes, strict=True)],
        "rlhf": rlhf,
    }
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / f"{NAME}.json", record)
    chosen = by_size(models)
    _figure(out / f"{NAME}.png", models, sizes, chosen, rlhf)

    size_rows = [
        [
            m.label,
            f"{m.loss:.3f}",
            interval_text(s["accuracy"]),
            f"{100 * s['confidence']:.1f}",
            value_interval_text(s["ece"]),
        ]
        for m, s in zip(models, sizes, strict=True)
    ]
    rlhf_rows = [
        [
            name,
            interval_text(r["accuracy"]),
            f"{100 * r['confidence']:.1f}",
            value_interval_text(r["ece"]),
        ]
        for name, r in rlhf.items()
    ]
    table = (
        "**By size** (fact questions, pretrained models)\n\n"
        + markdown_table(
            ["model", "held-out loss", "accuracy %", "mean confidence %", "ECE"], size_rows
        )
        + f"\n\n**Before and after RLHF** (`{demo}`: SFT, then PPO or DPO from it)\n\n"
        + markdown_table(["model", "accuracy %", "mean confidence %", "ECE"], rlhf_rows)
    )
    write_page(
        out / f"{NAME}.md",
        "Calibration by size, and before and after RLHF",
        "Does a model's confidence in its chosen option match how often it is right, more so "
        "as the model grows, and less so after RLHF?",
        table,
        f"{NAME}.png",
        [
            f"by size: {len(facts)} fact questions (seed {cfg.seed}; relations "
            f"{', '.join(RELATIONS_ASKED)}), every object of the kind an option; the "
            f"{len(models)} runs of the sweep `{cfg.sweep.out}` (and its held-out run where trained)",
            f"RLHF: {len(chats)} held-out questions of the demo's families "
            f"{', '.join(CHOICE_FAMILIES)} ({cfg.n_per_family} each), answers in the chat template",
            f"confidence: the chosen option's probability normalised over the options; ECE over "
            f"{N_BINS} equal-width bins; intervals: 95% bootstrap over questions (ECE's runs high: "
            "a resample's duplicates leave bins thinner and noisier, so an estimate can sit near "
            "its interval's low edge)",
            f"machine load (1/5/15-minute averages) before: {before}, after: {load_average()}; "
            f"{(time.perf_counter() - start) / 60:.1f} minutes (no training)",
        ],
        _findings(models, sizes, chosen, rlhf),
        command=command,
    )
    return record


def _read_demo_seed(demo: Path) -> int:
    info = demo / "demo.json"
    return int(read_json(info, what="demo settings").get("seed", 0)) if info.is_file() else 0


def _findings(
    models: list[SweepModel], sizes: list[dict], chosen: list[SweepModel], rlhf: dict
) -> list[str]:
    pick = {m.label: s for m, s in zip(models, sizes, strict=True)}
    smallest, largest = pick[chosen[0].label], pick[chosen[-1].label]
    lines = [
        f"at {chosen[0].tokens / 1e6:.2g}M tokens, ECE goes from {value_interval_text(smallest['ece'])} "
        f"({chosen[0].shape}) to {value_interval_text(largest['ece'])} ({chosen[-1].shape}), accuracy "
        f"from {interval_text(smallest['accuracy'])}% to {interval_text(largest['accuracy'])}%: "
        + (
            "the larger model is better calibrated (intervals apart)."
            if largest["ece"][2] < smallest["ece"][1]
            else "the larger model is worse calibrated (intervals apart)."
            if largest["ece"][1] > smallest["ece"][2]
            else "the intervals overlap: no difference shown."
        )
    ]
    sft = rlhf["sft"]
    for name in ("ppo", "dpo"):
        r = rlhf[name]
        verdict = (
            "worse calibrated than SFT (intervals apart)"
            if r["ece"][1] > sft["ece"][2]
            else "better calibrated than SFT (intervals apart)"
            if r["ece"][2] < sft["ece"][1]
            else "no different from SFT (intervals overlap)"
        )
        lines.append(
            f"{name.upper()}: ECE {value_interval_text(r['ece'])} against SFT's {value_interval_text(sft['ece'])}, "
            f"mean confidence {100 * r['confidence']:.1f}% against {100 * sft['confidence']:.1f}%: {verdict}."
        )
    return lines


def _figure(
    path: Path, models: list[SweepModel], sizes: list[dict], chosen: list[SweepModel], rlhf: dict
) -> None:
    fig = new_figure(13, 4)
    left, middle, right = fig.subplots(1, 3)
    loss = [m.loss for m in models]
    ece = np.array([s["ece"] for s in sizes])
    left.errorbar(
        loss,
        ece[:, 0],
        yerr=np.clip([ece[:, 0] - ece[:, 1], ece[:, 2] - ece[:, 0]], 0, None),
        fmt="o",
        ms=3,
    )
    left.invert_xaxis()
    left.set(xlabel="held-out loss (nats/token)", ylabel="ECE", title="calibration error by loss")
    pick = {m.label: s for m, s in zip(models, sizes, strict=True)}
    for ax, curves, title in (
        (
            middle,
            [(m.shape, pick[m.label]) for m in chosen],
            f"by size at {chosen[0].tokens / 1e6:.2g}M tokens",
        ),
        (right, list(rlhf.items()), "before (SFT) and after RLHF"),
    ):
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
        for i, (label, s) in enumerate(curves):
            bins = s["bins"]
            held = [j for j, c in enumerate(bins["count"]) if c > 0]
            ax.plot(
                [bins["confidence"][j] for j in held],
                [bins["accuracy"][j] for j in held],
                "o-",
                color=f"C{i}",
                ms=3,
                label=f"{label} (ECE {s['ece'][0]:.3f})",
            )
        ax.set(xlabel="confidence", ylabel="accuracy", title=title, xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=7)
    for ax in (left, middle, right):
        ax.grid(alpha=0.3)
    save_figure(fig, path)
