"""``genlab experiment``: each lecture-level claim as one command that writes a measured table
and a figure into ``docs/experiments/`` (see ``genlab.recipes.experiments``). Each verb's
options are generated from its experiment's config dataclass."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import typer

from genlab.cli._app import app
from genlab.cli.options import config_command, option_names
from genlab.core.config import format_value
from genlab.recipes.experiments import (
    adapters,
    ar_vs_nar,
    diffusion_guidance,
    diffusion_prediction,
    diffusion_steps,
    rlhf_vs_size,
)
from genlab.recipes.experiments.adapters import AdaptersConfig
from genlab.recipes.experiments.ar_vs_nar import ARvsNARConfig
from genlab.recipes.experiments.diffusion_guidance import GuidanceConfig
from genlab.recipes.experiments.diffusion_prediction import PredictionConfig
from genlab.recipes.experiments.diffusion_steps import StepsConfig
from genlab.recipes.experiments.rlhf_vs_size import RLHFSizeConfig

experiment = typer.Typer(
    help="Run an experiment: a claim, measured, written to docs/experiments/.",
    no_args_is_help=True,
)
app.add_typer(experiment, name="experiment")
PREDICTION_ALIASES = {"run": "--base"}  # the flag its docs and pages use for the base run


def command_line(verb: str, cfg: Any, aliases: Mapping[str, str] | None = None) -> str:
    """``cfg`` (an experiment's config) as the ``genlab experiment VERB`` command line that
    makes it again, every setting spelled out (defaults too, should they change), by its alias
    where it has one."""
    parts = ["genlab", "experiment", verb]
    for key, flags in option_names(type(cfg), aliases).items():
        flag, value = flags[-1], getattr(cfg, key)
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{flag[2:]}")
        else:
            parts += [flag, shlex.quote(format_value(value))]
    return " ".join(parts)


def _run(module: ModuleType, cfg: Any, aliases: Mapping[str, str] | None = None) -> None:
    """Run ``module``'s experiment, recording the command line that makes it again (the verb
    is its ``NAME`` dashed), and say where its page went."""
    module.run_experiment(cfg, command_line(module.NAME.replace("_", "-"), cfg, aliases))
    typer.echo(f"wrote {Path(cfg.out_dir) / module.NAME}.md")


@experiment.command("diffusion-steps")
@config_command(StepsConfig)
def steps(cfg: StepsConfig) -> None:
    """DDPM's 1000 ancestral steps against DDIM at 10/20/50/100: FID, adherence, s/image."""
    _run(diffusion_steps, cfg)


@experiment.command("diffusion-prediction")
@config_command(PredictionConfig, aliases=PREDICTION_ALIASES)
def prediction(cfg: PredictionConfig) -> None:
    """Predict the noise or the image: arms trained alike but for --prediction, then sampled."""
    _run(diffusion_prediction, cfg, PREDICTION_ALIASES)


@experiment.command("diffusion-guidance")
@config_command(GuidanceConfig)
def guidance(cfg: GuidanceConfig) -> None:
    """Classifier-free guidance scale from 0 to 8: caption adherence against FID."""
    _run(diffusion_guidance, cfg)


@experiment.command("rlhf-vs-size")
@config_command(RLHFSizeConfig)
def rlhf_vs_size_verb(cfg: RLHFSizeConfig) -> None:
    """Small RLHF vs big SFT: the demo's PPO and DPO against SFT on a model 4x its size."""
    _run(rlhf_vs_size, cfg)


@experiment.command("adapters")
@config_command(AdaptersConfig)
def adapters_verb(cfg: AdaptersConfig) -> None:
    """One base, many tasks: full fine-tuning vs LoRA, bottleneck adapters and soft prompts."""
    _run(adapters, cfg)


@experiment.command("ar-vs-nar")
@config_command(ARvsNARConfig)
def ar_vs_nar_verb(cfg: ARvsNARConfig) -> None:
    """AR greedy and beam against mask-predict at 1-10 iterations: BLEU and ms per sentence."""
    _run(ar_vs_nar, cfg)
