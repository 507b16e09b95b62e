"""``genlab sft``, ``genlab reward``, ``genlab dpo``: the alignment stages, each usable alone.

Each takes ``--data tinyworld`` (the built-in world's demonstrations or judge-ranked comparisons)
or a JSONL file of the user's own: ``{"messages": [...]}`` lines for SFT, ``{"prompt", "chosen",
"rejected"}`` lines for the reward model and DPO.
"""

from __future__ import annotations

from pathlib import Path

import typer

from genlab.align.data import TINYWORLD
from genlab.align.dpo import DPOConfig, dpo
from genlab.align.reward import RewardConfig, train_reward
from genlab.align.sft import SFTConfig, sft
from genlab.cli._app import app
from genlab.core.train_config import TrainConfig

DATA_HELP = "tinyworld (built in) or a JSONL file of your own"
FAMILIES_HELP = "TinyWorld task families: a,b,c or all (default: a set a small model learns)."
WORLD_HELP = "TinyWorld seed (default: the world the base model was trained on)."


def _train(
    defaults: TrainConfig,
    max_steps: int,
    batch_size: int,
    lr: float,
    warmup_steps: int,
    eval_every: int,
    precision: str,
    device: str,
    seed: int,
) -> TrainConfig:
    return TrainConfig(
        **{
            **defaults.to_dict(),
            "betas": defaults.betas,
            "max_steps": max_steps,
            "batch_size": batch_size,
            "lr": lr,
            "warmup_steps": warmup_steps,
            "eval_every": eval_every,
            "precision": precision,
            "device": device,
            "seed": seed,
        }
    )


_SFT, _RM, _DPO = SFTConfig().train, RewardConfig().train, DPOConfig().train


@app.command("sft")
def sft_cmd(
    base: Path = typer.Option(..., help="Pretrained GPT run folder to fine-tune."),
    data: str = typer.Option(TINYWORLD, help=f'{DATA_HELP} of {{"messages": [...]}} lines.'),
    out: Path = typer.Option(Path("runs/sft"), help="Run folder (a chat model)."),
    families: str | None = typer.Option(None, help=FAMILIES_HELP),
    world_seed: int | None = typer.Option(None, help=WORLD_HELP),
    n_train: int = typer.Option(SFTConfig.n_train, min=1, help="TinyWorld demonstrations."),
    packed: bool = typer.Option(True, "--packed/--no-packed", help="Pack short conversations."),
    max_steps: int = typer.Option(_SFT.max_steps, min=1),
    batch_size: int = typer.Option(_SFT.batch_size, min=1, help="Rows per optimizer step."),
    lr: float = typer.Option(_SFT.lr, min=0.0),
    warmup_steps: int = typer.Option(_SFT.warmup_steps, min=0),
    eval_every: int = typer.Option(_SFT.eval_every, min=0),
    precision: str = typer.Option("fp32", help="fp32, bf16 (CPU or GPU) or fp16 (CUDA)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, mps."),
    seed: int = typer.Option(0, min=0),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
) -> None:
    """Supervised fine-tuning: learn to answer from demonstrations (assistant tokens only)."""
    train = _train(
        _SFT, max_steps, batch_size, lr, warmup_steps, eval_every, precision, device, seed
    )
    cfg = SFTConfig(
        base=str(base),
        out=str(out),
        data=data,
        families=families,
        world_seed=world_seed,
        n_train=n_train,
        packed=packed,
        train=train,
    )
    metrics = sft(cfg, resume=resume)
    typer.echo(
        f"done: {int(metrics['step'])} steps on {int(metrics['conversations'])} conversations, "
        f"held-out loss {metrics.get('eval_loss', float('nan')):.3f}"
    )
    typer.echo(f"chat with it: genlab chat {out}")


@app.command("reward")
def reward_cmd(
    base: Path = typer.Option(..., help="GPT run folder for the backbone (an SFT run)."),
    data: str = typer.Option(
        TINYWORLD, help=f'{DATA_HELP} of {{"prompt", "chosen", "rejected"}} lines.'
    ),
    out: Path = typer.Option(Path("runs/reward"), help="Run folder (a reward model)."),
    families: str | None = typer.Option(None, help=FAMILIES_HELP),
    world_seed: int | None = typer.Option(None, help=WORLD_HELP),
    n_pairs: int = typer.Option(RewardConfig.n_pairs, min=1, help="TinyWorld comparisons."),
    label_noise: float = typer.Option(
        RewardConfig.label_noise, min=0.0, max=1.0, help="Share of flipped TinyWorld labels."
    ),
    max_steps: int = typer.Option(_RM.max_steps, min=1),
    batch_size: int = typer.Option(_RM.batch_size, min=1, help="Comparisons per step."),
    lr: float = typer.Option(_RM.lr, min=0.0),
    warmup_steps: int = typer.Option(_RM.warmup_steps, min=0),
    eval_every: int = typer.Option(_RM.eval_every, min=0),
    precision: str = typer.Option("fp32", help="fp32, bf16 (CPU or GPU) or fp16 (CUDA)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, mps."),
    seed: int = typer.Option(0, min=0),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
) -> None:
    """Train a reward model on comparisons (Bradley-Terry loss)."""
    train = _train(
        _RM, max_steps, batch_size, lr, warmup_steps, eval_every, precision, device, seed
    )
    cfg = RewardConfig(
        base=str(base),
        out=str(out),
        data=data,
        families=families,
        world_seed=world_seed,
        n_pairs=n_pairs,
        label_noise=label_noise,
        train=train,
    )
    metrics = train_reward(cfg, resume=resume)
    typer.echo(
        f"done: {int(metrics['step'])} steps, held-out pairwise accuracy "
        f"{metrics['test_accuracy']:.1%} on {int(metrics['test_pairs'])} comparisons"
    )
    typer.echo(f"use it for RLHF: genlab rlhf --policy SFT_RUN --reward {out}")


@app.command("dpo")
def dpo_cmd(
    policy: Path = typer.Option(..., help="SFT run folder: the policy and the frozen reference."),
    data: str = typer.Option(
        TINYWORLD, help=f'{DATA_HELP} of {{"prompt", "chosen", "rejected"}} lines.'
    ),
    out: Path = typer.Option(Path("runs/dpo"), help="Run folder (a chat model)."),
    families: str | None = typer.Option(None, help=FAMILIES_HELP),
    world_seed: int | None = typer.Option(None, help=WORLD_HELP),
    n_pairs: int = typer.Option(DPOConfig.n_pairs, min=1, help="TinyWorld comparisons."),
    label_noise: float = typer.Option(
        DPOConfig.label_noise, min=0.0, max=1.0, help="Share of flipped TinyWorld labels."
    ),
    beta: float = typer.Option(DPOConfig.beta, min=0.0, help="Strength of the KL leash."),
    max_steps: int = typer.Option(_DPO.max_steps, min=1),
    batch_size: int = typer.Option(_DPO.batch_size, min=1, help="Comparisons per step."),
    lr: float = typer.Option(_DPO.lr, min=0.0),
    warmup_steps: int = typer.Option(_DPO.warmup_steps, min=0),
    eval_every: int = typer.Option(_DPO.eval_every, min=0),
    precision: str = typer.Option("fp32", help="fp32, bf16 (CPU or GPU) or fp16 (CUDA)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, mps."),
    seed: int = typer.Option(0, min=0),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
) -> None:
    """Direct preference optimisation of an SFT model on comparisons."""
    train = _train(
        _DPO, max_steps, batch_size, lr, warmup_steps, eval_every, precision, device, seed
    )
    cfg = DPOConfig(
        policy=str(policy),
        out=str(out),
        data=data,
        families=families,
        world_seed=world_seed,
        n_pairs=n_pairs,
        label_noise=label_noise,
        beta=beta,
        train=train,
    )
    metrics = dpo(cfg, resume=resume)
    typer.echo(
        f"done: {int(metrics['step'])} steps on {int(metrics['train_pairs'])} comparisons, "
        f"held-out loss {metrics.get('eval_loss', float('nan')):.3f} (log 2 = 0.693 at the start)"
    )
    typer.echo(f"chat with it: genlab chat {out}")
