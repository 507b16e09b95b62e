"""An exponential moving average of a model's weights, and the trainer callback that keeps one.

Averaging the iterates of stochastic gradient descent (Polyak & Juditsky, 1992, "Acceleration of
Stochastic Approximation by Averaging") smooths out the noise of the last steps. Diffusion models
sample from such an average rather than from the raw weights: DDPM (Ho et al., 2020) keeps
``shadow <- decay * shadow + (1 - decay) * weights`` after every optimizer step with decay
0.9999, and the samples of the average are visibly cleaner. A short run cannot wait for 0.9999 to
forget the random initialisation, so the decay warms up as in TensorFlow's
``ExponentialMovingAverage(num_updates=...)``: ``min(decay, (1 + n) / (10 + n))`` at update n.

:class:`EMA` knows no model: it averages every floating-point entry of a module's state dict
(and copies the others), so its shadow loads into the same module as its weights would.
:class:`EMACallback` keeps one during training (a trainer callback, so it combines with any
other): ``RUN/ema/step_NNNNNN.safetensors`` is written *before* checkpoint N, so every complete
checkpoint has its average and a resumed run continues the very same average;
``RUN/ema.safetensors`` mirrors the newest for samplers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from torch import Tensor, nn

from genlab.core.checkpoint import check_state_dict
from genlab.core.distributed import dist_info
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_save_tensors, load_tensors
from genlab.core.run import CHECKPOINTS_DIR, step_dir_name

if TYPE_CHECKING:
    from genlab.core.trainer import Trainer
from genlab.core.callbacks import Callback

EMA_FILE = "ema.safetensors"
EMA_DIR = "ema"


class EMA:
    """Shadow weights ``shadow <- d * shadow + (1 - d) * weights`` of one module.

    ``warmup`` uses ``d = min(decay, (1 + n) / (10 + n))`` at the n-th update (n from 0), so
    the first updates follow the weights closely; without it ``d = decay`` throughout.
    """

    def __init__(self, module: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise GenlabError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.shadow: dict[str, Tensor] = {
            name: value.detach().clone() for name, value in module.state_dict().items()
        }

    def decay_at(self, n: int) -> float:
        """The decay used by update number ``n`` (0-based)."""
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Move the shadow towards ``module``'s current weights (after an optimizer step)."""
        d = self.decay_at(self.num_updates)
        for name, value in module.state_dict().items():
            shadow = self.shadow[name]
            if shadow.is_floating_point():
                shadow.lerp_(value.detach().to(shadow.dtype), 1.0 - d)
            else:
                shadow.copy_(value)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Load the shadow weights into ``module``."""
        module.load_state_dict(self.shadow, strict=True)

    @contextlib.contextmanager
    def applied(self, module: nn.Module) -> Iterator[nn.Module]:
        """Run the block with ``module`` holding the shadow weights; its own come back after."""
        saved = {name: value.detach().clone() for name, value in module.state_dict().items()}
        self.copy_to(module)
        try:
            yield module
        finally:
            module.load_state_dict(saved, strict=True)

    def save(self, path: str | os.PathLike, step: int) -> None:
        """Write the shadow (the module's own tensor names) atomically, tagged with ``step``."""
        meta = {
            "kind": "ema",
            "step": str(step),
            "num_updates": str(self.num_updates),
            "decay": repr(self.decay),
            "warmup": str(self.warmup),
        }
        atomic_save_tensors(path, self.shadow, metadata=meta)

    def load(self, path: str | os.PathLike, step: int | None = None) -> None:
        """Restore a shadow written by :meth:`save`; ``step``, if given, must be its step."""
        meta = ema_metadata(path)
        if step is not None and meta.get("step") != str(step):
            raise GenlabError(
                f"{path} holds the weight average of step {meta.get('step')}, not of step {step}"
            )
        tensors = load_tensors(path, what="EMA weights")
        check_state_dict(self.shadow, tensors, str(path))
        self.shadow = {name: tensors[name].to(self.shadow[name].device) for name in self.shadow}
        self.num_updates = int(meta.get("num_updates", 0))


def ema_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The header of an EMA file (step, num_updates, decay), with a one-line error if absent."""
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"EMA weights not found: {path}")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("kind") != "ema":
        raise GenlabError(f"{path} is not a genlab EMA file (its header has no kind 'ema')")
    return meta


class EMACallback(Callback):
    """Keep an EMA of the model's weights during training, checkpointed with the run.

    The average lives in ``self.ema`` (sample with ``with callback.ema.applied(model): ...``).
    ``RUN/ema/step_NNNNNN.safetensors`` is written before checkpoint N is published, so every
    complete checkpoint has its average and a resumed run continues the very same average.
    """

    name = "ema"

    def __init__(self, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise GenlabError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.ema: EMA | None = None

    def on_start(self, trainer: Trainer) -> None:
        if trainer.config.fsdp:
            raise GenlabError(
                "an EMA of FSDP-sharded weights is not supported: train without --fsdp"
            )
        self.ema = EMA(trainer.model, self.decay, self.warmup)
        if trainer.step > 0:
            path = ema_path(trainer.run_dir, trainer.step)
            if not path.is_file():
                raise GenlabError(
                    f"{trainer.run_dir} has a checkpoint at step {trainer.step} but no weight "
                    f"average for it ({path}); it was not written by an EMA run"
                )
            self.ema.load(path, trainer.step)

    def on_step_end(self, trainer: Trainer) -> None:
        assert self.ema is not None
        self.ema.update(trainer.model)

    def on_checkpoint(self, trainer: Trainer) -> None:
        if dist_info().is_main and self.ema is not None:
            self.ema.save(ema_path(trainer.run_dir, trainer.step), trainer.step)

    def on_checkpoint_end(self, trainer: Trainer, path: Path) -> None:
        """Mirror the newest average at the top; drop those of checkpoints no longer kept."""
        if not dist_info().is_main or self.ema is None:
            return
        run_dir = trainer.run_dir
        self.ema.save(run_dir / EMA_FILE, trainer.step)
        kept = {p.name for p in (run_dir / CHECKPOINTS_DIR).glob("step_*")}
        for file in (run_dir / EMA_DIR).glob("step_*.safetensors"):
            if file.name.removesuffix(".safetensors") not in kept:
                file.unlink(missing_ok=True)


def ema_path(run_dir: Path, step: int) -> Path:
    """Where the average of checkpoint ``step`` lives."""
    return run_dir / EMA_DIR / f"{step_dir_name(step)}.safetensors"
