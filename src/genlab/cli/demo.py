"""``genlab demo``: genlab's main job, the ChatGPT recipe end to end on built-in data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from genlab.cli._app import app
from genlab.recipes.chatgpt import (
    PRESETS,
    aggregate,
    benchmarks_section,
    demo_command,
    preset_config,
    run_chatgpt,
    run_seeds,
    write_section,
)
from genlab.recipes.chatgpt.evaluate import EVAL_SPLITS
from genlab.recipes.chatgpt.report import format_figure


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("runs/demo"), help="Folder for every stage and the report."),
    preset: str = typer.Option(
        "demo", help=f"{' or '.join(PRESETS)}: demo takes 10-22 min on 2 cores, smoke seconds."
    ),
    seed: int = typer.Option(0, min=0, help="Seed of the world, the data and every stage."),
    seeds: int | None = typer.Option(
        None,
        min=1,
        help="Run seeds SEED..SEED+N-1, each into OUT/seed-K, and report the goals over them "
        "(means with 95% bootstrap intervals) in OUT/report.md.",
    ),
    eval_split: str = typer.Option(
        "test", help=f"{' or '.join(EVAL_SPLITS)}: evaluate tuning runs on validation."
    ),
    benchmarks: Path | None = typer.Option(
        None, help="Also write the goal table into this Markdown page (e.g. docs/benchmarks.md)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Keep the stages (and seeds) a previous run in --out finished."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars."),
) -> None:
    """Pretrain -> SFT -> reward model -> PPO and DPO on TinyWorld, then a measured report."""
    if seeds is not None:
        command = f"genlab demo --out {out} --preset {preset} --seed {seed} --seeds {seeds}"
        if eval_split != "test":
            command += f" --eval-split {eval_split}"
        summary = run_seeds(
            preset,
            out,
            range(seed, seed + seeds),
            eval_split=eval_split,
            resume=resume,
            progress=progress,
            command=command,
            benchmarks=benchmarks,
        )
        typer.echo(f"{len(summary['seeds'])} seeds; report: {out / 'report.md'}")
        _echo_goals(summary["goals"])
        return
    cfg = preset_config(preset, str(out), seed=seed, progress=progress)
    cfg = replace(cfg, eval=replace(cfg.eval, split=eval_split))
    report = run_chatgpt(cfg, resume=resume, command=demo_command(cfg))
    if benchmarks is not None:
        write_section(benchmarks, benchmarks_section(aggregate([report], report["command"])))
    models = report["evaluation"]["models"]
    typer.echo(f"done in {report['wall_seconds'] / 60:.1f} min; report: {out / 'report.md'}")
    for name, m in models.items():
        win = m.get("win_rate_vs_sft_sampled")
        typer.echo(
            f"  {name:10s} exact {m['accuracy_greedy']:.1%}  judge {m['judge_sampled']:.3f}"
            + (f"  win vs SFT {win:.1%}" if win is not None else "")
        )
    _echo_goals(report["goals"])
    typer.echo("chat with the result:")
    for line in report["chat_commands"]:
        typer.echo(f"  {line}")


def _echo_goals(rows: list[dict]) -> None:
    for row in rows:
        met = "" if row["met"] is None else "  met" if row["met"] else "  NOT met"
        typer.echo(
            f"  {row['label']}: {format_figure(row['figure'], row['measured'])}"
            + (f" (target {row['target']}){met}" if row["target"] else "")
        )
