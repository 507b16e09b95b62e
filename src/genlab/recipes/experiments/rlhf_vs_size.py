"""Does RLHF on a small model beat SFT on a bigger one? The demo's PPO and DPO against SFT on a
model 4x its size, trained on the same data.

The claim (Ouyang et al., 2022, "Training language models to follow instructions with human
feedback", abstract and figure 1): labelers prefer the outputs of the 1.3B-parameter InstructGPT
model (SFT, then PPO against a reward model) to those of models 100x its size; figure 1 measures
every model by its win rate against the 175B SFT model. At genlab's scale the experiment takes
the demo's models (``genlab demo``: pretrain, SFT, reward, PPO, DPO) and trains a model with
about ``scale`` times the demo GPT's parameters through pretraining and SFT with the demo's
recipe: the same corpus and tokenizer (so the same tokens), the same demonstrations, seed,
steps and batch sizes; only the width and depth differ (and the learning rates, by
``lr_scale``, 1 by default). Then the demo's SFT, PPO and DPO models and the big SFT model
answer the same held-out prompts, scored by TinyWorld's judge in place of labelers: exact
answers (greedy), judge score (sampled) and each small model's win rate against the big SFT
model (sampled answers paired, ties half), with 95% bootstrap intervals over prompts (and
seeds, with several demo folders).

    genlab experiment rlhf-vs-size --demo runs/demo
    genlab experiment rlhf-vs-size --demo runs/demo-seeds/seed-0,runs/demo-seeds/seed-1

The claim counts as reproduced when PPO's or DPO's win rate against the big SFT model has its
lower bound above 50%, refuted when both upper bounds are below 50%, else inconclusive.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch

from genlab.core.checkpoint import read_model_config
from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_json, read_json
from genlab.core.sweep import markdown_table, point_dir
from genlab.data.records import write_jsonl
from genlab.data.tinyworld import Example, verdict
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.metrics.bootstrap import Interval, bootstrap_mean
from genlab.nets.gpt import GPT, GPTConfig
from genlab.recipes.chatgpt.evaluate import EvalSettings, answer_all, heldout_examples
from genlab.recipes.chatgpt.pipeline import (
    RUN_FILE,
    RUNNERS,
    STAGE_FILE,
    pretraining_documents,
    say,
    stage_configs,
)
from genlab.recipes.chatgpt.presets import ChatGPTConfig, preset_config
from genlab.recipes.experiments.report import (
    DOCS_DIR,
    SWEEPS_DIR,
    new_figure,
    save_figure,
    write_page,
)
from genlab.recipes.experiments.sampling import Check, weights_digest

NAME = "rlhf_vs_size"
BIG_STAGES = ("pretrain", "sft")  # what the big model goes through
SIZE_FILE = "size.json"  # a big run's settings: its demo, shape and parameter counts
ANSWERS_FILE = "answers.json"  # one model's cached answers to the prompts
# The models compared: the demo's three, the big SFT model, and the stages that made each.
SMALL = ("sft", "ppo", "dpo")
BIG = "big_sft"
MODELS = (*SMALL, BIG)  # the table's rows, in order (the JSON's keys are sorted)
STAGES_OF = {
    "sft": ("pretrain", "sft"),
    "ppo": ("pretrain", "sft", "reward", "ppo"),
    "dpo": ("pretrain", "sft", "dpo"),
    BIG: BIG_STAGES,
}
METRICS = ("exact", "judge", "win")  # per prompt: greedy correct, sampled score, win vs big SFT


@dataclass
class RLHFSizeConfig:
    """The demo runs compared, the big model's size, and the prompts they answer."""

    demo: tuple[str, ...] = ("runs/demo",)  # demo run folders (genlab demo), one per seed
    scale: float = 4.0  # the big model's parameters over the demo GPT's (width and depth grow)
    lr_scale: float = 1.0  # the big model's pretraining and SFT learning rates x this
    out: str = str(SWEEPS_DIR / NAME)  # the big models' runs and every model's cached answers
    out_dir: str = str(DOCS_DIR)  # where the page, its JSON and figure go
    n_per_family: int = 100  # held-out prompts per task family
    samples: int = 4  # sampled answers per prompt (temperature 1), paired for win rates
    seed: int = 0  # decides the prompts, the sampling and the bootstrap
    split: Literal["validation", "test"] = "test"  # the prompts' split (never trained on)
    progress: bool = True  # progress bars while the big model trains

    def checks(self) -> dict[str, Check]:
        """Each setting's range check."""
        return {
            "demo": (
                len(self.demo) >= 1 and len(set(self.demo)) == len(self.demo),
                "one or more demo run folders, each once",
            ),
            "scale": (self.scale > 1, "above 1"),
            "lr_scale": (self.lr_scale > 0, "above 0"),
            "n_per_family": (self.n_per_family >= 2, "at least 2"),
            "samples": (self.samples >= 1, "at least 1"),
            "seed": (self.seed >= 0, "at least 0"),
        }

    def validate(self) -> None:
        """Refuse the first setting out of range, in one line."""
        for name, (ok, rule) in self.checks().items():
            if not ok:
                value = getattr(self, name)
                raise GenlabError(f"invalid experiment setting {name}={value!r}: {rule}")


# ---------------------------------------------------------------------------------------------
# The demo runs and the big model's shape


@dataclass(frozen=True)
class DemoRun:
    """A finished ``genlab demo`` folder: its preset, seed and task families."""

    folder: Path
    preset: str
    seed: int
    families: tuple[str, ...]

    @property
    def config(self) -> ChatGPTConfig:
        """The demo's settings (those of its preset, seed and families)."""
        cfg = preset_config(self.preset, str(self.folder), self.seed, progress=False)
        return replace(cfg, families=self.families)


def read_demo(folder: str | os.PathLike) -> DemoRun:
    """The demo run in ``folder``, checked to hold every model the experiment compares."""
    folder = Path(folder)
    record = read_json(folder / RUN_FILE, "demo record (a 'genlab demo' folder)")
    for stage in ("pretrain", "sft", "reward", "ppo", "dpo"):
        if not (folder / stage / STAGE_FILE).is_file():
            raise GenlabError(
                f"{folder} has no finished {stage} stage: finish the demo first "
                f"(genlab demo --out {folder} --resume)"
            )
    demo = DemoRun(folder, record["preset"], int(record["seed"]), tuple(record["families"]))
    check_recipe(demo)
    return demo


def check_recipe(demo: DemoRun) -> None:
    """Refuse a demo whose pretraining or SFT ran with trainer settings other than its preset's
    now (steps, batch, learning rate, ...): the big model, trained with the preset's, would not
    follow the demo's recipe."""
    cfg = demo.config
    for stage, train in (("pretrain", cfg.pretrain.train), ("sft", cfg.sft.sft.train)):
        recorded = read_model_config(demo.folder / stage)["train"]
        expected = train.to_dict()
        for key in sorted((set(recorded) | set(expected)) - {"progress"}):
            if recorded.get(key) != expected.get(key):
                raise GenlabError(
                    f"{demo.folder / stage} was trained with {key}={recorded.get(key)!r} but "
                    f"the '{demo.preset}' preset now sets {expected.get(key)!r}: rerun the demo "
                    "with this genlab so that the big model follows its recipe"
                )


def gpt_config(folder: str | os.PathLike) -> GPTConfig:
    """The GPT shape of a model folder, read from its ``config.json``."""
    return GPTConfig.from_dict(read_model_config(folder, "gpt")["config"])


def parameter_count(config: GPTConfig) -> int:
    """Every weight of a GPT of this shape, embeddings included (no memory allocated)."""
    with torch.device("meta"):
        return sum(p.numel() for p in GPT(config).parameters())


def scaled_shape(base: GPTConfig, scale: float) -> GPTConfig:
    """The GPT with about ``scale`` x ``base``'s parameters: same head size, vocabulary and
    context; depth and width each grown by a factor from 1 to ``scale``; of those shapes the
    one whose parameter count is nearest ``scale`` x ``base``'s (by ratio), the shallower on a
    tie."""
    target = scale * parameter_count(base)
    head = base.head_dim
    best: tuple[float, int, GPTConfig] | None = None
    widths = range(base.n_embd, int(scale * base.n_embd) + 1, head)
    depths = range(base.n_layer, int(scale * base.n_layer) + 1)
    for width in widths:
        shape = replace(base, n_embd=width, n_head=width // head)
        # parameters grow linearly with depth: two counts give the line
        one = parameter_count(replace(shape, n_layer=1))
        per_layer = parameter_count(replace(shape, n_layer=2)) - one
        for depth in depths:
            gap = abs(math.log((one + (depth - 1) * per_layer) / target))
            if best is None or (gap, depth) < best[:2]:
                best = (gap, depth, replace(shape, n_layer=depth))
    assert best is not None  # the base's own shape is always a candidate
    return best[2]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Training the big model


@dataclass(frozen=True)
class BigRun:
    """Where one demo's big model is trained, and with what."""

    folder: Path
    config: ChatGPTConfig
    shape: GPTConfig


def big_run(demo: DemoRun, cfg: RLHFSizeConfig) -> BigRun:
    """The big model's run for ``demo``: the demo's settings with the pretraining model
    ``scale`` x bigger, the demo's tokenizer (the same tokens) and learning rates x
    ``lr_scale``, in a folder named from those settings under ``cfg.out``."""
    base = demo.config
    shape = scaled_shape(gpt_config(demo.folder / "pretrain"), cfg.scale)
    tokenizer = demo.folder / "pretrain" / "tokenizer.json"
    identity = {
        "families": list(demo.families),
        "shape": {k: getattr(shape, k) for k in ("n_layer", "n_head", "n_embd")},
        "lr_scale": cfg.lr_scale,
        "tokenizer": _sha(tokenizer.read_bytes()),
    }
    folder = point_dir(cfg.out, NAME, {"preset": demo.preset, "seed": demo.seed}, identity)
    pre, sft = base.pretrain, base.sft.sft
    big = replace(
        base,
        out=str(folder),
        progress=cfg.progress,
        pretrain=replace(
            pre,
            n_layer=shape.n_layer,
            n_head=shape.n_head,
            n_embd=shape.n_embd,
            tokenizer=str(tokenizer),
            train=replace(pre.train, lr=pre.train.lr * cfg.lr_scale, progress=cfg.progress),
        ),
        sft=replace(
            base.sft,
            sft=replace(
                sft,
                train=replace(sft.train, lr=sft.train.lr * cfg.lr_scale, progress=cfg.progress),
            ),
        ),
    )
    return BigRun(folder, big, shape)


def train_big(demo: DemoRun, cfg: RLHFSizeConfig) -> BigRun:
    """Pretrain and SFT-tune the big model of ``demo`` (a finished stage is kept, an
    interrupted one resumes); the pretraining text is the demo's own file."""
    run = big_run(demo, cfg)
    run.folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        run.folder / SIZE_FILE,
        {
            "demo": str(demo.folder),
            "preset": demo.preset,
            "seed": demo.seed,
            "families": list(demo.families),
            "shape": run.shape.to_dict(),
            "params": parameter_count(run.shape),
            "demo_params": parameter_count(gpt_config(demo.folder / "pretrain")),
            "lr_scale": cfg.lr_scale,
        },
    )
    configs = stage_configs(run.config)
    text = demo.folder / "data" / "pretrain.jsonl"
    if text.is_file():
        configs["pretrain"] = replace(configs["pretrain"], data=str(text))
    for n, name in enumerate(BIG_STAGES, 1):
        folder = run.folder / name
        where = f"[big model of {demo.folder}, {n}/{len(BIG_STAGES)}] {name}"
        if (folder / STAGE_FILE).is_file():
            say(f"{where}: kept from the previous run")
            continue
        say(f"{where} ({run.shape.n_layer} layers, {run.shape.n_embd} wide) into {folder}")
        if name == "pretrain" and not Path(configs["pretrain"].data).is_file():
            documents = pretraining_documents(run.config)
            write_jsonl(configs["pretrain"].data, ({"text": d} for d in documents))
        tic = time.perf_counter()
        metrics = RUNNERS[name](configs[name], True)
        done = {"seconds": time.perf_counter() - tic, "metrics": metrics}
        atomic_write_json(folder / STAGE_FILE, done)
    return run


# ---------------------------------------------------------------------------------------------
# Answers and their scores


def prompts(demo: DemoRun, cfg: RLHFSizeConfig) -> list[Example]:
    """The held-out prompts of ``demo``'s world: ``n_per_family`` of each family's split."""
    return heldout_examples(demo.seed, demo.families, cfg.n_per_family, cfg.seed, split=cfg.split)


def eval_settings(demo: DemoRun, cfg: RLHFSizeConfig) -> EvalSettings:
    """The demo preset's decoding settings with this experiment's counts and seed."""
    base = demo.config.eval
    return replace(base, n_per_family=cfg.n_per_family, samples=cfg.samples, seed=cfg.seed)


def answers(
    folder: Path, examples: Sequence[Example], settings: EvalSettings, cache: Path
) -> dict[str, Any]:
    """The chat model in ``folder`` answering ``examples`` greedily and by sampling, cached in
    ``cache`` under the model's weights, the prompts and the settings (a rerun reuses them)."""
    identity = {
        "weights": weights_digest(folder),
        "prompts": _sha("\n".join(e.prompt for e in examples).encode()),
        "settings": asdict(settings),
    }
    where = point_dir(cache, NAME, {"model": str(folder)}, identity) / ANSWERS_FILE
    if where.is_file():
        return read_json(where, "cached answers")
    say(f"answering {len(examples)} prompts with {folder}")
    model, tokenizer = load_gpt(folder, pick_device("auto"))
    got = answer_all(model, tokenizer, examples, settings)
    result = {
        "model": str(folder),
        "prompts": [e.prompt for e in examples],
        "greedy": got.greedy,
        "sampled": got.sampled,
    }
    atomic_write_json(where, result)
    return result


def win(score: float, baseline: float) -> float:
    """One paired comparison: 1 if the judge scores ``score`` higher, 0.5 on a tie, else 0."""
    return 1.0 if score > baseline else 0.5 if score == baseline else 0.0


def item_values(examples: Sequence[Example], got: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Per prompt: the greedy answer's correctness (0/1) and each sampled answer's judge
    score."""
    exact = [float(verdict(e, a).correct) for e, a in zip(examples, got["greedy"], strict=True)]
    scores = [
        [verdict(e, a).score for a in gens]
        for e, gens in zip(examples, got["sampled"], strict=True)
    ]
    return {"exact": exact, "scores": scores}


def per_prompt(values: Mapping[str, list[Any]], big: Mapping[str, list[Any]] | None) -> dict:
    """Per prompt: exact (greedy), mean judge score (sampled), the share of sampled answers
    with the judge's full score, win rate against the big SFT model's sampled answers (answer
    k against answer k, ties half) and the share of ties."""
    out: dict[str, list[float]] = {
        "exact": list(values["exact"]),
        "judge": [sum(s) / len(s) for s in values["scores"]],
        "perfect": [sum(x == 1.0 for x in s) / len(s) for s in values["scores"]],
    }
    if big is not None:
        pairs = [
            list(zip(s, b, strict=True))
            for s, b in zip(values["scores"], big["scores"], strict=True)
        ]
        out["win"] = [sum(win(a, b) for a, b in p) / len(p) for p in pairs]
        out["ties"] = [sum(a == b for a, b in p) / len(p) for p in pairs]
    return out


# ---------------------------------------------------------------------------------------------
# The verdict


def claim_verdict(wins: Mapping[str, Interval]) -> str:
    """``reproduced`` when any RLHF model's win rate against the big SFT model is above 50%
    with its whole interval, ``refuted`` when every one is below 50% with its whole interval,
    else ``inconclusive``."""
    if any(i.low > 0.5 for i in wins.values()):
        return "reproduced"
    if wins and all(i.high < 0.5 for i in wins.values()):
        return "refuted"
    return "inconclusive"


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def _seconds(folder: Path, stages: Sequence[str]) -> float:
    return sum(read_json(folder / s / STAGE_FILE, "stage record")["seconds"] for s in stages)


def run_experiment(cfg: RLHFSizeConfig, command: str = "") -> dict[str, Any]:
    """Train each demo's big model (kept on a rerun), answer the same prompts with the demo's
    SFT, PPO and DPO models and the big SFT model, and write ``rlhf_vs_size.md``, ``.json`` and
    ``.png`` into ``cfg.out_dir``; return the JSON's content."""
    cfg.validate()
    load_start = _load()
    demos = [read_demo(f) for f in cfg.demo]
    if len({(d.preset, d.families) for d in demos}) > 1:
        raise GenlabError(
            "the demo folders differ in preset or task families: give runs of one preset that "
            "differ only in their seed"
        )
    bigs = [train_big(d, cfg) for d in demos]

    cache = Path(cfg.out) / "answers"
    values: dict[str, list[dict[str, list[float]]]] = {m: [] for m in MODELS}
    for demo, big in zip(demos, bigs, strict=True):
        examples = prompts(demo, cfg)
        settings = eval_settings(demo, cfg)
        scored = {
            m: item_values(examples, answers(demo.folder / m, examples, settings, cache))
            for m in SMALL
        }
        scored[BIG] = item_values(examples, answers(big.folder / "sft", examples, settings, cache))
        for m in SMALL:
            values[m].append(per_prompt(scored[m], scored[BIG]))
        values[BIG].append(per_prompt(scored[BIG], None))

    folders = {m: [d.folder / m for d in demos] for m in SMALL}
    folders[BIG] = [b.folder / "sft" for b in bigs]
    roots = {m: [d.folder for d in demos] for m in SMALL}
    roots[BIG] = [b.folder for b in bigs]
    models: dict[str, Any] = {}
    for m in MODELS:
        seconds = [_seconds(r, STAGES_OF[m]) for r in roots[m]]
        entry: dict[str, Any] = {
            "folders": [str(f) for f in folders[m]],
            "params": parameter_count(gpt_config(roots[m][0] / "pretrain")),
            "train_seconds": sum(seconds) / len(seconds),
            "train_seconds_by_seed": seconds,
            "stages": list(STAGES_OF[m]),
        }
        for key in METRICS:
            if key in values[m][0]:
                groups = [v[key] for v in values[m]]
                entry[key] = bootstrap_mean(groups, seed=cfg.seed).to_dict()
                entry[f"{key}_by_seed"] = [sum(g) / len(g) for g in groups]
        if "ties" in values[m][0]:
            ties = [t for v in values[m] for t in v["ties"]]
            entry["ties"] = sum(ties) / len(ties)
        models[m] = entry
    wins = {m: Interval(**models[m]["win"]) for m in ("ppo", "dpo")}
    outcome = claim_verdict(wins)
    n_prompts = len(values[BIG][0]["exact"])
    perfect = [p for v in values[BIG] for p in v["perfect"]]  # every prompt has `samples`
    results = {
        "claim": "RLHF (PPO or DPO) on the demo model is preferred to SFT on a model "
        f"{cfg.scale:g}x its parameters, trained on the same data",
        "verdict": outcome,
        "demo": [str(d.folder) for d in demos],
        "seeds": [d.seed for d in demos],
        "preset": demos[0].preset,
        "families": list(demos[0].families),
        "split": cfg.split,
        "prompts_per_seed": n_prompts,
        "n_per_family": cfg.n_per_family,
        "samples": cfg.samples,
        "eval_seed": cfg.seed,
        "scale": cfg.scale,
        "lr_scale": cfg.lr_scale,
        "big_shape": bigs[0].shape.to_dict(),
        "demo_shape": gpt_config(demos[0].folder / "pretrain").to_dict(),
        "param_ratio": models[BIG]["params"] / models["sft"]["params"],
        "big_perfect_share": sum(perfect) / len(perfect),
        "models": models,
        "machine": {"device": str(pick_device("auto")), "load_start": load_start},
        "command": command,
    }
    results["machine"]["load_end"] = _load()
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / f"{NAME}.json", results)
    plot(results, out_dir / f"{NAME}.png")
    write_page(
        out_dir / f"{NAME}.md",
        f"Small RLHF vs big SFT: PPO and DPO against SFT on a model {cfg.scale:g}x the size",
        question(results),
        table(results),
        f"{NAME}.png",
        settings_lines(results),
        findings(results),
        command=command,
    )
    return results


# ---------------------------------------------------------------------------------------------
# The page and the figure

LABELS = {"sft": "SFT", "ppo": "PPO", "dpo": "DPO", BIG: "big SFT"}


def _label(results: Mapping[str, Any], m: str) -> str:
    shape = results["big_shape"] if m == BIG else results["demo_shape"]
    return f"{LABELS[m]} ({shape['n_layer']}x{shape['n_embd']})"


def _params(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def _cell(entry: Mapping[str, Any], key: str, percent: bool = True) -> str:
    if key not in entry:
        return "-"
    return Interval(**entry[key]).format(percent=percent, digits=1 if percent else 3)


def table(results: Mapping[str, Any]) -> str:
    """The page's table: every model's size, training time and scores with 95% intervals."""
    rows = []
    for m in MODELS:
        e = results["models"][m]
        rows.append(
            [
                _label(results, m),
                _params(e["params"]),
                f"{e['train_seconds']:.0f}",
                _cell(e, "exact"),
                _cell(e, "judge", percent=False),
                _cell(e, "win"),
            ]
        )
    headers = [
        "model (layers x width)",
        "parameters",
        "training s",
        "exact (greedy)",
        "judge (sampled)",
        "win vs big SFT (sampled)",
    ]
    return markdown_table(headers, rows)


def question(results: Mapping[str, Any]) -> str:
    return (
        "InstructGPT (Ouyang et al., 2022) reports that labelers prefer the outputs of its 1.3B "
        "PPO model to those of models 100x bigger, and compares every model with the 175B SFT "
        "model (figure 1). Here: are the demo's PPO and DPO models preferred by TinyWorld's "
        f"judge to SFT on a model {results['param_ratio']:.2f}x the demo's parameters, "
        "pretrained and SFT-tuned on the same data with the same recipe? Intervals are 95% "
        "bootstrap intervals over prompts" + (" and seeds." if len(results["seeds"]) > 1 else ".")
    )


def settings_lines(results: Mapping[str, Any]) -> list[str]:
    small, big = results["demo_shape"], results["big_shape"]
    models = results["models"]
    load, lr = results["machine"], results["lr_scale"]
    return [
        f"demo runs: {', '.join(f'`{d}`' for d in results['demo'])} (preset "
        f"`{results['preset']}`, seeds {', '.join(map(str, results['seeds']))})",
        f"big SFT runs: {', '.join(f'`{f}`' for f in models[BIG]['folders'])}",
        f"demo GPT: {small['n_layer']} layers, {small['n_head']} heads, {small['n_embd']} wide, "
        f"{models['sft']['params']:,} parameters; big GPT: {big['n_layer']} layers, "
        f"{big['n_head']} heads, {big['n_embd']} wide, {models[BIG]['params']:,} parameters "
        f"(x{results['param_ratio']:.2f}; all weights, embeddings included; vocabulary "
        f"{small['vocab_size']}, context {small['block_size']})",
        "big model trained like the demo's: the same pretraining text and tokenizer, the same "
        "demonstrations, seed, steps and batch sizes (so the same tokens); learning rates: "
        + ("the demo's" if lr == 1 else f"the demo's x {lr:g}"),
        "training s: the seconds of every stage that made the model (SFT: pretrain + SFT; PPO: "
        "+ reward + PPO; DPO: + DPO) as each stage recorded them (the demo's on its own run's "
        "machine and load), mean over seeds",
        f"prompts: {results['prompts_per_seed']} per seed ({results['n_per_family']} per family "
        f"of {', '.join(results['families'])}, {results['split']} split, seed "
        f"{results['eval_seed']}); exact: greedy answer; judge and win rate: "
        f"{results['samples']} sampled answers per prompt at temperature 1, answer k of a small "
        "model against answer k of the big SFT model, ties half",
        f"load average at the start {load['load_start']}, at the end {load['load_end']}",
    ]


def findings(results: Mapping[str, Any]) -> list[str]:
    models = results["models"]
    wins = "; ".join(f"{LABELS[m]} {Interval(**models[m]['win']).format()}" for m in ("ppo", "dpo"))
    rule = (
        "reproduced: a lower bound above 50%; refuted: both upper bounds below 50%; else "
        "inconclusive"
    )
    ceiling = 1 - results["big_perfect_share"] / 2
    return [
        f"**Verdict: {results['verdict']}.** Win rates against the big SFT model: {wins} ({rule}).",
        f"Exact answers (greedy): big SFT {Interval(**models[BIG]['exact']).format()}, demo SFT "
        f"{Interval(**models['sft']['exact']).format()}, PPO "
        f"{Interval(**models['ppo']['exact']).format()}, DPO "
        f"{Interval(**models['dpo']['exact']).format()}.",
        f"{results['big_perfect_share']:.0%} of the big SFT model's sampled answers already get "
        f"the judge's full score, which caps any win rate at {ceiling:.1%}; ties: PPO "
        f"{models['ppo']['ties']:.0%}, DPO {models['dpo']['ties']:.0%}, SFT "
        f"{models['sft']['ties']:.0%} of the paired answers.",
    ]


def plot(results: Mapping[str, Any], path: Path) -> Path:
    """Three panels of bars with 95% intervals: exact answers, judge score, win rate."""
    fig = new_figure(12, 4)
    panels = (
        ("exact", "exact answers (greedy)", "share correct"),
        ("judge", "judge score (sampled)", "mean score"),
        ("win", "win rate vs big SFT (sampled)", "share won, ties half"),
    )
    for ax, (key, title, ylabel) in zip(fig.subplots(1, 3), panels, strict=True):
        shown = [m for m in MODELS if key in results["models"][m]]
        cells = [results["models"][m][key] for m in shown]
        means = [c["mean"] for c in cells]
        errors = [[c["mean"] - c["low"] for c in cells], [c["high"] - c["mean"] for c in cells]]
        colors = ["C1" if m == BIG else "C0" for m in shown]
        ax.bar(range(len(shown)), means, yerr=errors, capsize=4, color=colors)
        ax.set_xticks(range(len(shown)), [LABELS[m] for m in shown])
        if key == "win":
            ax.axhline(0.5, color="k", ls="--", lw=1)
        ax.set(title=title, ylabel=ylabel, ylim=(0, 1.05))
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(
        f"demo ({_params(results['models']['sft']['params'])} parameters) vs big SFT "
        f"({_params(results['models'][BIG]['params'])}); 95% bootstrap intervals"
    )
    return save_figure(fig, path)
