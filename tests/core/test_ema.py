"""The weight average: its update rule, swapping it in, files, and exact resume in the trainer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from genlab.core.batches import TensorBatchSource
from genlab.core.ema import EMA, EMA_FILE, EMACallback, ema_metadata
from genlab.core.errors import GenlabError
from genlab.core.io import load_tensors
from genlab.core.train_config import TrainConfig
from genlab.core.trainer import Trainer


class WithCounter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.register_buffer("count", torch.zeros((), dtype=torch.long))


def test_update_follows_the_formula_without_warmup():
    torch.manual_seed(0)
    model = WithCounter()
    ema = EMA(model, decay=0.9, warmup=False)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model.count += 1
        ema.update(model)
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                expected[name] = 0.9 * expected[name] + 0.1 * value
            else:
                expected[name] = value.clone()
        for name in expected:
            torch.testing.assert_close(ema.shadow[name], expected[name], rtol=0, atol=1e-6)
    assert int(ema.shadow["count"]) == 3  # integer buffers are copied, not averaged
    assert ema.num_updates == 3


def test_warmup_decay_schedule():
    ema = EMA(nn.Linear(2, 2), decay=0.999)
    assert ema.decay_at(0) == pytest.approx(0.1)  # the first update nearly copies the weights
    assert ema.decay_at(90) == pytest.approx(91 / 100)
    assert ema.decay_at(10**6) == 0.999
    assert EMA(nn.Linear(2, 2), decay=0.999, warmup=False).decay_at(0) == 0.999
    with pytest.raises(GenlabError, match="decay"):
        EMA(nn.Linear(2, 2), decay=1.0)


def test_applied_swaps_in_and_restores():
    torch.manual_seed(0)
    model = nn.Linear(4, 4)
    ema = EMA(model, decay=0.5, warmup=False)
    own = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # shadow = own + 0.5
    x = torch.randn(2, 4)
    with ema.applied(model) as m:
        torch.testing.assert_close(m.weight, own + 0.5)
        y = m(x)
    torch.testing.assert_close(model.weight, own + 1.0)
    torch.testing.assert_close(y, x @ (own + 0.5).T + model.bias)


def test_save_load_round_trip_and_step_check(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 3)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.mul_(2)
    ema.update(model)
    ema.save(tmp_path / "e.safetensors", step=7)
    assert ema_metadata(tmp_path / "e.safetensors")["step"] == "7"
    other = EMA(nn.Linear(3, 3), decay=0.9)
    other.load(tmp_path / "e.safetensors", step=7)
    assert other.num_updates == 1
    for name in ema.shadow:
        assert torch.equal(other.shadow[name], ema.shadow[name])
    with pytest.raises(GenlabError, match="step 7, not of step 8"):
        other.load(tmp_path / "e.safetensors", step=8)
    with pytest.raises(GenlabError, match="lacks weight|unexpected weight|shape"):
        EMA(nn.Linear(3, 4)).load(tmp_path / "e.safetensors")


def _trainer(toy, run_dir, resume=False, **cfg):
    torch.manual_seed(0)
    x, y = toy.toy_data()
    settings = dict(
        max_steps=8,
        batch_size=16,
        lr=1e-2,
        warmup_steps=2,
        eval_every=0,
        checkpoint_every=3,
        keep_last=1,
        log_every=4,
        device="cpu",
        progress=False,
        tensorboard=False,
        plots=False,
    )
    settings.update(cfg)
    return Trainer(
        toy.ToyNet(),
        toy.step_fn,
        TensorBatchSource((x, y), seed=1),
        TrainConfig(**settings),
        run_dir,
        model_kind="toy",
        callbacks=[EMACallback(decay=0.9)],
        resume=resume,
    )


def _ema(trainer: Trainer) -> EMA:
    (callback,) = trainer.callbacks
    return callback.ema


def test_trainer_updates_after_every_step_and_resumes_exactly(toy, tmp_path):
    whole = _trainer(toy, tmp_path / "whole")
    whole.fit()
    assert _ema(whole).num_updates == 8
    assert not torch.equal(_ema(whole).shadow["out.weight"], whole.model.out.weight)

    first = _trainer(toy, tmp_path / "split")
    first.fit(until=3)
    first.close()
    resumed = _trainer(toy, tmp_path / "split", resume=True)
    assert resumed.step == 3 and _ema(resumed).num_updates == 3
    resumed.fit()
    for name, value in _ema(whole).shadow.items():
        assert torch.equal(_ema(resumed).shadow[name], value), name
    # the top-level copy is the final average; only the kept checkpoint's average remains
    saved = load_tensors(tmp_path / "split" / EMA_FILE)
    assert torch.equal(saved["out.weight"], _ema(whole).shadow["out.weight"])
    assert sorted(p.name for p in (tmp_path / "split" / "ema").iterdir()) == [
        "step_000008.safetensors"
    ]


def test_resume_without_the_average_is_refused(toy, tmp_path):
    run = _trainer(toy, tmp_path / "r")
    run.fit(until=3)
    run.close()
    (tmp_path / "r" / "ema" / "step_000003.safetensors").unlink()
    with pytest.raises(GenlabError, match="no weight average"):
        _trainer(toy, tmp_path / "r", resume=True)
