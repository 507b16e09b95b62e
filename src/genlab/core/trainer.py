"""The training engine: any ``nn.Module``, any loss, one process or many, resumable exactly.

The trainer knows no model. It is given a step function ``step_fn(model, batch) -> (loss,
metrics)`` and a :class:`~genlab.core.batches.BatchSource`, and owns everything around them:
AdamW with decay on matrices only and a warmup + cosine schedule (:mod:`genlab.core.optim`),
gradient accumulation and clipping, fp32/bf16/fp16 precision (:mod:`genlab.core.device`),
``torch.compile``, periodic evaluation, ``metrics.jsonl`` + TensorBoard + a progress bar
(:mod:`genlab.core.logging`), checkpoints and exact resume (:mod:`genlab.core.run`), and DDP or
FSDP under torchrun (:mod:`genlab.core.distributed`). Each of those modules is usable alone: a
GAN or PPO loop that does not fit ``fit()`` builds its own loop from them.

The batch size is global: ``batch_size`` rows per optimizer step, whatever the number of
processes. Each of the ``W`` processes runs ``A = batch_size / (W * micro_batch_size)``
accumulation micro-batches; micro-batch ``k`` of rank ``r`` is rows ``[(k W + r) m, (k W + r + 1)
m)`` of the step's global batch. Each micro-loss is divided by ``A`` and DDP averages over
ranks, so the gradient is that of the mean loss over the whole global batch (for a step
function returning a mean over its rows): the run computes the same thing on 1 or N processes,
up to float summation order. Dropout draws different masks in different layouts, so that
equivalence is exact only without dropout.

``step_fn`` is called with the wrapped model (DDP, compiled): call it (``model(x)``) rather than
its other methods, or gradients will not synchronise; :func:`~genlab.core.distributed.unwrap`
gives the module itself. Its metrics (floats or 0-d tensors, the same keys every call) are
averaged over micro-batches and ranks, except the counts ``tokens`` and ``samples``, which are
summed and turned into throughput (``tokens_per_s``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genlab.core.batches import Batch, BatchSource
from genlab.core.device import autocast, check_precision, grad_scaler
from genlab.core.distributed import (
    all_reduce_sum,
    gradient_sync,
    init_distributed,
    shutdown,
    unwrap,
    wrap_model,
)
from genlab.core.errors import GenlabError
from genlab.core.logging import MetricsLogger, ProgressBar
from genlab.core.optim import build_adamw, set_lr, warmup_cosine
from genlab.core.rng import seed_everything
from genlab.core.run import RunFolder, load_checkpoint

StepFn = Callable[[nn.Module, Batch], tuple[torch.Tensor, Mapping[str, Any]]]
EvalHook = Callable[[nn.Module, int], Mapping[str, float] | None]
COUNTS = ("tokens", "samples")
# Fields that decide which rows each step reads: a resumed run must keep them.
DATA_FIELDS = ("batch_size", "seed")


@dataclass
class TrainConfig:
    """Trainer settings; the defaults run. Intervals of 0 turn a periodic action off (the last
    step still evaluates and checkpoints)."""

    max_steps: int = 1000
    batch_size: int = 32  # global rows per optimizer step, over all processes
    micro_batch_size: int | None = None  # rows per forward per process; None: batch / processes
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16: CUDA only)
    compile: bool = False
    fsdp: bool = False  # shard the model over processes instead of replicating it (DDP)
    eval_every: int = 100
    eval_batches: int = 10
    checkpoint_every: int = 100
    keep_last: int = 2
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    tensorboard: bool = True
    plots: bool = True

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
        for name, ok in checks.items():
            if not ok:
                raise GenlabError(f"invalid training setting {name}={getattr(self, name)!r}")


def to_device(batch: Batch, device: torch.device) -> Batch:
    """Move every tensor in a (nested tuple/list/dict) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def _every(step: int, interval: int) -> bool:
    return interval > 0 and step % interval == 0


class Trainer:
    """Train ``model`` by ``step_fn`` on ``train_data``, writing the run folder ``run_dir``.

    Construction does the set-up (process group under torchrun, device, seeding, compile and
    DDP/FSDP wrap, optimizer, and with ``resume=True`` loading the newest complete checkpoint);
    :meth:`fit` trains to ``config.max_steps`` (or to a given step: call it again to go on).
    ``on_eval(model, step)`` runs at each evaluation
    on every rank (e.g. to sample text) and may return metrics to log.
    """

    def __init__(
        self,
        model: nn.Module,
        step_fn: StepFn,
        train_data: BatchSource,
        config: TrainConfig,
        run_dir: str | Path,
        eval_data: BatchSource | None = None,
        model_kind: str = "model",
        model_config: dict[str, Any] | None = None,
        extra_files: Mapping[str, bytes] | None = None,
        on_eval: EvalHook | None = None,
        resume: bool = False,
    ):
        config.validate()
        self.config = config
        self.step_fn = step_fn
        self.train_data = train_data
        self.eval_data = eval_data
        self.on_eval = on_eval
        self.run_dir = Path(run_dir)
        self.info, self.device, self._owns_group = init_distributed(config.device)
        check_precision(config.precision, self.device)

        world = self.info.world_size
        self.micro_batch_size = config.micro_batch_size or config.batch_size // world
        rows_per_round = world * self.micro_batch_size
        if self.micro_batch_size < 1 or config.batch_size % rows_per_round:
            raise GenlabError(
                f"batch size {config.batch_size} does not split into {world} process(es) x "
                f"micro-batches of {config.micro_batch_size or self.micro_batch_size}: make it a "
                "multiple of their product"
            )
        self.accumulation = config.batch_size // rows_per_round

        self.folder = RunFolder(
            self.run_dir,
            model_kind,
            config=model_config,
            train=config.to_dict(),
            extra_files=extra_files,
            keep_last=config.keep_last,
        )
        resume_from = self._check_folder(resume)

        seed_everything(config.seed + self.info.rank)
        self.model = model.to(self.device)  # the user's module; checkpoints hold its state dict
        net = wrap_model(self.model, self.device, fsdp=True) if config.fsdp else self.model
        if config.compile:
            net = torch.compile(net)
        self.net = net if config.fsdp else wrap_model(net, self.device)
        self.optimizer = build_adamw(
            self.model,
            lr=config.lr,
            weight_decay=config.weight_decay,
            betas=config.betas,
            eps=config.eps,
            device_type=self.device.type,
            fused=False if config.fsdp else None,
        )
        self.scaler = grad_scaler(self.device, config.precision)

        self.step = 0
        self.tokens_seen = 0
        if resume_from:
            state = load_checkpoint(self.run_dir, self.net, {"optimizer": self.optimizer})
            self.step = state["step"]
            self.tokens_seen = int(state.get("tokens_seen", 0))
            if self.scaler is not None and state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
        self._checkpoint_step = self.step
        self.folder.write_config()
        self.logger = MetricsLogger(
            self.run_dir,
            enabled=self.info.is_main,
            tensorboard=config.tensorboard,
            resume_step=self.step,
        )

    def _check_folder(self, resume: bool) -> bool:
        """Refuse to overwrite a run by accident; on resume, check the run can continue exactly.
        Returns whether there is a checkpoint to resume from."""
        saved = self.folder.saved_config()
        if not resume:
            if self.folder.has_checkpoints():
                raise GenlabError(
                    f"{self.run_dir} already holds a run with checkpoints: resume it (--resume) "
                    "or choose another output folder"
                )
            return False
        if saved is None:
            if self.run_dir.is_dir() and any(self.run_dir.iterdir()):
                raise GenlabError(
                    f"{self.run_dir} is not a genlab run folder (no config.json): cannot resume"
                )
            return False
        for name in DATA_FIELDS:
            before = saved.get("train", {}).get(name)
            now = getattr(self.config, name)
            if before is not None and before != now:
                raise GenlabError(
                    f"cannot resume {self.run_dir} with {name}={now}: the run used {before}, "
                    "and the data order depends on it"
                )
        return self.folder.has_checkpoints()

    # One optimizer step ----------------------------------------------------------------------

    def _rows(self, micro: int) -> tuple[int, int]:
        """This rank's rows of the global batch for accumulation micro-batch ``micro``."""
        m = self.micro_batch_size
        start = (micro * self.info.world_size + self.info.rank) * m
        return start, start + m

    def _reduce(
        self, loss_sum: torch.Tensor, sums: dict[str, Any], extra: list[torch.Tensor], n: int
    ) -> tuple[float, dict[str, float], list[float]]:
        """Sum the loss and metric sums over ranks and divide by the ``n`` micro-batches they
        cover (counts stay sums); fetch everything (with ``extra``) in one transfer."""
        keys = sorted(sums)
        parts = [loss_sum.float().reshape(())]
        for key in keys:
            value = sums[key]
            if not isinstance(value, torch.Tensor):
                value = torch.tensor(value)
            value = value.float()
            parts.append(value.to(self.device).reshape(()))
        reduced = all_reduce_sum(torch.stack(parts))
        values = torch.cat([reduced, *(t.float().reshape(1) for t in extra)]).tolist()
        metrics = {}
        for key, value in zip(keys, values[1 : 1 + len(keys)], strict=True):
            metrics[key] = value if key in COUNTS else value / n
        return values[0] / n, metrics, values[1 + len(keys) :]

    def _accumulate(self, sums: dict[str, Any], metrics: Mapping[str, Any]) -> None:
        for key, value in metrics.items():
            value = value.detach() if isinstance(value, torch.Tensor) else float(value)
            sums[key] = sums[key] + value if key in sums else value

    def train_step(self, step: int) -> tuple[float, float, dict[str, float]]:
        """Run optimizer step ``step`` (0-based): forward/backward over this rank's micro-batches,
        clip, step. Returns ``(mean loss, gradient norm, metrics)``; a non-finite loss or
        gradient raises before the weights change."""
        cfg = self.config
        self.net.train()
        loss_sum = torch.zeros((), device=self.device)
        sums: dict[str, Any] = {}
        for micro in range(self.accumulation):
            start, stop = self._rows(micro)
            batch = to_device(
                self.train_data.get_batch(step, start, stop, cfg.batch_size), self.device
            )
            with gradient_sync(self.net, micro == self.accumulation - 1):
                with autocast(self.device, cfg.precision):
                    loss, metrics = self.step_fn(self.net, batch)
                scaled = loss / self.accumulation
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            loss_sum += loss.detach().float()
            self._accumulate(sums, metrics)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        )
        if hasattr(norm, "full_tensor"):  # a DTensor under FSDP
            norm = norm.full_tensor()
        n = self.accumulation * self.info.world_size
        loss_value, metrics, (grad_norm,) = self._reduce(loss_sum, sums, [norm], n)
        if not math.isfinite(loss_value) or (self.scaler is None and not math.isfinite(grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            what = (
                f"loss {loss_value}"
                if not math.isfinite(loss_value)
                else f"gradient norm {grad_norm}"
            )
            kept = (
                f"the last good checkpoint (step {self._checkpoint_step}) is kept in {self.run_dir}"
                if self._checkpoint_step
                else f"no checkpoint was written to {self.run_dir} yet"
            )
            raise GenlabError(
                f"non-finite {what} at step {step + 1}: training stopped; {kept}. Lower the "
                "learning rate, clip gradients, or train in fp32/bf16"
            )
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_value, grad_norm, metrics

    # Evaluation and checkpoints ----------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss and metrics over ``eval_batches`` fixed global batches of ``eval_data``
        (the same rows every time, so evaluations are comparable), prefixed ``eval_``."""
        if self.eval_data is None:
            return {}
        cfg = self.config
        self.net.eval()
        loss_sum = torch.zeros((), device=self.device)
        sums: dict[str, Any] = {}
        for index in range(cfg.eval_batches):
            for micro in range(self.accumulation):
                start, stop = self._rows(micro)
                batch = self.eval_data.get_batch(index, start, stop, cfg.batch_size)
                with autocast(self.device, cfg.precision):
                    loss, metrics = self.step_fn(self.net, to_device(batch, self.device))
                loss_sum += loss.detach().float()
                self._accumulate(sums, metrics)
        self.net.train()
        n = cfg.eval_batches * self.accumulation * self.info.world_size
        loss, metrics, _ = self._reduce(loss_sum, sums, [], n)
        metrics = {k: v for k, v in metrics.items() if k not in COUNTS}
        return {"eval_loss": loss, **{f"eval_{k}": v for k, v in metrics.items()}}

    def save_checkpoint(self) -> Path:
        """Checkpoint the current step (every rank calls; rank 0 writes)."""
        state: dict[str, Any] = {
            "samples_seen": self.step * self.config.batch_size,
            "tokens_seen": self.tokens_seen,
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        path = self.folder.save(self.step, self.net, {"optimizer": self.optimizer}, state)
        self._checkpoint_step = self.step
        return path

    # The loop ----------------------------------------------------------------------------------

    def fit(self, until: int | None = None) -> dict[str, float]:
        """Train from the current step to ``max_steps`` (or stop after step ``until``, with a
        checkpoint there, to interleave other work); return the last logged metrics."""
        cfg = self.config
        end = cfg.max_steps if until is None else min(until, cfg.max_steps)
        bar = ProgressBar(cfg.max_steps, self.step, enabled=self.info.is_main and cfg.progress)
        last: dict[str, float] = {}
        window = _Window()
        start_time = time.perf_counter()
        try:
            while self.step < end:
                tic = time.perf_counter()
                lr = cfg.lr * warmup_cosine(
                    self.step, cfg.max_steps, cfg.warmup_steps, cfg.min_lr_ratio
                )
                set_lr(self.optimizer, lr)
                loss, grad_norm, metrics = self.train_step(self.step)
                self.step += 1
                self.tokens_seen += int(metrics.get("tokens", 0))
                window.add(loss, metrics, cfg.batch_size, time.perf_counter() - tic)
                done = self.step == cfg.max_steps
                bar.update(1, loss=loss, **window.rate_postfix())
                if self.step % cfg.log_every == 0 or self.step == end:
                    record = {
                        **window.summary(),
                        "lr": lr,
                        "grad_norm": grad_norm,
                        "time_s": time.perf_counter() - start_time,
                    }
                    self.logger.log(self.step, record)
                    last.update(record)
                    window = _Window()
                if _every(self.step, cfg.eval_every) or done:
                    record = self._evaluate_and_hook()
                    if record:
                        self.logger.log(self.step, record)
                        bar.write(
                            f"step {self.step}: "
                            + ", ".join(f"{k} {v:.4g}" for k, v in record.items())
                        )
                        last.update(record)
                if _every(self.step, cfg.checkpoint_every) or self.step == end:
                    self.save_checkpoint()
        except BaseException:
            bar.close()
            self.close(failed=True)
            raise
        bar.close()
        if self.step >= cfg.max_steps:
            if cfg.plots and self.info.is_main and self.logger.path.is_file():
                from genlab.core.plot import plot_run

                plot_run(self.run_dir)
            self.close()
        return {"step": float(self.step), **last}

    def close(self, failed: bool = False) -> None:
        """Close the metrics file and, if this trainer opened it, the process group. :meth:`fit`
        calls it once training is complete or has failed; call it after a ``fit(until=...)``
        that ends the script early."""
        self.logger.close()
        if self._owns_group:
            shutdown(wait=not failed)  # a failed rank must not wait for ranks that went on
            self._owns_group = False

    def _evaluate_and_hook(self) -> dict[str, float]:
        record = self.evaluate()
        if self.on_eval is not None:
            extra = self.on_eval(unwrap(self.net), self.step)
            record.update({k: float(v) for k, v in (extra or {}).items()})
        return record


class _Window:
    """Sums over the steps since the last log line: mean loss/metrics and throughput."""

    def __init__(self) -> None:
        self.steps = 0
        self.loss = 0.0
        self.seconds = 0.0
        self.samples = 0
        self.metrics: dict[str, float] = {}

    def add(self, loss: float, metrics: Mapping[str, float], samples: int, seconds: float) -> None:
        self.steps += 1
        self.loss += loss
        self.seconds += seconds
        self.samples += samples
        for key, value in metrics.items():
            self.metrics[key] = self.metrics.get(key, 0.0) + value

    def rates(self) -> dict[str, float]:
        seconds = max(self.seconds, 1e-9)
        out = {"samples_per_s": self.samples / seconds}
        if "tokens" in self.metrics:
            out["tokens_per_s"] = self.metrics["tokens"] / seconds
        return out

    def rate_postfix(self) -> dict[str, str]:
        rates = self.rates()
        if "tokens_per_s" in rates:
            return {"tok/s": f"{rates['tokens_per_s']:.0f}"}
        return {"samples/s": f"{rates['samples_per_s']:.1f}"}

    def summary(self) -> dict[str, float]:
        means = {k: v / self.steps for k, v in self.metrics.items() if k not in COUNTS}
        return {"loss": self.loss / self.steps, **means, **self.rates()}
