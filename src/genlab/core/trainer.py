"""The training engine: any ``nn.Module``, any loss, one process or many, resumable exactly.

The trainer knows no model. It is given a step function ``step_fn(model, batch) -> (loss,
metrics)`` and a :class:`~genlab.core.batches.BatchSource`, and owns everything around them:
AdamW with decay on matrices only and a warmup + cosine schedule (:mod:`genlab.core.optim`),
gradient accumulation and clipping, fp32/bf16/fp16 precision (:mod:`genlab.core.device`),
``torch.compile``, periodic evaluation, ``metrics.jsonl`` + TensorBoard + a progress bar
(:mod:`genlab.core.logging`), checkpoints and exact resume (:mod:`genlab.core.run`), and DDP or
FSDP under torchrun (:mod:`genlab.core.distributed`). Several losses and optimizers (a GAN's two,
PPO's policy and value head) are :class:`~genlab.core.phases.Phase`s of one step; what a run does
besides its steps (EMA, sample grids, evaluation hooks) are :mod:`~genlab.core.callbacks`.

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

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genlab.core.batches import BatchSource
from genlab.core.callbacks import Callback
from genlab.core.device import autocast, check_precision, grad_scaler, to_device
from genlab.core.distributed import (
    all_reduce_sum,
    gradient_sync,
    init_distributed,
    shutdown,
    wrap_model,
)
from genlab.core.errors import GenlabError
from genlab.core.logging import COUNTS, MetricsLogger, MetricsWindow, ProgressBar
from genlab.core.optim import build_adamw, set_lr, warmup_cosine
from genlab.core.phases import OptimizerGroup, Phase, StepFn
from genlab.core.rng import seed_everything
from genlab.core.run import RunFolder, load_checkpoint
from genlab.core.train_config import TrainConfig

# Fields that decide which rows each step reads: a resumed run must keep them.
DATA_FIELDS = ("batch_size", "seed")


def _every(step: int, interval: int) -> bool:
    return interval > 0 and step % interval == 0


class Trainer:
    """Train ``model`` by ``step_fn`` on ``train_data``, writing the run folder ``run_dir``.

    Construction does the set-up (process group under torchrun, device, seeding, compile and
    DDP/FSDP wrap, optimizers, and with ``resume=True`` loading the newest complete checkpoint);
    :meth:`fit` trains to ``config.max_steps`` (or to a given step: call it again to go on).
    ``step_fn`` is one step function, or a sequence of :class:`Phase` (several losses and
    optimizers, named in ``optimizers``); ``callbacks`` add EMA, sample grids, evaluation hooks.
    """

    def __init__(
        self,
        model: nn.Module,
        step_fn: StepFn | Sequence[Phase],
        train_data: BatchSource,
        config: TrainConfig,
        run_dir: str | Path,
        eval_data: BatchSource | None = None,
        model_kind: str = "model",
        model_config: dict[str, Any] | None = None,
        extra_files: Mapping[str, bytes] | None = None,
        callbacks: Sequence[Callback] = (),
        optimizers: Mapping[str, OptimizerGroup] | None = None,
        resume: bool = False,
    ):
        config.validate()
        self.config = config
        self.phases = list(step_fn) if isinstance(step_fn, Sequence) else [Phase(step_fn)]
        self.train_data = train_data
        self.eval_data = eval_data
        self.callbacks = list(callbacks)
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
        kept = {name: getattr(config, name) for name in DATA_FIELDS}
        resume_from = self.folder.check_resume(resume, kept)

        seed_everything(config.seed + self.info.rank)
        self.model = model.to(self.device)  # the user's module; checkpoints hold its state dict
        net = wrap_model(self.model, self.device, fsdp=True) if config.fsdp else self.model
        if config.compile:
            net = torch.compile(net)
        self.net = net if config.fsdp else wrap_model(net, self.device)
        self.groups = dict(optimizers or {"optimizer": OptimizerGroup()})
        self.optimizers = {name: self._build(group) for name, group in self.groups.items()}
        for phase in self.phases:
            unknown = [n for n in phase.optimizers if n not in self.optimizers]
            if unknown:
                raise GenlabError(f"a training phase steps an unknown optimizer '{unknown[0]}'")
        self.scaler = grad_scaler(self.device, config.precision)

        self.step = 0
        self.tokens_seen = 0
        if resume_from:
            state = load_checkpoint(self.run_dir, self.net, self.optimizers)
            self.step = state["step"]
            self.tokens_seen = int(state.get("tokens_seen", 0))
            if self.scaler is not None and state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            saved = state.get("callbacks", {})
            for callback in self.callbacks:
                if callback.name in saved:
                    callback.load_state_dict(saved[callback.name])
        self._checkpoint_step = self.step
        self.stop_requested = False
        self.folder.write_config()
        self.logger = MetricsLogger(
            self.run_dir,
            enabled=self.info.is_main,
            tensorboard=config.tensorboard,
            resume_step=self.step,
        )
        for callback in self.callbacks:
            callback.on_start(self)

    def _build(self, group: OptimizerGroup) -> torch.optim.Optimizer:
        cfg = self.config
        return build_adamw(
            self.model.get_submodule(group.module),
            lr=cfg.lr if group.lr is None else group.lr,
            weight_decay=cfg.weight_decay if group.weight_decay is None else group.weight_decay,
            betas=cfg.betas,
            eps=cfg.eps,
            device_type=self.device.type,
            fused=False if cfg.fsdp else None,
        )

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
        """Run optimizer step ``step`` (0-based): each phase's forward/backward over this rank's
        micro-batches, clip, step. Returns ``(loss, gradient norm, metrics)`` (several phases:
        the summed loss, the last norm, and each phase's loss/norm/metrics under its name); a
        non-finite loss or gradient raises before the weights change."""
        self.net.train()
        if len(self.phases) == 1:
            return self._run_phase(self.phases[0], step)
        total, record = 0.0, {}
        for phase in self.phases:
            loss, norm, metrics = self._run_phase(phase, step)
            total += loss
            record[f"{phase.name}_loss"] = loss
            record[f"{phase.name}_grad_norm"] = norm
            record.update(
                {k if k in COUNTS else f"{phase.name}_{k}": v for k, v in metrics.items()}
            )
        return total, norm, record

    def _run_phase(self, phase: Phase, step: int) -> tuple[float, float, dict[str, float]]:
        cfg = self.config
        optimizers = [self.optimizers[name] for name in phase.optimizers]
        loss_sum = torch.zeros((), device=self.device)
        sums: dict[str, Any] = {}
        for micro in range(self.accumulation):
            start, stop = self._rows(micro)
            batch = to_device(
                self.train_data.get_batch(step, start, stop, cfg.batch_size), self.device
            )
            with gradient_sync(self.net, micro == self.accumulation - 1):
                with autocast(self.device, cfg.precision):
                    loss, metrics = phase.step_fn(self.net, batch)
                scaled = loss / self.accumulation
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            loss_sum += loss.detach().float()
            self._accumulate(sums, metrics)
        if self.scaler is not None:
            for optimizer in optimizers:
                self.scaler.unscale_(optimizer)
        params = [p for name in phase.optimizers for p in self._module(name).parameters()]
        norm = torch.nn.utils.clip_grad_norm_(
            params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        )
        if hasattr(norm, "full_tensor"):  # a DTensor under FSDP
            norm = norm.full_tensor()
        n = self.accumulation * self.info.world_size
        loss_value, metrics, (grad_norm,) = self._reduce(loss_sum, sums, [norm], n)
        if not math.isfinite(loss_value) or (self.scaler is None and not math.isfinite(grad_norm)):
            for optimizer in self.optimizers.values():
                optimizer.zero_grad(set_to_none=True)
            self._raise_non_finite(step, loss_value, grad_norm)
        for optimizer in optimizers:
            if self.scaler is not None:
                self.scaler.step(optimizer)
            else:
                optimizer.step()
        if self.scaler is not None:
            self.scaler.update()
        # every gradient, not only this phase's: the next phase's loss starts from zero
        self.model.zero_grad(set_to_none=True)
        return loss_value, grad_norm, metrics

    def _module(self, optimizer: str) -> nn.Module:
        return self.model.get_submodule(self.groups[optimizer].module)

    def _raise_non_finite(self, step: int, loss: float, grad_norm: float) -> None:
        what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {grad_norm}"
        kept = (
            f"the last good checkpoint (step {self._checkpoint_step}) is kept in {self.run_dir}"
            if self._checkpoint_step
            else f"no checkpoint was written to {self.run_dir} yet"
        )
        raise GenlabError(
            f"non-finite {what} at step {step + 1}: training stopped; {kept}. Lower the "
            "learning rate, clip gradients, or train in fp32/bf16"
        )

    # Evaluation and checkpoints ----------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss and metrics over ``eval_batches`` fixed global batches of ``eval_data``
        (the same rows every time, so evaluations are comparable), prefixed ``eval_``. With
        several phases, the first phase's loss is the evaluation loss."""
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
                    loss, metrics = self.phases[0].step_fn(self.net, to_device(batch, self.device))
                loss_sum += loss.detach().float()
                self._accumulate(sums, metrics)
        self.net.train()
        n = cfg.eval_batches * self.accumulation * self.info.world_size
        loss, metrics, _ = self._reduce(loss_sum, sums, [], n)
        metrics = {k: v for k, v in metrics.items() if k not in COUNTS}
        return {"eval_loss": loss, **{f"eval_{k}": v for k, v in metrics.items()}}

    def save_checkpoint(self) -> Path:
        """Checkpoint the current step with every callback's state (every rank calls; rank 0
        writes)."""
        for callback in self.callbacks:
            callback.on_checkpoint(self)
        state: dict[str, Any] = {
            "samples_seen": self.step * self.config.batch_size,
            "tokens_seen": self.tokens_seen,
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        saved = {cb.name: cb.state_dict() for cb in self.callbacks}
        saved = {name: value for name, value in saved.items() if value is not None}
        if saved:
            state["callbacks"] = saved
        path = self.folder.save(self.step, self.net, self.optimizers, state)
        self._checkpoint_step = self.step
        for callback in self.callbacks:
            callback.on_checkpoint_end(self, path)
        return path

    # The loop ----------------------------------------------------------------------------------

    def set_lr(self) -> float:
        """Set every optimizer's rate for the current step (its base rate times warmup-cosine);
        returns the run's rate."""
        cfg = self.config
        factor = warmup_cosine(self.step, cfg.max_steps, cfg.warmup_steps, cfg.min_lr_ratio)
        for name, optimizer in self.optimizers.items():
            base = self.groups[name].lr
            set_lr(optimizer, (cfg.lr if base is None else base) * factor)
        return cfg.lr * factor

    def request_stop(self) -> None:
        """End the run after the current step, with a checkpoint there, as if it were the last:
        how a callback's guard stops training (PPO's against reward hacking). Every rank must
        request it at the same step."""
        self.stop_requested = True

    def fit(self, until: int | None = None) -> dict[str, float]:
        """Train from the current step to ``max_steps`` (or stop after step ``until``, with a
        checkpoint there, to interleave other work, or when a callback requests a stop); return
        the last logged metrics."""
        cfg = self.config
        end = cfg.max_steps if until is None else min(until, cfg.max_steps)
        bar = ProgressBar(cfg.max_steps, self.step, enabled=self.info.is_main and cfg.progress)
        last: dict[str, float] = {}
        window = MetricsWindow()
        start_time = time.perf_counter()
        try:
            while self.step < end and not self.stop_requested:
                tic = time.perf_counter()
                lr = self.set_lr()
                loss, grad_norm, metrics = self.train_step(self.step)
                self.step += 1
                self.tokens_seen += int(metrics.get("tokens", 0))
                for callback in self.callbacks:
                    callback.on_step_end(self)
                window.add(loss, metrics, cfg.batch_size, time.perf_counter() - tic)
                done = self.step == cfg.max_steps or self.stop_requested
                final = self.step == end or self.stop_requested
                bar.update(1, loss=loss, **window.rate_postfix())
                if self.step % cfg.log_every == 0 or final:
                    record = {
                        **window.summary(),
                        "lr": lr,
                        "grad_norm": grad_norm,
                        "time_s": time.perf_counter() - start_time,
                    }
                    self.logger.log(self.step, record)
                    last.update(record)
                    window = MetricsWindow()
                if _every(self.step, cfg.eval_every) or done:
                    record = self._evaluate_and_hook()
                    if record:
                        self.logger.log(self.step, record)
                        bar.write(
                            f"step {self.step}: "
                            + ", ".join(f"{k} {v:.4g}" for k, v in record.items())
                        )
                        last.update(record)
                if _every(self.step, cfg.checkpoint_every) or final:
                    self.save_checkpoint()
        except BaseException:
            bar.close()
            self.close(failed=True)
            raise
        bar.close()
        if self.step >= cfg.max_steps or self.stop_requested:
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
        for callback in self.callbacks:
            extra = callback.on_evaluate(self)
            record.update({k: float(v) for k, v in (extra or {}).items()})
        return record
