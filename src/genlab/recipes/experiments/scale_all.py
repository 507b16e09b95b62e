"""The whole scale suite (issue 16) in one command: the sweep trained once, then every scale
experiment's page, each with its defaults and this command's sweep, seed and device.

    genlab experiment scale-all                 # the CPU sweep, then the five pages

The calibration part needs a finished ``genlab demo`` folder (``--demo``); the suite trains the
demo there first when it is missing, and counts its time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from genlab.core.sweep import markdown_table
from genlab.recipes.chatgpt import run_stages
from genlab.recipes.chatgpt.presets import demo_config
from genlab.recipes.experiments import (
    calibration,
    emergence,
    knowledge_vs_language,
    scaling_laws,
    u_shaped,
)
from genlab.recipes.experiments.report import DOCS_DIR, load_average, write_page
from genlab.recipes.experiments.sweep_models import default_sweep, sweep_models
from genlab.recipes.scaling import ScalingSweepConfig

NAME = "scale_all"
SUITE = {
    scaling_laws: scaling_laws.ScalingLawsConfig,
    emergence: emergence.EmergenceConfig,
    calibration: calibration.CalibrationConfig,
    u_shaped: u_shaped.UShapedConfig,
    knowledge_vs_language: knowledge_vs_language.KnowledgeLanguageConfig,
}
BUDGET_MINUTES = 120  # issue 16: the five on a 2-core CPU, the sweep included


@dataclass
class ScaleAllConfig:
    """What every experiment of the suite shares."""

    demo: str = "runs/demo"  # calibration's SFT, PPO and DPO models (trained here if missing)
    device: str = "auto"  # where the models are evaluated
    out_dir: str = str(DOCS_DIR)
    sweep: ScalingSweepConfig = field(default_factory=default_sweep)


def run_experiment(cfg: ScaleAllConfig, command: str = "") -> dict[str, Any]:
    """The sweep, the demo if missing, then each experiment; a page of the parts and their
    minutes. Returns each part's minutes by name."""
    start = time.perf_counter()
    models = sweep_models(cfg.sweep)
    minutes: dict[str, float] = {"sweep": (time.perf_counter() - start) / 60}
    began = time.perf_counter()
    if not all(
        (Path(cfg.demo) / m / "model.safetensors").is_file() for m in calibration.RLHF_MODELS
    ):
        run_stages(demo_config(out=cfg.demo, seed=cfg.sweep.seed))
    minutes["demo"] = (time.perf_counter() - began) / 60
    for module, config in SUITE.items():
        sub = replace(config(), out_dir=cfg.out_dir, sweep=cfg.sweep)
        if hasattr(sub, "device"):
            sub.device = cfg.device
        if module is calibration:
            sub.demo = cfg.demo
        began = time.perf_counter()
        module.run_experiment(sub, f"{command}  # the {module.NAME} part of the suite")
        minutes[module.NAME] = (time.perf_counter() - began) / 60
    minutes["total"] = (time.perf_counter() - start) / 60
    rows = [["sweep (training, or reuse)", f"{minutes['sweep']:.1f}", "-"]]
    rows.append(["demo for calibration (training, or reuse)", f"{minutes['demo']:.1f}", "-"])
    rows += [
        [m.NAME.replace("_", "-"), f"{minutes[m.NAME]:.1f}", f"[{m.NAME}]({m.NAME}.md)"]
        for m in SUITE
    ]
    rows.append(["the suite, this call", f"{minutes['total']:.1f}", "-"])
    write_page(
        Path(cfg.out_dir) / f"{NAME}.md",
        "The scale suite",
        "Every scale claim of issue 16 (scaling laws, emergence, calibration, U-shaped tasks, "
        "knowledge against language) on one sweep of GPTs, and what the suite costs (budget: "
        f"{BUDGET_MINUTES} minutes on a 2-core CPU, training included).",
        markdown_table(["part", "minutes", "page"], rows),
        None,
        [
            f"sweep: grid `{cfg.sweep.grid}` in `{cfg.sweep.out}`, {cfg.sweep.parallel} runs at a "
            f"time; demo: `{cfg.demo}`; minutes are this call's (reused runs cost none); the "
            f"sweep's {len(models)} runs took {sum(m.seconds for m in models) / 60:.1f} "
            "minutes of process time in all when they trained (from their records)",
            f"machine load (1/5/15-minute averages) after: {load_average()}",
        ],
        command=command,
    )
    return minutes
