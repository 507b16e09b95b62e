"""``genlab ppo``: tune an SFT model against a reward model with PPO (the RLHF stage)."""

from __future__ import annotations

from pathlib import Path

import typer

from genlab.cli._app import app, say
from genlab.cli.options import config_command
from genlab.recipes.stages import PPOStage, run_ppo


@app.command("ppo")
@config_command(PPOStage)
def ppo_cmd(
    stage: PPOStage,
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
) -> None:
    """RLHF: optimise the policy against the reward model by PPO, on a KL leash to SFT."""
    metrics = run_ppo(stage, resume=resume)
    out = Path(stage.ppo.out)
    say(
        f"done: {int(metrics['step'])} iterations, reward {metrics['reward']:.3f}, "
        f"KL to the SFT model {metrics['kl']:.3f} nats per answer"
    )
    say(f"samples as the policy changed: {out / 'samples.jsonl'}")
    say(f"chat with the result: genlab chat {out}")
