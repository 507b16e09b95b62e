"""``genlab sft``, ``genlab reward``, ``genlab dpo``: the alignment stages, each usable alone.

Each takes ``--data tinyworld`` (the built-in world's demonstrations or judge-ranked comparisons)
or a JSONL file of the user's own: ``{"messages": [...]}`` lines for SFT, ``{"prompt", "chosen",
"rejected"}`` lines for the reward model and DPO. The options come from the stage configs in
``genlab.recipes.stages``.
"""

from __future__ import annotations

import typer

from genlab.cli._app import app, say
from genlab.cli.options import config_command
from genlab.recipes.stages import DPOStage, RewardStage, SFTStage, run_dpo, run_reward, run_sft

RESUME_HELP = "Continue the run in --out."


@app.command("sft")
@config_command(SFTStage)
def sft_cmd(
    stage: SFTStage, resume: bool = typer.Option(False, "--resume", help=RESUME_HELP)
) -> None:
    """Supervised fine-tuning: learn to answer from demonstrations (assistant tokens only)."""
    metrics = run_sft(stage, resume=resume)
    say(
        f"done: {int(metrics['step'])} steps on {int(metrics['conversations'])} conversations, "
        f"held-out loss {metrics.get('eval_loss', float('nan')):.3f}"
    )
    say(f"chat with it: genlab chat {stage.sft.out}")


@app.command("reward")
@config_command(RewardStage)
def reward_cmd(
    stage: RewardStage, resume: bool = typer.Option(False, "--resume", help=RESUME_HELP)
) -> None:
    """Train a reward model on comparisons (Bradley-Terry loss)."""
    metrics = run_reward(stage, resume=resume)
    say(
        f"done: {int(metrics['step'])} steps, held-out pairwise accuracy "
        f"{metrics['test_accuracy']:.1%} on {int(metrics['test_pairs'])} comparisons"
    )
    say(f"use it for PPO: genlab ppo --policy SFT_RUN --reward {stage.reward.out}")


@app.command("dpo")
@config_command(DPOStage)
def dpo_cmd(
    stage: DPOStage, resume: bool = typer.Option(False, "--resume", help=RESUME_HELP)
) -> None:
    """Direct preference optimisation of an SFT model on comparisons."""
    metrics = run_dpo(stage, resume=resume)
    say(
        f"done: {int(metrics['step'])} steps on {int(metrics['train_pairs'])} comparisons, "
        f"held-out loss {metrics.get('eval_loss', float('nan')):.3f} (log 2 = 0.693 at the start)"
    )
    say(f"chat with it: genlab chat {stage.dpo.out}")
