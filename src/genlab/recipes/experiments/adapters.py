"""One base, many tasks: full fine-tuning against LoRA, bottleneck adapters and prompt tuning.

The claims: a low-rank update of a few layers learns a task about as well as tuning every weight
(Hu et al., 2021, "LoRA", tables 2-4: r = 8 or less on the attention projections matches full
fine-tuning with 0.01-1% of its trainable parameters), as do small bottleneck MLPs (Houlsby et
al., 2019); trained soft prompts match it only for models of billions of parameters (Lester et
al., 2021, figure 1: far behind at 100M, level at 10B). Each task family of TinyWorld is tuned
from the same pretrained GPT four ways, and each is scored by exact answers to held-out prompts.

LoRA's claim is about adapting a base that already has the skill (GPT-3, RoBERTa). The base
here is the demo's GPT (~1M parameters) pretrained on the demo's text, which holds each family's
solved questions, for ``base_steps`` (2000) steps: the demo stops at 600, when the base cannot
do four of the five families few-shot and a task must be learned from scratch (docs/adapters.md
measures LoRA from that base too). The experiment pretrains its base when the folder is missing.

Every arm trains the same steps on the same demonstrations; only its learning rate is its own,
chosen from a small grid by the mean exact-answer rate on the validation prompts. The test
prompts are answered by every run but read only for the chosen learning rate.

    genlab experiment adapters
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open

from genlab.adapt.config import AdapterOptions
from genlab.align.sft import SFTConfig
from genlab.core.checkpoint import STATE_FILE
from genlab.core.errors import refuse_invalid
from genlab.core.io import atomic_write_json, read_json
from genlab.core.sweep import Metrics, markdown_table, point_dir, run_sweep
from genlab.core.train_config import TrainConfig
from genlab.data.record_sources import ConversationData
from genlab.data.records import write_jsonl
from genlab.data.tinyworld.preferences import REPLY_STYLES
from genlab.data.tinyworld.records import DEFAULT_FAMILIES, parse_families, world_seed_of
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.metrics.bootstrap import bootstrap_mean
from genlab.recipes.chatgpt.evaluate import (
    EvalSettings,
    chat_prompts,
    decode,
    few_shot_prompts,
    heldout_examples,
)
from genlab.recipes.chatgpt.pipeline import pretraining_documents
from genlab.recipes.chatgpt.presets import ChatGPTConfig, demo_config, stage_train
from genlab.recipes.experiments.report import (
    DOCS_DIR,
    SWEEPS_DIR,
    new_figure,
    save_figure,
    write_page,
)
from genlab.recipes.pretrain import pretrain
from genlab.recipes.stages import SFTStage, run_sft

NAME = "adapters"
METHODS = ("full", "lora", "bottleneck", "prompt")
GOAL_SCORE, GOAL_PARAMS = 0.95, 0.02  # LoRA: >= 95% of full fine-tuning with <= 2% of its params


@dataclass
class AdaptersConfig:
    """The base, the task families, the four arms' sizes and learning-rate grids."""

    base: str = "runs/adapters/base"  # a pretrained GPT; pretrained here when missing
    base_steps: int = 2000  # pretraining steps of a base built here (the demo's stops at 600)
    families: tuple[str, ...] = DEFAULT_FAMILIES  # one task each, tuned separately
    n_train: int = 2400  # demonstrations per family
    style: str = "sentence"  # replies "The answer is X."; mixed: the demo's (padded, hedged...)
    steps: int = 200  # optimizer steps per run, 32 conversations each (not packed)
    lr_full: tuple[float, ...] = (3e-4, 1e-3)  # full fine-tuning's learning-rate grid
    lr_lora: tuple[float, ...] = (3e-3, 1e-2)  # LoRA's learning-rate grid
    lr_bottleneck: tuple[float, ...] = (1e-3, 3e-3)  # the bottleneck adapter's
    lr_prompt: tuple[float, ...] = (3e-2, 1e-1)  # soft prompts need large steps (Lester: 0.3)
    lora_rank: int = 8  # LoRA's r
    lora_targets: tuple[str, ...] = ("attn.qkv",)  # queries, keys and values, as LoRA's paper
    bottleneck_size: int = 8  # sized so the adapter trains about as many weights as the LoRA
    prompt_tokens: int = 20  # soft-prompt length
    all_tokens: bool = False  # adapters also train every token's embedding row (a lever)
    n_per_family: int = 50  # held-out prompts per family and split
    seed: int = 0  # decides the data, the initialisation and the bootstrap
    out: str = str(SWEEPS_DIR / NAME)  # a run folder per (family, method, learning rate)
    out_dir: str = str(DOCS_DIR)  # where the page, its JSON and figure go
    parallel: int = 1  # runs at a time, each in its own process

    def lrs(self, method: str) -> tuple[float, ...]:
        return getattr(self, f"lr_{method}")

    def validate(self) -> None:
        """Refuse the first setting out of range, in one line."""
        parse_families(",".join(self.families))
        checks = {
            "n_train": self.n_train >= 32,
            "steps": self.steps >= 1,
            "base_steps": self.base_steps >= 1,
            "style": self.style in REPLY_STYLES,
            "n_per_family": self.n_per_family >= 2,
            "parallel": self.parallel >= 1,
            **{f"lr_{m}": bool(self.lrs(m)) and min(self.lrs(m)) > 0 for m in METHODS},
        }
        refuse_invalid(self, checks, "experiment setting")


def pretrained_steps(run: str | Path) -> int | None:
    """The steps a run has trained (its ``state.json``), ``None`` when it has none."""
    state = Path(run) / STATE_FILE
    return int(read_json(state, "run state")["step"]) if state.is_file() else None


def build_base(cfg: AdaptersConfig, chat: ChatGPTConfig | None = None) -> None:
    """Pretrain the experiment's base into ``cfg.base`` unless it holds a finished run: the
    demo's GPT on the demo's pretraining text (``chat``: the demo preset of ``cfg.seed``), for
    ``cfg.base_steps`` steps; an interrupted build resumes."""
    base, corpus = Path(cfg.base), Path(f"{cfg.base}-corpus.jsonl")
    if (base / "model.safetensors").is_file() and not corpus.is_file():
        return  # a base of the user's own: used as it is
    if (pretrained_steps(base) or 0) >= cfg.base_steps:
        return  # built by an earlier run
    chat = chat or demo_config(seed=cfg.seed)
    if not corpus.is_file():
        write_jsonl(corpus, ({"text": d} for d in pretraining_documents(chat)))
    train = TrainConfig(
        max_steps=cfg.base_steps,
        batch_size=32,
        lr=2e-3,
        warmup_steps=50,
        weight_decay=0.1,
        eval_every=250,
        checkpoint_every=500,
        tensorboard=False,
        seed=cfg.seed,
    )
    shape = replace(chat.pretrain, out=cfg.base, data=str(corpus), text_field="text", train=train)
    pretrain(shape, resume=True)


def adapter_options(method: str, settings: Mapping[str, Any]) -> AdapterOptions:
    """The training verb's adapter options for one arm (``full``: none)."""
    return AdapterOptions(
        adapter="none" if method == "full" else method,
        lora_rank=settings["lora_rank"],
        lora_targets=tuple(settings["lora_targets"]) if method == "lora" else None,
        bottleneck_size=settings["bottleneck_size"],
        prompt_tokens=settings["prompt_tokens"],
        all_tokens=settings.get("all_tokens", False),
    )


def exact_answers(
    folder: Path, family: str, world: int, split: str, n: int, seed: int
) -> list[float]:
    """1/0 per held-out prompt of ``family``'s ``split``: the greedy chat answer is correct."""
    model, tokenizer = load_gpt(folder)
    examples = heldout_examples(world, [family], n, seed, split=split)
    settings = EvalSettings(n_per_family=n, seed=seed, max_new_tokens=48)
    got = decode(
        model,
        tokenizer,
        chat_prompts(tokenizer, examples),
        chat=True,
        temperature=0.0,
        num_samples=1,
        settings=settings,
    )
    return [float(e.check(g[0].text.strip())) for e, g in zip(examples, got, strict=True)]


def trainable_parameters(folder: Path, method: str) -> int:
    """What the optimizer updated: every weight of a full fine-tune, else the adapter's tensors
    (all an adapter run's ``model.safetensors`` holds)."""
    if method == "full":
        model, _ = load_gpt(folder)
        return sum(p.numel() for p in model.parameters())  # tied weights counted once
    with safe_open(folder / "model.safetensors", "pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118


def point(settings: Mapping[str, Any], run_dir: Path) -> Metrics:
    """Tune the base on one family one way (sweep point): its exact answers on the validation
    and test prompts, trainable parameters, training seconds and bytes on disk."""
    family, method, seed = settings["family"], settings["method"], settings["seed"]
    folder = run_dir / "model"
    train = stage_train(settings["steps"], settings["lr"], 32, 10, seed=seed, progress=False)
    stage = SFTStage(
        SFTConfig(
            base=settings["base"],
            out=str(folder),
            packed=False,  # a soft prompt cannot go before packed rows: no arm packs
            train=replace(train, tensorboard=False, weight_decay=0.0),
        ),
        ConversationData(
            families=family,
            n_train=settings["n_train"],
            n_eval=100,
            style=settings.get("style", "mixed"),
        ),
        adapter_options(method, settings),
    )
    start = time.perf_counter()
    run_sft(stage)
    seconds = time.perf_counter() - start
    world = world_seed_of(settings["base"])
    n = settings["n_per_family"]
    val = exact_answers(folder, family, world, "validation", n, seed)
    test = exact_answers(folder, family, world, "test", n, seed)
    atomic_write_json(run_dir / "answers.json", {"validation": val, "test": test})
    return {
        "val_exact": float(np.mean(val)),
        "test_exact": float(np.mean(test)),
        "trainable": float(trainable_parameters(folder, method)),
        "seconds": seconds,
        "bytes": float((folder / "model.safetensors").stat().st_size),
    }


def base_floor(cfg: AdaptersConfig, world: int, families: Sequence[str]) -> list[float]:
    """The untuned base prompted few-shot on the same test prompts: what tuning adds to."""
    model, tokenizer = load_gpt(cfg.base)
    examples = heldout_examples(world, families, cfg.n_per_family, cfg.seed, split="test")
    settings = EvalSettings(n_per_family=cfg.n_per_family, seed=cfg.seed, max_new_tokens=48)
    room = model.config.block_size - settings.max_new_tokens
    prompts = few_shot_prompts(tokenizer, examples, world, settings.shots, cfg.seed, room)
    got = decode(
        model, tokenizer, prompts, chat=False, temperature=0.0, num_samples=1, settings=settings
    )
    return [float(e.check(g[0].text.strip())) for e, g in zip(examples, got, strict=True)]


def ratio_interval(
    ours: Sequence[float], full: Sequence[float], seed: int
) -> tuple[float, float, float]:
    """``mean(ours) / mean(full)`` with a 95% paired bootstrap interval over the prompts (both
    answered the same prompts, so a prompt is resampled for both at once). Given each prompt's
    gain over the untuned base, it is the share of full fine-tuning's gain a method keeps."""
    a, b = np.asarray(ours, dtype=float), np.asarray(full, dtype=float)
    if b.mean() <= 0:
        return math.nan, math.nan, math.nan  # full fine-tuning got nothing: no ratio
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, a.size, size=(2000, a.size))
    denominators = b[picks].mean(1)
    ratios = a[picks].mean(1) / np.where(denominators > 0, denominators, np.nan)
    low, high = np.nanquantile(ratios, [0.025, 0.975])  # a resample full never got: undefined
    return float(a.mean() / b.mean()), float(low), float(high)


def chosen_runs(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Each method's learning rate: the best mean validation exact rate over the families."""
    best: dict[str, tuple[float, float]] = {}
    for method in METHODS:
        by_lr: dict[float, list[float]] = {}
        for r in rows:
            if r["method"] == method:
                by_lr.setdefault(r["lr"], []).append(r["val_exact"])
        lr, scores = max(by_lr.items(), key=lambda kv: (np.mean(kv[1]), -kv[0]))
        best[method] = (lr, float(np.mean(scores)))
    return {m: lr for m, (lr, _) in best.items()}


def run_experiment(cfg: AdaptersConfig, command: str = "") -> dict[str, Any]:
    """Tune every family four ways at each learning rate (one sweep point each, reused on a
    rerun), choose each method's rate on validation, and write the page from the test split."""
    cfg.validate()
    families = parse_families(",".join(cfg.families))
    build_base(cfg)
    world = world_seed_of(cfg.base)
    fixed = {
        "base": str(Path(cfg.base).resolve()),
        "n_train": cfg.n_train,
        "style": cfg.style,
        "steps": cfg.steps,
        "seed": cfg.seed,
        "lora_rank": cfg.lora_rank,
        "lora_targets": list(cfg.lora_targets),
        "bottleneck_size": cfg.bottleneck_size,
        "prompt_tokens": cfg.prompt_tokens,
        "n_per_family": cfg.n_per_family,
        **({"all_tokens": True} if cfg.all_tokens else {}),
    }
    points = [
        {"family": f, "method": m, "lr": lr} for m in METHODS for lr in cfg.lrs(m) for f in families
    ]
    fn = f"{__name__}:point"
    rows = run_sweep(fn, points, Path(cfg.out), fixed, cfg.parallel)
    lrs = chosen_runs(rows)
    results: dict[str, Any] = {"families": list(families), "learning_rates": lrs, "methods": {}}
    full_params = _full_parameters(cfg.base)
    pooled: dict[str, list[float]] = {}
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method and r["lr"] == lrs[method]]
        answers = {r["family"]: _answers(cfg, fn, r, fixed) for r in mine}
        pooled[method] = [x for f in families for x in answers[f]["test"]]
        trainable = full_params if method == "full" else mine[0]["trainable"]
        results["methods"][method] = {
            "lr": lrs[method],
            "per_family": {r["family"]: r["test_exact"] for r in mine},
            "validation": float(np.mean([r["val_exact"] for r in mine])),
            "test": bootstrap_mean(pooled[method], seed=cfg.seed).to_dict(),
            "trainable": trainable,
            "trainable_share": trainable / full_params,
            "seconds": float(np.mean([r["seconds"] for r in mine])),
            "bytes": float(np.mean([r["bytes"] for r in mine])),
        }
    floor = base_floor(cfg, world, families)
    n = cfg.n_per_family
    results["base_few_shot"] = {
        **bootstrap_mean(floor, seed=cfg.seed).to_dict(),
        "per_family": {
            f: float(np.mean(floor[i * n : (i + 1) * n])) for i, f in enumerate(families)
        },
    }
    gained = {m: np.subtract(pooled[m], floor) for m in METHODS}  # what tuning adds, per prompt
    for method in METHODS[1:]:
        for key, arms in (("of_full", pooled), ("of_gain", gained)):
            ratio = ratio_interval(arms[method], arms["full"], cfg.seed)
            results["methods"][method][key] = dict(zip(("mean", "low", "high"), ratio, strict=True))
    lora = results["methods"]["lora"]
    results["goal"] = {
        "score": lora["of_full"]["mean"] >= GOAL_SCORE,
        "params": lora["trainable_share"] <= GOAL_PARAMS,
    }
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / f"{NAME}.json", results)
    plot(results, out_dir / f"{NAME}.png")
    write_page(
        out_dir / f"{NAME}.md",
        "One base, many tasks: full fine-tuning, LoRA, bottleneck adapters, prompt tuning",
        QUESTION,
        table(results),
        f"{NAME}.png",
        settings_lines(cfg, families, full_params),
        findings(results),
        command,
    )
    return results


QUESTION = (
    "Does a small module per task learn as well as tuning every weight? Each TinyWorld family is "
    "tuned from one pretrained GPT by full fine-tuning, LoRA, a bottleneck adapter and a soft "
    "prompt; the table gives exact answers on the test prompts (95% bootstrap intervals over "
    "prompts), each arm at the learning rate its validation prompts chose. Goal: LoRA at r=8 "
    f">= {GOAL_SCORE:.0%} of full fine-tuning's score with <= {GOAL_PARAMS:.0%} of its trainable "
    "parameters."
)


def _full_parameters(base: str) -> int:
    model, _ = load_gpt(base)
    return sum(p.numel() for p in model.parameters())


def _answers(
    cfg: AdaptersConfig, fn: str, row: Mapping[str, Any], fixed: Mapping[str, Any]
) -> dict[str, list[float]]:
    """A finished point's per-prompt outcomes (its folder is found from its settings)."""
    where = point_dir(cfg.out, fn, {k: row[k] for k in ("family", "method", "lr")}, dict(fixed))
    return read_json(where / "answers.json", "a run's answers")


def _size(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} KB"


def _share(d: Mapping[str, float] | None) -> str:
    return "—" if d is None else f"{d['mean']:.0%} [{d['low']:.0%}, {d['high']:.0%}]"


def table(results: Mapping[str, Any]) -> str:
    families = results["families"]
    headers = [
        "method", "lr", *families, "all (test)", "of full", "of full's gain over the floor",
        "trainable", "s/run", "on disk",
    ]  # fmt: skip
    rows = []
    for method, m in results["methods"].items():
        test = m["test"]
        rows.append(
            [
                method,
                f"{m['lr']:g}",
                *[f"{m['per_family'][f]:.0%}" for f in families],
                f"{test['mean']:.1%} [{test['low']:.1%}, {test['high']:.1%}]",
                _share(m.get("of_full")),
                _share(m.get("of_gain")),
                f"{m['trainable']:,.0f} ({m['trainable_share']:.2%})",
                f"{m['seconds']:.0f}",
                _size(m["bytes"]),
            ]
        )
    floor = results["base_few_shot"]
    rows.append(
        ["base, few-shot (floor)", "—", *[f"{floor['per_family'][f]:.0%}" for f in families],
         f"{floor['mean']:.1%} [{floor['low']:.1%}, {floor['high']:.1%}]", "", "", "0", "0", "—"]
    )  # fmt: skip
    return markdown_table(headers, rows)


def settings_lines(cfg: AdaptersConfig, families: Sequence[str], full_params: int) -> list[str]:
    steps = pretrained_steps(cfg.base)
    base_steps = "?" if steps is None else f"{steps:,}"
    return [
        f"base: `{cfg.base}` ({full_params:,} parameters, pretrained {base_steps} steps); "
        f"families: {', '.join(families)}",
        f"each run: {cfg.n_train} demonstrations of one family (replies: {cfg.style}), "
        f"{cfg.steps} steps of 32 "
        f"conversations (one per row, unpacked, as a soft prompt needs), AdamW, warmup 10 then cosine, no weight decay, seed {cfg.seed}",
        f"LoRA r={cfg.lora_rank}, alpha 16, on {', '.join(cfg.lora_targets)}; bottleneck width "
        f"{cfg.bottleneck_size} after attn.proj and mlp.proj (Houlsby); soft prompt of "
        f"{cfg.prompt_tokens} tokens initialised from vocabulary embeddings (Lester); every adapter "
        + (
            "also trains every token's embedding row (--all-tokens)"
            if cfg.all_tokens
            else "also trains the embedding rows of the tokenizer's special tokens (chat roles, "
            "end of turn), which the pretrained base never saw"
        ),
        "learning rates tried: "
        + "; ".join(f"{m} {', '.join(f'{x:g}' for x in cfg.lrs(m))}" for m in METHODS)
        + " — each method's chosen by the mean exact rate on the validation prompts",
        f"scored: greedy chat answers to {cfg.n_per_family} test prompts per family, checked "
        "by the family's own checker; the floor is the untuned base prompted with 3 solved "
        "examples",
        "trainable: parameters the optimizer updates; on disk: the run's model.safetensors (an "
        "adapter run stores the adapter alone, its base is shared); s/run: training only",
    ]


def findings(results: Mapping[str, Any]) -> list[str]:
    m = results["methods"]
    lora, prompt = m["lora"], m["prompt"]
    met = all(results["goal"].values())
    floor = results["base_few_shot"]
    unknown = [f for f, v in floor["per_family"].items() if v < 0.1]
    full = m["full"]["test"]["mean"]
    lines = [
        f"LoRA reaches {_share(lora['of_full'])} of full fine-tuning's test score training "
        f"{lora['trainable_share']:.2%} of its parameters: the goal ({GOAL_SCORE:.0%} with <= "
        f"{GOAL_PARAMS:.0%}) is {'met' if met else 'not met'}.",
        f"The untuned base answers {floor['mean']:.1%} few-shot, full fine-tuning "
        f"{full:.1%}: of what tuning adds, LoRA keeps {_share(lora['of_gain'])}, the bottleneck "
        f"adapter {_share(m['bottleneck']['of_gain'])} ({m['bottleneck']['trainable_share']:.2%} "
        f"of the parameters), the soft prompt {_share(prompt['of_gain'])}.",
        f"Prompt tuning reaches {_share(prompt['of_full'])} of full fine-tuning's score with "
        f"{prompt['trainable_share']:.2%} of the parameters: at this size (a ~1M-parameter GPT) "
        + (
            "it stays behind, as Lester et al. found for small models (their gap closes only "
            "near 10B parameters): reproduced."
            if prompt["of_full"]["high"] < 1
            else "it is not clearly behind, which does not reproduce Lester et al.'s small-model gap."
        ),
    ]
    if unknown:
        lines.append(
            f"The untuned base cannot do {', '.join(unknown)} at all (few-shot floor under 10%): "
            "there the task needs new knowledge (a cipher's vocabulary, letter cases, a maximum), "
            "which full fine-tuning writes into every weight, the vocabulary included, while the "
            "adapters keep the base and its embeddings frozen. LoRA's claim is about adapting a "
            "capable base; docs/adapters.md measures the levers (steps, rank, layers, token rows)."
        )
    return lines


def plot(results: Mapping[str, Any], path: Path) -> Path:
    """Test score against trainable parameters, one point per method, the floor as a line."""
    fig = new_figure(6.5, 4.2)
    ax = fig.subplots()
    for i, (method, m) in enumerate(results["methods"].items()):
        t = m["test"]
        ax.errorbar(
            [m["trainable"]],
            [t["mean"]],
            yerr=[[t["mean"] - t["low"]], [t["high"] - t["mean"]]],
            fmt="o",
            color=f"C{i}",
            capsize=3,
            label=method,
        )
    floor = results["base_few_shot"]["mean"]
    ax.axhline(floor, color="grey", ls="--", lw=1, label="base, few-shot")
    ax.set(xscale="log", xlabel="trainable parameters", ylabel="exact answers (test)", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Score against trainable parameters")
    return save_figure(fig, path)
