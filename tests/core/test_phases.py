"""Several losses and optimizers in one trainer step (a GAN-shaped toy), callbacks with state,
trainable-only checkpoints, and exact resume in bf16 (CPU) and fp16 with loss scaling (CUDA)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from genlab.core.batches import TensorBatchSource
from genlab.core.callbacks import ADAPTER_FILE, Callback, TrainableCheckpoint
from genlab.core.errors import GenlabError
from genlab.core.logging import read_metrics
from genlab.core.optim import build_adamw
from genlab.core.phases import OptimizerGroup, Phase
from genlab.core.train_config import TrainConfig
from genlab.core.trainer import Trainer


class Pair(nn.Module):
    """Two nets in one container, as a GAN's generator and discriminator."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first = nn.Linear(4, 4)
        self.second = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(torch.tanh(self.first(x))).squeeze(-1)


def second_step(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict]:
    x, y = batch
    return F.mse_loss(model(x), y), {"samples": len(y)}


def first_step(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict]:
    x, y = batch
    return F.mse_loss(model(x), -y), {"samples": len(y)}


def data() -> TensorBatchSource:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 4, generator=g)
    return TensorBatchSource((x, x.sum(1)), seed=0)


def two_phase_trainer(run, callbacks=(), resume=False, **cfg) -> Trainer:
    settings = dict(
        max_steps=6,
        batch_size=8,
        lr=1e-2,
        warmup_steps=0,
        eval_every=0,
        checkpoint_every=3,
        log_every=1,
        device="cpu",
        progress=False,
        tensorboard=False,
        plots=False,
    )
    settings.update(cfg)
    return Trainer(
        Pair(),
        [Phase(second_step, ("second",), "d"), Phase(first_step, ("first",), "g")],
        data(),
        TrainConfig(**settings),
        run,
        model_kind="pair",
        callbacks=callbacks,
        optimizers={"first": OptimizerGroup("first"), "second": OptimizerGroup("second", lr=0.1)},
        resume=resume,
    )


def test_each_phase_steps_only_its_optimizer_by_its_own_loss(tmp_path):
    trainer = two_phase_trainer(tmp_path / "run")
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train_step(0)
    after = trainer.model.state_dict()
    assert all(not torch.equal(start[k], after[k]) for k in start)  # both moved

    # by hand: phase d steps `second` on its loss; then phase g steps `first` on its own loss,
    # through the already-updated `second`
    ref = Pair()
    opt_d = build_adamw(ref.second, lr=0.1, weight_decay=0.1)
    opt_g = build_adamw(ref.first, lr=1e-2, weight_decay=0.1)
    batch = data().get_batch(0, 0, 8, 8)
    for step, opt, params in ((second_step, opt_d, ref.second), (first_step, opt_g, ref.first)):
        loss, _ = step(ref, batch)
        ref.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params.parameters(), 1.0)
        opt.step()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(after[k], v, atol=1e-6, rtol=0)


def test_phases_log_their_own_losses_and_resume_exactly(tmp_path):
    two_phase_trainer(tmp_path / "straight").fit()
    part = two_phase_trainer(tmp_path / "resumed")
    part.fit(until=3)
    part.close()
    two_phase_trainer(tmp_path / "resumed", resume=True).fit()
    for name in ("model.safetensors", "optimizer.safetensors"):
        a = load_file(str(tmp_path / "straight" / name))
        b = load_file(str(tmp_path / "resumed" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    record = read_metrics(tmp_path / "straight")[-1]
    assert {"d_loss", "g_loss", "d_grad_norm", "g_grad_norm"} <= set(record)
    assert record["loss"] == pytest.approx(record["d_loss"] + record["g_loss"])


def test_a_phase_naming_an_unknown_optimizer_is_refused(tmp_path):
    with pytest.raises(GenlabError, match="unknown optimizer 'nope'"):
        Trainer(
            Pair(),
            [Phase(second_step, ("nope",))],
            data(),
            TrainConfig(max_steps=1, batch_size=8, device="cpu", progress=False),
            tmp_path / "run",
        )


class Counter(Callback):
    """Counts steps; its count travels in the checkpoints."""

    name = "counter"

    def __init__(self) -> None:
        self.count = 0
        self.started_at: int | None = None

    def on_start(self, trainer: Trainer) -> None:
        self.started_at = trainer.step

    def on_step_end(self, trainer: Trainer) -> None:
        self.count += 1

    def on_evaluate(self, trainer: Trainer) -> Mapping[str, float]:
        return {"count": float(self.count)}

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.count = state["count"]


def test_callback_state_is_checkpointed_and_restored(tmp_path):
    first = Counter()
    trainer = two_phase_trainer(tmp_path / "run", callbacks=[first])
    trainer.fit(until=3)
    trainer.close()
    assert first.count == 3 and first.started_at == 0
    again = Counter()
    two_phase_trainer(tmp_path / "run", callbacks=[again], resume=True).fit()
    assert again.started_at == 3 and again.count == 6
    assert read_metrics(tmp_path / "run")[-1]["count"] == 6.0


def test_trainable_checkpoint_holds_only_what_trains(tmp_path):
    trainer = two_phase_trainer(tmp_path / "run", callbacks=[TrainableCheckpoint()])
    trainer.model.first.requires_grad_(False)
    trainer.fit()
    saved = load_file(str(tmp_path / "run" / ADAPTER_FILE))
    assert set(saved) == {"second.weight", "second.bias"}
    assert torch.equal(saved["second.weight"], trainer.model.second.weight.detach())
    assert (tmp_path / "run" / "checkpoints" / "step_000006" / ADAPTER_FILE).is_file()


@pytest.mark.parametrize(
    "precision",
    [
        "bf16",
        pytest.param(
            "fp16",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 needs CUDA"),
        ),
    ],
)
def test_resume_is_exact_in_reduced_precision(tmp_path, precision):
    """bf16 autocast on any device; fp16 with its GradScaler, whose state is checkpointed."""
    device = "cuda" if precision == "fp16" else "cpu"
    kw = dict(precision=precision, device=device)
    two_phase_trainer(tmp_path / "straight", **kw).fit()
    part = two_phase_trainer(tmp_path / "resumed", **kw)
    part.fit(until=3)
    part.close()
    resumed = two_phase_trainer(tmp_path / "resumed", resume=True, **kw)
    if precision == "fp16":
        assert resumed.scaler is not None and resumed.scaler.get_scale() == part.scaler.get_scale()
    resumed.fit()
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
