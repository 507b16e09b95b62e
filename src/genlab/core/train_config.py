"""The trainer's settings as one dataclass: its defaults run, and the CLI is generated from it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from genlab.core.errors import GenlabError, refuse_invalid


@dataclass
class TrainConfig:
    """Trainer settings; the defaults run. Intervals of 0 turn a periodic action off (the last
    step still evaluates and checkpoints)."""

    max_steps: int = 1000  # optimizer steps in all
    batch_size: int = 32  # global rows per optimizer step, over all processes
    micro_batch_size: int | None = None  # rows per forward per process; None: batch / processes
    lr: float = 3e-4  # peak learning rate (after warmup)
    min_lr_ratio: float = 0.1  # the cosine decays to lr * this
    warmup_steps: int = 100  # linear warmup from 0 to lr
    weight_decay: float = 0.1  # AdamW decay of matrices (not of biases, norms)
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW's moment decays
    eps: float = 1e-8  # AdamW's epsilon
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16: CUDA only)
    compile: bool = False  # torch.compile the model
    fsdp: bool = False  # shard the model over processes instead of replicating it (DDP)
    eval_every: int = 100  # steps between held-out evaluations
    eval_batches: int = 10  # held-out batches per evaluation (the same ones each time)
    checkpoint_every: int = 100  # steps between checkpoints
    keep_last: int = 2  # checkpoints kept on disk
    log_every: int = 10  # steps between metrics.jsonl records
    seed: int = 0  # decides the initial weights and the data order
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    progress: bool = True  # show a progress bar
    tensorboard: bool = True  # also log to TensorBoard (when installed)
    plots: bool = True  # draw plots/*.png at the end

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise GenlabError(f"unknown training setting '{unknown[0]}'")
        values = dict(data)
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        return cls(**values)

    def validate(self) -> None:
        checks = {
            "max_steps": self.max_steps >= 1,
            "batch_size": self.batch_size >= 1,
            "micro_batch_size": self.micro_batch_size is None or self.micro_batch_size >= 1,
            "lr": self.lr > 0,
            "min_lr_ratio": 0 <= self.min_lr_ratio <= 1,
            "warmup_steps": self.warmup_steps >= 0,
            "grad_clip": self.grad_clip >= 0,
            "eval_every": self.eval_every >= 0,
            "eval_batches": self.eval_batches >= 1,
            "checkpoint_every": self.checkpoint_every >= 0,
            "keep_last": self.keep_last >= 1,
            "log_every": self.log_every >= 1,
            "seed": self.seed >= 0,
        }
        refuse_invalid(self, checks, "training setting")
