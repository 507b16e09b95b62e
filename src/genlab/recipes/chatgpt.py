"""The ChatGPT recipe end to end on TinyWorld: pretrain, SFT, reward model, PPO and DPO, measured.

InstructGPT (Ouyang et al., 2022) builds an assistant in steps, and so does this recipe, each a
run folder under ``out``:

1. ``pretrain``: a GPT learns to continue text: TinyWorld's corpus (the world's facts, stories,
   worked sums, dialogues) plus task text (solved questions of the tuned families, train split,
   in a plain ``Question: ... Answer: ...`` layout), so it knows the world and the skills.
2. ``sft``: fine-tuned on demonstrations through the chat template (``genlab.align.sft``). The
   demonstrations are correct but of mixed style on purpose (terse, one sentence, worked steps,
   padded with pleasantries), so SFT imitates a mix.
3. ``reward``: a reward model learns the judge's preferences from comparisons with 10% of the
   labels flipped, as human raters disagree (``genlab.align.reward``).
4. ``ppo``: the SFT model is optimised against the reward model with PPO on a KL leash to the SFT
   model (``genlab.align.ppo``), and, as the alternative without a reward model,
   ``dpo``: direct preference optimisation on the same comparisons (``genlab.align.dpo``).

Then every stage answers the same held-out prompts and is scored by TinyWorld's checkers and
judge (:mod:`genlab.recipes.evaluate`): the pretrained model few-shot prompted, SFT, PPO and DPO
in one table, with win rates against SFT, the KL to SFT and the reward model's view. The run
writes ``report.md``, ``report.json``, ``answers.jsonl`` (every answer) and plots; the goals
below are measured and reported as met or not, never asserted.

Presets: ``demo`` (about 15 minutes on 2 CPU cores) and ``smoke`` (well under a minute, for
tests). A run interrupted between stages continues with ``resume=True``: finished stages are
kept.
"""

from __future__ import annotations

import io
import json
import os
import platform
import random
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from genlab.align.data import DEFAULT_FAMILIES, write_jsonl
from genlab.align.dpo import DPOConfig, dpo
from genlab.align.ppo import RLHFConfig, rlhf
from genlab.align.reward import RewardConfig, load_reward_model, train_reward
from genlab.align.sft import SFTConfig, sft
from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes, atomic_write_json, read_json
from genlab.core.logging import read_metrics
from genlab.core.train_config import TrainConfig
from genlab.data.tinyworld import World, make_examples
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.recipes.evaluate import (
    EvalSettings,
    StageAnswers,
    answer_all,
    heldout_examples,
    qa_text,
    summarize,
    transcript,
)
from genlab.recipes.pretrain import PretrainConfig, pretrain

STAGES = ("pretrain", "sft", "reward", "ppo", "dpo")
MODELS = ("pretrained", "sft", "ppo", "dpo")  # evaluated, in the table's order
STAGE_FILE = "stage.json"  # a finished stage's metrics and time, in its folder
RUN_FILE = "demo.json"  # the preset, seed and families of the run in a folder
GOALS = {
    "sft_accuracy": 0.80,
    "reward_accuracy": 0.90,
    "win_rate": 0.65,
}


@dataclass
class ChatGPTConfig:
    """Every stage's settings; ``demo_config``/``smoke_config`` fill them for a preset."""

    out: str = "runs/demo"
    preset: str = "demo"
    seed: int = 0
    families: tuple[str, ...] = DEFAULT_FAMILIES
    corpus_chars: int = 1_500_000  # TinyWorld corpus for pretraining
    task_examples: int = 1500  # solved train-split questions per family in the pretraining text
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    ppo: RLHFConfig = field(default_factory=RLHFConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    eval: EvalSettings = field(default_factory=EvalSettings)
    progress: bool = True


def _train(max_steps: int, lr: float, batch_size: int, warmup: int, **kw: Any) -> TrainConfig:
    """A trainer config for one stage: evaluation at the end, one checkpoint, plots on."""
    return TrainConfig(
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup,
        eval_every=kw.pop("eval_every", 0),
        eval_batches=kw.pop("eval_batches", 4),
        checkpoint_every=0,
        keep_last=1,
        log_every=kw.pop("log_every", 10),
        **kw,
    )


def demo_config(out: str = "runs/demo", seed: int = 0, progress: bool = True) -> ChatGPTConfig:
    """The demo preset: a ~1M-parameter GPT through every stage in about 15 minutes on 2 cores."""
    common = {"seed": seed, "progress": progress, "tensorboard": False, "weight_decay": 0.0}
    return ChatGPTConfig(
        out=out,
        preset="demo",
        seed=seed,
        corpus_chars=1_500_000,
        task_examples=1500,
        pretrain=PretrainConfig(
            preset="mini",  # 4 layers, 4 heads, 128 wide
            block_size=256,
            vocab_size=1024,
            train=_train(600, 2e-3, 32, 50, eval_every=100, **{**common, "weight_decay": 0.1}),
        ),
        sft=SFTConfig(
            n_train=12000,
            n_eval=300,
            train=_train(400, 1e-3, 32, 10, eval_every=100, **common),
        ),
        reward=RewardConfig(
            n_pairs=6000,
            n_eval_pairs=300,
            train=_train(300, 3e-4, 32, 20, eval_every=100, **common),
        ),
        ppo=RLHFConfig(
            steps=60,
            batch_size=32,
            minibatch_size=16,
            ppo_epochs=2,
            lr=2e-5,
            kl_coef=0.2,
            max_new_tokens=48,
            seed=seed,
            progress=progress,
            tensorboard=False,
        ),
        dpo=DPOConfig(
            n_pairs=4000,
            n_eval_pairs=200,
            beta=0.1,
            train=_train(125, 5e-5, 32, 10, eval_every=50, **common),
        ),
        eval=EvalSettings(n_per_family=50, samples=2, seed=seed),
        progress=progress,
    )


def smoke_config(out: str = "runs/smoke", seed: int = 0, progress: bool = False) -> ChatGPTConfig:
    """The smoke preset: every stage for a few steps on a tiny model, to test the plumbing."""
    common = {"seed": seed, "progress": progress, "tensorboard": False}
    cfg = demo_config(out, seed, progress)
    return replace(
        cfg,
        preset="smoke",
        corpus_chars=30_000,
        task_examples=20,
        pretrain=replace(
            cfg.pretrain,
            preset="tiny",
            block_size=128,
            vocab_size=300,
            train=_train(10, 3e-3, 8, 2, eval_batches=1, **common),
        ),
        sft=replace(cfg.sft, n_train=60, n_eval=8, train=_train(4, 1e-3, 8, 1, **common)),
        reward=replace(
            cfg.reward, n_pairs=40, n_eval_pairs=8, train=_train(4, 1e-3, 8, 1, **common)
        ),
        ppo=replace(
            cfg.ppo,
            steps=2,
            batch_size=8,
            minibatch_size=8,
            ppo_epochs=1,
            max_new_tokens=12,
            prompts_per_family=4,
        ),
        dpo=replace(cfg.dpo, n_pairs=40, n_eval_pairs=8, train=_train(4, 1e-3, 8, 1, **common)),
        eval=EvalSettings(n_per_family=2, samples=1, max_new_tokens=16, shots=1, seed=seed),
    )


PRESETS: dict[str, Callable[..., ChatGPTConfig]] = {"demo": demo_config, "smoke": smoke_config}


def preset_config(name: str, out: str, seed: int = 0, progress: bool = True) -> ChatGPTConfig:
    """The named preset's configuration for a run in ``out``."""
    if name not in PRESETS:
        raise GenlabError(f"unknown demo preset '{name}'; choose one of {', '.join(PRESETS)}")
    return PRESETS[name](out=out, seed=seed, progress=progress)


# Data ---------------------------------------------------------------------------------------------


def pretraining_documents(cfg: ChatGPTConfig) -> list[str]:
    """TinyWorld's corpus plus task text: train-split questions of the tuned families, a few per
    document, answered half the time with worked steps and half with the bare sentence, in the
    layout the few-shot prompts use; all shuffled."""
    world = World(cfg.seed)
    docs = list(world.corpus(n_chars=cfg.corpus_chars, seed=cfg.seed))
    rng = random.Random(f"genlab/chatgpt/pretrain/{cfg.seed}")
    for family in cfg.families:
        solved = make_examples(world, family, cfg.task_examples, "train", cfg.seed + 7)
        i = 0
        while i < len(solved):
            k = rng.randint(3, 6)
            docs.append(
                "\n\n".join(
                    qa_text(
                        e.prompt,
                        e.worked_solution if rng.random() < 0.5 else f"The answer is {e.answer}.",
                    )
                    for e in solved[i : i + k]
                )
            )
            i += k
    rng.shuffle(docs)
    return docs


# Stages -------------------------------------------------------------------------------------------


def _stage_configs(cfg: ChatGPTConfig) -> dict[str, Any]:
    """Each stage's config wired to the previous stages' folders, the world and the families."""
    root = Path(cfg.out)
    folders = {s: str(root / s) for s in STAGES}
    data = root / "data" / "pretrain.jsonl"
    families = ",".join(cfg.families)
    tuned = {"families": families, "world_seed": cfg.seed}
    return {
        "pretrain": replace(
            cfg.pretrain, out=folders["pretrain"], data=str(data), text_field="text"
        ),
        "sft": replace(cfg.sft, base=folders["pretrain"], out=folders["sft"], **tuned),
        "reward": replace(cfg.reward, base=folders["sft"], out=folders["reward"], **tuned),
        "ppo": replace(
            cfg.ppo, policy=folders["sft"], reward=folders["reward"], out=folders["ppo"], **tuned
        ),
        "dpo": replace(cfg.dpo, policy=folders["sft"], out=folders["dpo"], **tuned),
    }


def _run_stage(name: str, stage_cfg: Any, resume: bool) -> dict[str, float]:
    if name == "pretrain":
        return pretrain(stage_cfg, resume=resume)
    if name == "sft":
        return sft(stage_cfg, resume=resume)
    if name == "reward":
        return train_reward(stage_cfg, resume=resume)
    if name == "ppo":
        return rlhf(stage_cfg, resume=resume)
    return dpo(stage_cfg, resume=resume)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_stages(cfg: ChatGPTConfig, resume: bool = False) -> dict[str, dict[str, Any]]:
    """Train the five stages in order; return each stage's metrics and seconds.

    With ``resume`` a stage whose folder holds a finished record (``stage.json``) is kept and an
    interrupted one continues from its last checkpoint; without it, a folder that already holds
    a run is an error, so nothing is overwritten by accident.
    """
    root = Path(cfg.out)
    record = {"preset": cfg.preset, "seed": cfg.seed, "families": list(cfg.families)}
    if (root / RUN_FILE).is_file():
        before = read_json(root / RUN_FILE, "demo record")
        if resume and before != record:
            raise GenlabError(
                f"{root} holds a demo run with {before}, not {record}: resume it with the same "
                "--preset and --seed, or choose another --out"
            )
    atomic_write_json(root / RUN_FILE, record)
    configs = _stage_configs(cfg)
    results: dict[str, dict[str, Any]] = {}
    for n, name in enumerate(STAGES, 1):
        folder = root / name
        if resume and (folder / STAGE_FILE).is_file():
            results[name] = read_json(folder / STAGE_FILE, "stage record")
            _say(f"[{n}/{len(STAGES)}] {name}: kept from the previous run")
            continue
        if not resume and folder.exists() and any(folder.iterdir()):
            raise GenlabError(
                f"{folder} already holds a run: pass --resume to keep finished stages, or "
                "choose another --out"
            )
        _say(f"[{n}/{len(STAGES)}] {name}")
        tic = time.perf_counter()
        if name == "pretrain" and not Path(configs["pretrain"].data).is_file():
            write_jsonl(configs["pretrain"].data, ({"text": d} for d in pretraining_documents(cfg)))
        metrics = _run_stage(name, configs[name], resume)
        done = {"seconds": time.perf_counter() - tic, "metrics": metrics}
        atomic_write_json(folder / STAGE_FILE, done)
        results[name] = done
    return results


# Evaluation ---------------------------------------------------------------------------------------


def evaluate_stages(cfg: ChatGPTConfig) -> tuple[dict[str, Any], list[dict], list[dict]]:
    """Answers of the four models to the held-out prompts, scored; returns (summary by model,
    a transcript of a few prompts, every answer as records)."""
    root = Path(cfg.out)
    device = pick_device("auto")
    settings = cfg.eval
    examples = heldout_examples(cfg.seed, cfg.families, settings.n_per_family, settings.seed)
    reward_model = load_reward_model(root / "reward", device)
    reference, tokenizer = load_gpt(root / "sft", device)
    answers: dict[str, StageAnswers] = {}
    folders = {"pretrained": "pretrain", "sft": "sft", "ppo": "ppo", "dpo": "dpo"}
    for name in MODELS:
        model, _ = load_gpt(root / folders[name], device)
        answers[name] = answer_all(
            model,
            tokenizer,
            examples,
            settings,
            few_shot_world=cfg.seed if name == "pretrained" else None,
            reference=reference,
            reward_model=reward_model,
        )
    summary = {
        name: summarize(examples, a, None if name == "sft" else answers["sft"])
        for name, a in answers.items()
    }
    summary["sft"]["kl_to_sft"] = 0.0
    records = [
        {
            "family": e.family,
            "prompt": e.prompt,
            "reference": e.answer,
            **{
                name: {"greedy": a.greedy[i], "sampled": a.sampled[i]}
                for name, a in answers.items()
            },
        }
        for i, e in enumerate(examples)
    ]
    return summary, transcript(examples, answers, 2 * len(cfg.families)), records


# Goals, plots and the report ----------------------------------------------------------------------


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
    """``plots/losses.png`` (every stage's training curve), ``plots/ppo.png`` (reward and KL per
    PPO iteration) and ``plots/accuracy_by_family.png``; returns their paths relative to root."""
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
        ax.set(title=title, xlabel="iteration", ylabel=label)
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


def _machine() -> dict[str, Any]:
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


def run_chatgpt(cfg: ChatGPTConfig, resume: bool = False, command: str = "") -> dict[str, Any]:
    """Run every stage, evaluate, and write ``report.json``, ``report.md``, ``answers.jsonl``
    and the plots into ``cfg.out``; return the report."""
    root = Path(cfg.out)
    root.mkdir(parents=True, exist_ok=True)
    start_machine = _machine()
    tic = time.perf_counter()
    stages = run_stages(cfg, resume=resume)
    _say("evaluating every stage on held-out prompts")
    eval_tic = time.perf_counter()
    models, shown, records = evaluate_stages(cfg)
    eval_seconds = time.perf_counter() - eval_tic
    write_jsonl(root / "answers.jsonl", records)
    plots = plot_report(root, models, cfg.families)
    report = {
        "command": command
        or f"genlab demo --out {cfg.out} --preset {cfg.preset} --seed {cfg.seed}",
        "preset": cfg.preset,
        "seed": cfg.seed,
        "families": list(cfg.families),
        "machine_start": start_machine,
        "machine": _machine(),
        "total_seconds": sum(s["seconds"] for s in stages.values()) + eval_seconds,
        "wall_seconds": time.perf_counter() - tic,
        "stages": stages,
        "evaluation": {
            "seconds": eval_seconds,
            "prompts": len(records),
            "settings": asdict(cfg.eval),
            "models": models,
        },
        "goals": check_goals(stages, models),
        "transcript": shown,
        "plots": plots,
        "chat_commands": [
            f"genlab chat {root / 'ppo'}",
            f"genlab chat {root / 'dpo'}",
            f"genlab chat {root / 'sft'} --message {shlex.quote(shown[0]['prompt'])}",
        ],
        "config": json.loads(json.dumps(asdict(cfg), default=str)),
    }
    atomic_write_json(root / "report.json", report)
    atomic_write_bytes(root / "report.md", render_report(report).encode())
    return report
