"""``genlab scaling``: fit scaling laws to runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genlab.cli._app import app, say
from genlab.cli.options import config_command
from genlab.core.io import atomic_write_json
from genlab.core.sweep import markdown_table
from genlab.recipes.scaling import ScalingSweepConfig, run_scaling_sweep
from genlab.scaling.fit import fit_points
from genlab.scaling.points import read_points

scaling = typer.Typer(
    help="Scaling laws: fit L(N, D) and the compute-optimal split.", no_args_is_help=True
)
app.add_typer(scaling, name="scaling")


@scaling.command()
def fit(
    source: Annotated[
        Path,
        typer.Argument(help='A JSONL of {"params", "tokens", "loss"} lines, or a sweep folder.'),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the fits as JSON here.")
    ] = None,
    resamples: Annotated[
        int, typer.Option("--resamples", min=0, help="Bootstrap refits for the intervals.")
    ] = 200,
    seed: Annotated[int, typer.Option("--seed", help="The bootstrap's draws.")] = 0,
) -> None:
    """Fit Chinchilla's L(N, D) = E + A/N^alpha + B/D^beta (and Kaplan's L(N), L(D)) to SOURCE."""
    record = fit_points(read_points(source), n_resamples=resamples, seed=seed)
    chin = record["chinchilla"]
    rows = [
        [
            name,
            f"{chin[name]:.4g}",
            "[{:.4g}, {:.4g}]".format(*chin["intervals"][name])
            if name in chin["intervals"]
            else "-",
        ]
        for name in ("E", "A", "B", "alpha", "beta")
    ]
    say(markdown_table(["coefficient", "fit", "95% interval"], rows))
    optimal = record["compute_optimal"]
    say(
        f"compute-optimal: N_opt ~ C^{chin['a']:.3f}, D_opt ~ C^{chin['b']:.3f}; at the largest "
        f"run's compute ({optimal['flops']:.3g} FLOPs) {optimal['tokens_per_param']:.1f} tokens per parameter"
    )
    if out is not None:
        atomic_write_json(out, record)
        say(f"wrote {out}")


@scaling.command()
@config_command(ScalingSweepConfig)
def sweep(cfg: ScalingSweepConfig) -> None:
    """Train GPTs over a grid of sizes and token budgets (--grid cpu|gpu|FILE), one run folder
    each, locally or on Ray (--launcher ray --address ...)."""
    rows = run_scaling_sweep(cfg)
    say(f"{len(rows)} runs in {cfg.out}; fit them with: genlab scaling fit {cfg.out}")
