"""``genlab demo``: genlab's main job, the ChatGPT recipe end to end on built-in data."""

from __future__ import annotations

from pathlib import Path

import typer

from genlab.cli._app import app
from genlab.recipes.chatgpt import PRESETS, preset_config, run_chatgpt


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("runs/demo"), help="Folder for every stage and the report."),
    preset: str = typer.Option(
        "demo", help=f"{' or '.join(PRESETS)}: demo takes ~15 min on 2 cores, smoke seconds."
    ),
    seed: int = typer.Option(0, min=0, help="Seed of the world, the data and every stage."),
    resume: bool = typer.Option(
        False, "--resume", help="Keep the stages a previous run in --out finished."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
) -> None:
    """Pretrain -> SFT -> reward model -> PPO and DPO on TinyWorld, then a measured report."""
    cfg = preset_config(preset, str(out), seed=seed, progress=progress)
    command = f"genlab demo --out {out} --preset {preset} --seed {seed}"
    report = run_chatgpt(cfg, resume=resume, command=command)
    models = report["evaluation"]["models"]
    typer.echo(f"done in {report['wall_seconds'] / 60:.1f} min; report: {out / 'report.md'}")
    for name, m in models.items():
        win = m.get("win_rate_vs_sft_sampled")
        typer.echo(
            f"  {name:10s} exact {m['accuracy_greedy']:.1%}  judge {m['judge_sampled']:.3f}"
            + (f"  win vs SFT {win:.1%}" if win is not None else "")
        )
    for goal in report["goals"]:
        typer.echo(
            f"  goal {'met' if goal['met'] else 'NOT met'}: {goal['goal']}: "
            f"{goal['measured']:.1%} (target {goal['target']:.0%})"
        )
    typer.echo("chat with the result:")
    for line in report["chat_commands"]:
        typer.echo(f"  {line}")
