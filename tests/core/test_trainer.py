"""The trainer in one process: accumulation, schedule, logging, evaluation, resume, failures."""

import json

import pytest
import torch
from safetensors.torch import load_file

from genlab.core.callbacks import Callback, EvalHook
from genlab.core.errors import GenlabError
from genlab.core.logging import read_metrics
from genlab.core.optim import warmup_cosine
from genlab.core.phases import Phase
from genlab.core.run import latest_checkpoint


def _weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def test_trains_logs_and_evaluates(toy, tmp_path):
    seen = []

    def on_eval(model, step):
        seen.append((type(model).__name__, step))
        return {"probe": 1.5}

    trainer = toy.make_trainer(tmp_path / "run", max_steps=20, callbacks=[EvalHook(on_eval)])
    final = trainer.fit()
    records = read_metrics(tmp_path / "run")
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval_loss" in r]
    assert [r["step"] for r in train] == [5, 10, 15, 20]
    assert [r["step"] for r in evals] == [10, 20]
    assert seen == [("ToyNet", 10), ("ToyNet", 20)]
    assert evals[-1]["probe"] == 1.5 and 0 <= evals[-1]["eval_acc"] <= 1
    assert train[-1]["loss"] < 0.6 * train[0]["loss"]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    for r in train:  # the logged lr is the schedule's value at the window's last step
        assert r["lr"] == pytest.approx(1e-2 * warmup_cosine(r["step"] - 1, 20, 3, 0.1))
        assert r["samples_per_s"] > 0 and r["grad_norm"] > 0 and "samples" not in r
    assert final["step"] == 20 and final["eval_loss"] == evals[-1]["eval_loss"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["kind"] == "toy" and config["config"] == {"width": 16}
    assert config["train"]["batch_size"] == 16 and config["train"]["betas"] == [0.9, 0.95]
    assert latest_checkpoint(tmp_path / "run").name == "step_000020"


def test_accumulation_equals_the_full_batch(toy, tmp_path):
    full = toy.make_trainer(tmp_path / "full", max_steps=6, batch_size=16)
    full.fit()
    accumulated = toy.make_trainer(tmp_path / "acc", max_steps=6, batch_size=16, micro_batch_size=4)
    assert accumulated.accumulation == 4
    accumulated.fit()
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "acc")
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5)


def test_resume_in_process_is_bitwise_exact(toy, tmp_path):
    # dropout draws from the torch RNG: exactness needs the RNG state restored
    toy.make_trainer(tmp_path / "straight", dropout=0.2, max_steps=14).fit()
    first = toy.make_trainer(tmp_path / "resumed", dropout=0.2, max_steps=14)
    first.fit(until=7)
    first.close()
    resumed = toy.make_trainer(tmp_path / "resumed", dropout=0.2, max_steps=14, resume=True)
    assert resumed.step == 7
    resumed.fit()
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    opt_a = load_file(str(tmp_path / "straight" / "optimizer.safetensors"))
    opt_b = load_file(str(tmp_path / "resumed" / "optimizer.safetensors"))
    assert all(torch.equal(opt_a[k], opt_b[k]) for k in opt_a)
    # metrics past the checkpoint were dropped and redone: each step logged once
    steps = [r["step"] for r in read_metrics(tmp_path / "resumed") if "loss" in r]
    assert steps == [5, 7, 10, 14]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(toy, tmp_path):
    calls = []

    def exploding(model, batch):
        calls.append(1)
        loss, metrics = toy.step_fn(model, batch)
        return (loss * float("nan") if len(calls) > 7 else loss), metrics

    trainer = toy.make_trainer(tmp_path / "run", max_steps=20)
    trainer.phases = [Phase(exploding)]
    with pytest.raises(GenlabError) as info:
        trainer.fit()
    message = str(info.value)
    assert "non-finite loss nan at step 8" in message and "(step 5)" in message
    assert "\n" not in message
    assert latest_checkpoint(tmp_path / "run").name == "step_000005"
    good = toy.make_trainer(tmp_path / "other", max_steps=20)
    good.fit(until=5)
    good.close()
    a, b = _weights(tmp_path / "run"), _weights(tmp_path / "other")
    assert all(torch.equal(a[k], b[k]) for k in a)  # the saved state is step 5's, not the bad one


def test_bf16_autocast_trains_on_cpu(toy, tmp_path):
    trainer = toy.make_trainer(tmp_path / "run", precision="bf16", max_steps=20)
    trainer.fit()
    train = [r for r in read_metrics(tmp_path / "run") if "loss" in r]
    assert train[-1]["loss"] < 0.6 * train[0]["loss"]
    assert all(v.dtype == torch.float32 for v in _weights(tmp_path / "run").values())


def test_folder_and_setting_checks(toy, tmp_path):
    toy.make_trainer(tmp_path / "run", max_steps=5).fit()
    with pytest.raises(GenlabError, match="already holds a run"):
        toy.make_trainer(tmp_path / "run", max_steps=5)
    with pytest.raises(GenlabError, match="batch_size=32: the run used 16"):
        toy.make_trainer(tmp_path / "run", batch_size=32, resume=True)
    done = toy.make_trainer(tmp_path / "run", max_steps=5, resume=True)
    assert done.step == 5 and done.fit()["step"] == 5
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "data.txt").write_text("x")
    with pytest.raises(GenlabError, match="not a genlab run folder"):
        toy.make_trainer(tmp_path / "other", resume=True)
    with pytest.raises(GenlabError, match="does not split"):
        toy.make_trainer(tmp_path / "x", batch_size=16, micro_batch_size=5)
    with pytest.raises(GenlabError, match="fp16 training needs a CUDA GPU"):
        toy.make_trainer(tmp_path / "x", precision="fp16")
    with pytest.raises(GenlabError, match="invalid training setting lr"):
        toy.make_trainer(tmp_path / "x", lr=0.0)
    with pytest.raises(GenlabError, match="shape"):  # a different model cannot resume the run
        toy.make_trainer(tmp_path / "run", max_steps=10, width=8, resume=True)


def test_compiled_model_trains_the_same_and_saves_plain_names(toy, tmp_path, monkeypatch):
    # inductor takes a minute to build kernels on a small CPU: the eager backend checks the
    # wiring (wrapper, checkpoint names, numbers) in seconds
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m: real_compile(m, backend="eager"))
    compiled = toy.make_trainer(tmp_path / "compiled", max_steps=4, compile=True)
    assert type(compiled.net).__name__ == "OptimizedModule"
    compiled.fit()
    toy.make_trainer(tmp_path / "plain", max_steps=4).fit()
    a, b = _weights(tmp_path / "compiled"), _weights(tmp_path / "plain")
    assert a.keys() == b.keys() and not any("_orig_mod" in k for k in a)
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)


def test_a_callback_can_stop_the_run_with_a_checkpoint_there(toy, tmp_path):
    class StopAt7(Callback):
        def on_step_end(self, trainer) -> None:
            if trainer.step == 7:
                trainer.request_stop()

    trainer = toy.make_trainer(tmp_path / "run", max_steps=20, callbacks=[StopAt7()])
    final = trainer.fit()
    assert trainer.step == 7 and final["step"] == 7
    assert latest_checkpoint(tmp_path / "run").name == "step_000007"
    assert max(r["step"] for r in read_metrics(tmp_path / "run")) == 7
