"""``genlab rlhf``: tune an SFT model against a reward model with PPO."""

from __future__ import annotations

from pathlib import Path

import typer

from genlab.align.ppo import RLHFConfig, rlhf
from genlab.cli._app import app

_DEFAULTS = RLHFConfig()


@app.command("rlhf")
def rlhf_cmd(
    policy: Path = typer.Option(..., help="SFT run folder: the policy and the frozen reference."),
    reward: Path = typer.Option(..., help="Reward model run folder (genlab reward)."),
    out: Path = typer.Option(Path(_DEFAULTS.out), help="Run folder (checkpoints, metrics)."),
    prompts: str = typer.Option(
        _DEFAULTS.prompts,
        help='tinyworld (train split of the task families) or a JSONL of {"prompt": ...} '
        'or {"messages": [...]}.',
    ),
    families: str | None = typer.Option(
        None, help="TinyWorld task families, a,b,c or all (default: the policy's)."
    ),
    steps: int = typer.Option(_DEFAULTS.steps, min=1, help="PPO iterations."),
    batch_size: int = typer.Option(_DEFAULTS.batch_size, min=1, help="Answers per iteration."),
    samples_per_prompt: int = typer.Option(_DEFAULTS.samples_per_prompt, min=1),
    ppo_epochs: int = typer.Option(_DEFAULTS.ppo_epochs, min=1, help="Passes over a rollout."),
    minibatch_size: int = typer.Option(
        _DEFAULTS.minibatch_size, min=1, help="Answers per optimizer step."
    ),
    kl_coef: float = typer.Option(_DEFAULTS.kl_coef, min=0.0, help="Weight of the KL penalty."),
    adaptive_kl: bool = typer.Option(
        False, "--adaptive-kl", help="Adapt the KL weight towards --target-kl."
    ),
    target_kl: float = typer.Option(
        _DEFAULTS.target_kl, min=0.0, help="Target KL per answer (nats)."
    ),
    lr: float = typer.Option(_DEFAULTS.lr, min=0.0, help="Policy learning rate."),
    value_lr: float = typer.Option(_DEFAULTS.value_lr, min=0.0, help="Value head learning rate."),
    max_new_tokens: int = typer.Option(_DEFAULTS.max_new_tokens, min=1),
    temperature: float = typer.Option(_DEFAULTS.temperature, min=0.0),
    sample_every: int = typer.Option(
        _DEFAULTS.sample_every, min=0, help="Write samples.jsonl every N iterations."
    ),
    checkpoint_every: int = typer.Option(_DEFAULTS.checkpoint_every, min=0),
    precision: str = typer.Option("fp32", help="fp32, bf16 (CPU or GPU) or fp16 (CUDA)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, mps."),
    seed: int = typer.Option(0, min=0),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
) -> None:
    """RLHF: optimise the policy against the reward model by PPO, on a KL leash to SFT."""
    cfg = RLHFConfig(
        policy=str(policy),
        reward=str(reward),
        out=str(out),
        prompts=prompts,
        families=families,
        steps=steps,
        batch_size=batch_size,
        samples_per_prompt=samples_per_prompt,
        ppo_epochs=ppo_epochs,
        minibatch_size=minibatch_size,
        kl_coef=kl_coef,
        adaptive_kl=adaptive_kl,
        target_kl=target_kl,
        lr=lr,
        value_lr=value_lr,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        sample_every=sample_every,
        checkpoint_every=checkpoint_every,
        precision=precision,
        device=device,
        seed=seed,
    )
    metrics = rlhf(cfg, resume=resume)
    typer.echo(
        f"done: {int(metrics['step'])} iterations, reward {metrics['reward']:.3f}, "
        f"KL to the SFT model {metrics['kl']:.3f} nats per answer"
    )
    typer.echo(f"samples as the policy changed: {out / 'samples.jsonl'}")
    typer.echo(f"chat with the result: genlab chat {out}")
