"""The demo's stages in order, each a run folder under ``out``, resumable between stages."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_json, read_json
from genlab.data.records import write_jsonl
from genlab.data.tinyworld import World, make_examples
from genlab.prompting.layout import direct, qa_text
from genlab.recipes.chatgpt.presets import ChatGPTConfig
from genlab.recipes.pretrain import pretrain
from genlab.recipes.stages import (
    DPOStage,
    PPOStage,
    RewardStage,
    SFTStage,
    run_dpo,
    run_ppo,
    run_reward,
    run_sft,
)

STAGES = ("pretrain", "sft", "reward", "ppo", "dpo")
STAGE_FILE = "stage.json"  # a finished stage's metrics and time, in its folder
RUN_FILE = "demo.json"  # the preset, seed and families of the run in a folder


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
                        e.worked_solution if rng.random() < 0.5 else direct(e.answer),
                    )
                    for e in solved[i : i + k]
                )
            )
            i += k
    rng.shuffle(docs)
    return docs


def stage_configs(cfg: ChatGPTConfig) -> dict[str, Any]:
    """Each stage's config wired to the previous stages' folders, the world and the families."""
    root = Path(cfg.out)
    folders = {s: str(root / s) for s in STAGES}
    data = root / "data" / "pretrain.jsonl"
    tuned = {"families": ",".join(cfg.families), "world_seed": cfg.seed}
    return {
        "pretrain": replace(
            cfg.pretrain, out=folders["pretrain"], data=str(data), text_field="text"
        ),
        "sft": SFTStage(
            replace(cfg.sft.sft, base=folders["pretrain"], out=folders["sft"]),
            replace(cfg.sft.data, **tuned),
        ),
        "reward": RewardStage(
            replace(cfg.reward.reward, base=folders["sft"], out=folders["reward"]),
            replace(cfg.reward.data, **tuned),
        ),
        "ppo": PPOStage(
            replace(
                cfg.ppo.ppo, policy=folders["sft"], reward=folders["reward"], out=folders["ppo"]
            ),
            replace(cfg.ppo.data, **tuned),
        ),
        "dpo": DPOStage(
            replace(cfg.dpo.dpo, policy=folders["sft"], out=folders["dpo"]),
            replace(cfg.dpo.data, **tuned),
        ),
    }


RUNNERS: dict[str, Callable[[Any, bool], dict[str, float]]] = {
    "pretrain": pretrain,
    "sft": run_sft,
    "reward": run_reward,
    "ppo": run_ppo,
    "dpo": run_dpo,
}


def say(line: str) -> None:
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
    configs = stage_configs(cfg)
    results: dict[str, dict[str, Any]] = {}
    for n, name in enumerate(STAGES, 1):
        folder = root / name
        if resume and (folder / STAGE_FILE).is_file():
            results[name] = read_json(folder / STAGE_FILE, "stage record")
            say(f"[{n}/{len(STAGES)}] {name}: kept from the previous run")
            continue
        if not resume and folder.exists() and any(folder.iterdir()):
            raise GenlabError(
                f"{folder} already holds a run: pass --resume to keep finished stages, or "
                "choose another --out"
            )
        say(f"[{n}/{len(STAGES)}] {name}")
        tic = time.perf_counter()
        if name == "pretrain" and not Path(configs["pretrain"].data).is_file():
            write_jsonl(configs["pretrain"].data, ({"text": d} for d in pretraining_documents(cfg)))
        metrics = RUNNERS[name](configs[name], resume)
        done = {"seconds": time.perf_counter() - tic, "metrics": metrics}
        atomic_write_json(folder / STAGE_FILE, done)
        results[name] = done
    return results
