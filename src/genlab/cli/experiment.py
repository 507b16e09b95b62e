"""``genlab experiment``: each lecture-level claim as one command that writes a measured table
and a figure into ``docs/experiments/`` (see ``genlab.recipes.experiments``)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from genlab.cli._app import app
from genlab.core.errors import GenlabError
from genlab.recipes.experiments import diffusion_guidance, diffusion_prediction, diffusion_steps
from genlab.recipes.experiments.report import DOCS_DIR, SWEEPS_DIR

experiment = typer.Typer(
    help="Run an experiment: a claim, measured, written to docs/experiments/.",
    no_args_is_help=True,
)
app.add_typer(experiment, name="experiment")

Run = Annotated[Path, typer.Option("--run", help="A run of 'genlab image train'.")]
Features = Annotated[
    Path | None,
    typer.Option("--features", help="Feature network folder (default: genlab's cache)."),
]
Guidance = Annotated[float, typer.Option("--guidance", min=0.0, help="Guidance scale.")]
Seed = Annotated[int, typer.Option("--seed", min=0, help="Captions and initial noise.")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward.")]
Precision = Annotated[str, typer.Option("--precision", help="fp32 or bf16 while sampling.")]
OutDir = Annotated[Path, typer.Option("--out-dir", help="Where the page and figures go.")]
SweepDir = Annotated[
    Path,
    typer.Option(
        "--sweep-dir",
        help="Where each setting's run folder goes (under the experiment's name); settings "
        "already measured there are reused.",
    ),
]
Parallel = Annotated[
    int,
    typer.Option(
        "--parallel",
        min=1,
        help="Settings run at once, each in its own process (seconds per image are "
        "comparable only at 1).",
    ),
]


Images = Annotated[int, typer.Option("--n", min=2, help="Generated images per table row.")]


def _command(ctx: typer.Context) -> str:
    """This invocation as a command line with every option spelled out (defaults included),
    so an experiment's page says exactly how to make it again."""
    parts = [ctx.command_path]
    for name, value in ctx.params.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parts += [flag] if value else []
        elif value is not None:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def _numbers(text: str, kind: type, option: str) -> list:
    """A comma-separated list of numbers, or a one-line error naming the option."""
    try:
        values = [kind(s) for s in text.split(",") if s.strip()]
    except ValueError:
        values = []
    if not values:
        raise GenlabError(f"{option} takes comma-separated numbers, e.g. 10,20,50; got '{text}'")
    return values


@experiment.command("diffusion-steps")
def steps(
    ctx: typer.Context,
    run: Run,
    features: Features = None,
    n: Images = 500,
    guidance: Guidance = 3.0,
    ddim_steps: Annotated[
        str, typer.Option("--ddim-steps", help="DDIM step counts, comma-separated.")
    ] = "10,20,50,100",
    ddpm_steps: Annotated[int, typer.Option("--ddpm-steps", min=1)] = 1000,
    seed: Seed = 0,
    batch_size: BatchSize = 100,
    precision: Precision = "fp32",
    out_dir: OutDir = DOCS_DIR,
    sweep_dir: SweepDir = SWEEPS_DIR,
    parallel: Parallel = 1,
) -> None:
    """DDPM's 1000 ancestral steps against DDIM at 10/20/50/100: FID, adherence, s/image."""
    counts = _numbers(ddim_steps, int, "--ddim-steps")
    diffusion_steps.run_experiment(
        run,
        features,
        n,
        guidance,
        counts,
        ddpm_steps,
        seed,
        batch_size,
        precision,
        out_dir,
        sweep_dir,
        parallel,
        _command(ctx),
    )
    typer.echo(f"wrote {out_dir / diffusion_steps.NAME}.md")


@experiment.command("diffusion-prediction")
def prediction(
    ctx: typer.Context,
    base: Annotated[Path, typer.Option("--base", help="Run whose settings every arm uses.")],
    runs: Annotated[Path, typer.Option("--runs", help="Folder for the arms' runs.")],
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=1, help="Default: the base run's.")
    ] = None,
    predictions: Annotated[
        str, typer.Option("--predictions", help="Arms, comma-separated: eps, x0, v.")
    ] = "eps,x0",
    reuse_base: Annotated[
        bool, typer.Option("--reuse-base", help="The base run is the arm of its own target.")
    ] = False,
    features: Features = None,
    n: Images = 500,
    guidance: Guidance = 3.0,
    steps: Annotated[int, typer.Option("--steps", min=1, help="DDIM steps.")] = 50,
    seed: Seed = 0,
    batch_size: BatchSize = 100,
    precision: Precision = "fp32",
    out_dir: OutDir = DOCS_DIR,
    sweep_dir: SweepDir = SWEEPS_DIR,
    parallel: Parallel = 1,
) -> None:
    """Predict the noise or the image: arms trained alike but for --prediction, then sampled."""
    arms = [p.strip() for p in predictions.split(",") if p.strip()]
    diffusion_prediction.run_experiment(
        base,
        runs,
        max_steps,
        arms,
        reuse_base,
        features,
        n,
        guidance,
        steps,
        seed,
        batch_size,
        precision,
        out_dir,
        sweep_dir,
        parallel,
        _command(ctx),
    )
    typer.echo(f"wrote {out_dir / diffusion_prediction.NAME}.md")


@experiment.command("diffusion-guidance")
def guidance_sweep(
    ctx: typer.Context,
    run: Run,
    features: Features = None,
    n: Images = 500,
    scales: Annotated[
        str, typer.Option("--scales", help="Guidance scales, comma-separated.")
    ] = "0,1,2,3,4,6,8",
    steps: Annotated[int, typer.Option("--steps", min=1, help="DDIM steps.")] = 50,
    seed: Seed = 0,
    batch_size: BatchSize = 100,
    precision: Precision = "fp32",
    out_dir: OutDir = DOCS_DIR,
    sweep_dir: SweepDir = SWEEPS_DIR,
    parallel: Parallel = 1,
) -> None:
    """Classifier-free guidance scale from 0 to 8: caption adherence against FID."""
    values = _numbers(scales, float, "--scales")
    diffusion_guidance.run_experiment(
        run,
        features,
        n,
        values,
        steps,
        seed,
        batch_size,
        precision,
        out_dir,
        sweep_dir,
        parallel,
        _command(ctx),
    )
    typer.echo(f"wrote {out_dir / diffusion_guidance.NAME}.md")
