"""A toy classifier trained by genlab's Trainer, shared by the trainer tests.

Imported by the tests (through ``conftest.py``) and run as a script by them: in a subprocess
that gets SIGKILLed, and under torchrun for the multi-process checks. The model is residual MLP
blocks in an ``nn.ModuleList`` (so FSDP has blocks to shard) with LayerNorm (1-D weights that
AdamW must not decay) and optional dropout (0 for the multi-process equivalence: different
process layouts draw different masks).

    python trainer_toy.py RUN --steps 40 [--until N] [--micro M] [--dropout P] [--sleep S]
        [--resume] [--fsdp] [--checkpoint-every K] [--precision bf16]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genlab.core.batches import TensorBatchSource
from genlab.core.callbacks import Callback
from genlab.core.train_config import TrainConfig
from genlab.core.trainer import Trainer


class Block(nn.Module):
    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(2 * width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.proj(F.gelu(self.fc(self.norm(x)))))


class ToyNet(nn.Module):
    def __init__(
        self, d_in: int = 8, width: int = 16, depth: int = 2, classes: int = 4, dropout=0.0
    ):
        super().__init__()
        self.inp = nn.Linear(d_in, width)
        self.blocks = nn.ModuleList(Block(width, dropout) for _ in range(depth))
        self.out = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = block(h)
        return self.out(h)


def toy_data(n: int = 512, d_in: int = 8, classes: int = 4, seed: int = 0):
    """Inputs and labels of a fixed random linear rule: learnable in a few dozen steps."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g)
    y = (x @ torch.randn(d_in, classes, generator=g)).argmax(1)
    return x, y


def step_fn(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    x, y = batch
    logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    return loss, {"acc": (logits.argmax(1) == y).float().mean(), "samples": len(y)}


def make_trainer(
    run_dir,
    resume: bool = False,
    dropout: float = 0.0,
    sleep: float = 0.0,
    width: int = 16,
    callbacks: Sequence[Callback] = (),
    **cfg,
) -> Trainer:
    """A Trainer over the toy task; ``cfg`` overrides the small TrainConfig below."""
    torch.manual_seed(0)
    model = ToyNet(width=width, dropout=dropout)
    x, y = toy_data()
    settings = dict(
        max_steps=20,
        batch_size=16,
        lr=1e-2,
        warmup_steps=3,
        eval_every=10,
        eval_batches=2,
        checkpoint_every=5,
        log_every=5,
        device="cpu",
        progress=False,
        tensorboard=False,
        plots=False,
    )
    settings.update(cfg)

    def slow_step(model, batch):
        time.sleep(sleep)
        return step_fn(model, batch)

    return Trainer(
        model,
        slow_step if sleep else step_fn,
        TensorBatchSource((x[:448], y[:448]), seed=1),
        TrainConfig(**settings),
        run_dir,
        eval_data=TensorBatchSource((x[448:], y[448:]), seed=2),
        model_kind="toy",
        model_config={"width": width},
        callbacks=callbacks,
        resume=resume,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--until", type=int, default=None)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--micro", type=int, default=None)
    parser.add_argument("--checkpoint-every", type=int, default=5)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--fsdp", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)  # same float reductions in every process that is compared
    trainer = make_trainer(
        args.run_dir,
        resume=args.resume,
        dropout=args.dropout,
        sleep=args.sleep,
        max_steps=args.steps,
        batch_size=args.batch,
        micro_batch_size=args.micro,
        checkpoint_every=args.checkpoint_every,
        precision=args.precision,
        fsdp=args.fsdp,
    )
    trainer.fit(until=args.until)
    trainer.close()


if __name__ == "__main__":
    main()
