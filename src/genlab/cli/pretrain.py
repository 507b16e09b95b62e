"""``genlab pretrain``: train a GPT on text by next-token prediction."""

from __future__ import annotations

from pathlib import Path

import typer

from genlab.cli._app import app
from genlab.core.train_config import TrainConfig
from genlab.recipes.pretrain import BUILTIN, PretrainConfig, pretrain


@app.command("pretrain")
def pretrain_cmd(
    out: Path = typer.Option(Path("runs/pretrain"), help="Run folder (checkpoints, metrics)."),
    data: str = typer.Option(
        BUILTIN, help="tinyworld (built in), a text file, a folder, a .jsonl, or hf:NAME[:SPLIT]."
    ),
    text_field: str = typer.Option("text", help="JSONL / dataset field holding the text."),
    preset: str = typer.Option("mini", help="Model size: tiny, mini, small, base, gpt2, ..."),
    block_size: int = typer.Option(128, min=8, help="Context length in tokens."),
    vocab_size: int | None = typer.Option(None, min=256, help="Size of the trained tokenizer."),
    tokenizer: Path | None = typer.Option(None, help="Use this tokenizer instead of training one."),
    pos: str | None = typer.Option(None, help="Positional encoding: learned or rope."),
    dropout: float = typer.Option(0.0, min=0.0, max=1.0),
    init_from: str | None = typer.Option(None, help="hf:FOLDER: continue a transformers GPT-2."),
    builtin_chars: int = typer.Option(1_500_000, min=10_000, help="Size of the built-in corpus."),
    max_steps: int = typer.Option(500, min=1),
    batch_size: int = typer.Option(16, min=1, help="Global sequences per optimizer step."),
    micro_batch_size: int | None = typer.Option(None, min=1, help="Per process and forward."),
    lr: float = typer.Option(2e-3, min=0.0),
    warmup_steps: int = typer.Option(50, min=0),
    weight_decay: float = typer.Option(0.1, min=0.0),
    grad_clip: float = typer.Option(1.0, min=0.0),
    eval_every: int = typer.Option(100, min=0),
    checkpoint_every: int = typer.Option(100, min=0),
    keep_last: int = typer.Option(2, min=1),
    precision: str = typer.Option("fp32", help="fp32, bf16 (CPU or GPU) or fp16 (CUDA)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model."),
    fsdp: bool = typer.Option(False, "--fsdp", help="Shard the model over processes."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, mps."),
    seed: int = typer.Option(0, min=0),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
) -> None:
    """Pretrain a GPT (built-in TinyWorld text unless --data is given)."""
    train = TrainConfig(
        max_steps=max_steps,
        batch_size=batch_size,
        micro_batch_size=micro_batch_size,
        lr=lr,
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        grad_clip=grad_clip,
        eval_every=eval_every,
        checkpoint_every=checkpoint_every,
        keep_last=keep_last,
        precision=precision,
        compile=compile,
        fsdp=fsdp,
        device=device,
        seed=seed,
    )
    cfg = PretrainConfig(
        out=str(out),
        data=data,
        text_field=text_field,
        builtin_chars=builtin_chars,
        preset=preset,
        block_size=block_size,
        vocab_size=vocab_size,
        tokenizer=str(tokenizer) if tokenizer else None,
        pos=pos,
        dropout=dropout,
        init_from=init_from,
        train=train,
    )
    metrics = pretrain(cfg, resume=resume)
    if "eval_loss" in metrics:
        typer.echo(
            f"done: {int(metrics['step'])} steps, validation loss {metrics['eval_loss']:.3f}, "
            f"perplexity {metrics['eval_perplexity']:.2f}"
        )
    typer.echo(f'continue text with: genlab generate --checkpoint {out} --prompt "..."')
