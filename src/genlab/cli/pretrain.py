"""``genlab pretrain``: train a GPT on text by next-token prediction."""

from __future__ import annotations

import typer

from genlab.cli._app import app, say
from genlab.cli.options import config_command
from genlab.recipes.pretrain import PretrainConfig, pretrain


@app.command("pretrain")
@config_command(PretrainConfig)
def pretrain_cmd(
    cfg: PretrainConfig,
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
) -> None:
    """Pretrain a GPT (built-in TinyWorld text unless --data is given)."""
    metrics = pretrain(cfg, resume=resume)
    if "eval_loss" in metrics:
        say(
            f"done: {int(metrics['step'])} steps, validation loss {metrics['eval_loss']:.3f}, "
            f"perplexity {metrics['eval_perplexity']:.2f}"
        )
    say(f'continue text with: genlab generate --checkpoint {cfg.out} --prompt "..."')
