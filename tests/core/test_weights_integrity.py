"""Damaged weights are refused in one line: a checksum in ``state.json`` catches flipped bytes,
a scan catches NaN or Inf; folders written before checksums still load."""

import hashlib
import json
import subprocess
import sys
import warnings

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from genlab.core.checkpoint import load_model_weights, save_model_folder
from genlab.core.errors import GenlabError
from genlab.core.optim import build_adamw
from genlab.core.run import RunFolder, latest_checkpoint, load_checkpoint


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 64), nn.Linear(64, 2))


def _run(tmp_path, steps=(1,)):
    net = _net()
    folder = RunFolder(tmp_path / "run", "toy", config={})
    folder.write_config()
    opts = {"opt": build_adamw(net, lr=1e-2)}
    for step in steps:
        folder.save(step, net, opts)
    return tmp_path / "run"


def _one_line_error(fn, match: str) -> str:
    with pytest.raises(GenlabError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)
    return str(info.value)


def _flip_tail(path, n: int = 16) -> None:
    """Invert the last ``n`` bytes in place (the safetensors header stays readable)."""
    data = bytearray(path.read_bytes())
    data[-n:] = bytes(b ^ 0xFF for b in data[-n:])
    with open(path, "r+b") as f:  # in place: the hard-linked copies see it too
        f.write(data)


def _resave_with_nan(path) -> None:
    """Write NaN into one tensor and save the file again with its header metadata."""
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    tensors["1.weight"][0, 0] = float("nan")
    path.unlink()  # break the hard link to the step folder's copy
    save_file(tensors, str(path), metadata=meta)


def test_state_records_the_sha256_of_each_weights_file(tmp_path):
    run = _run(tmp_path)
    state = json.loads((run / "state.json").read_text())
    for name in ("model.safetensors", "optimizer.safetensors"):
        assert state["sha256"][name] == hashlib.sha256((run / name).read_bytes()).hexdigest()
    assert list(state)[-1] == "rng"  # the bulky RNG states stay last


def test_flipped_bytes_fail_the_checksum_on_load_and_on_resume(tmp_path):
    run = _run(tmp_path)
    _flip_tail(run / "model.safetensors")
    msg = _one_line_error(lambda: load_model_weights(run, _net()), "checksum")
    assert str(run / "model.safetensors") in msg and "earlier checkpoint" in msg
    _one_line_error(lambda: load_checkpoint(run, _net()), "no complete checkpoint.*checksum")


def test_resume_falls_back_past_a_damaged_checkpoint_with_one_logged_line(tmp_path, caplog):
    run = _run(tmp_path, steps=(1, 2))
    _flip_tail(run / "checkpoints" / "step_000002" / "model.safetensors")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Python warning with its source line
        assert latest_checkpoint(run).name == "step_000001"
        assert load_checkpoint(run, _net())["step"] == 1
    (line,) = {m for m in caplog.messages}
    assert line.startswith("skipping checkpoint") and "checksum" in line and "\n" not in line


def test_non_finite_weights_are_refused_without_a_checksum(tmp_path):
    run = _run(tmp_path)
    path = run / "model.safetensors"
    _resave_with_nan(path)
    state = json.loads((run / "state.json").read_text())
    del state["sha256"]  # as a run written before checksums
    (run / "state.json").unlink()
    (run / "state.json").write_text(json.dumps(state))
    msg = _one_line_error(lambda: load_model_weights(run, _net()), "NaN or Inf")
    assert str(path) in msg and "'1.weight'" in msg
    # a plain model folder (no state.json at all) is scanned the same way
    folder = save_model_folder(tmp_path / "model", _net(), "toy", {})
    _resave_with_nan(folder / "model.safetensors")
    _one_line_error(lambda: load_model_weights(folder, _net()), "NaN or Inf")


def test_a_run_written_before_checksums_still_loads(tmp_path):
    run = _run(tmp_path)
    for state_file in (run / "state.json", run / "checkpoints" / "step_000001" / "state.json"):
        state = json.loads(state_file.read_text())
        del state["sha256"]
        state_file.unlink()  # hard-linked: write each anew
        state_file.write_text(json.dumps(state))
    net = _net()
    assert load_checkpoint(run, net)["step"] == 1
    load_model_weights(run, net)
    assert torch.equal(net[0].weight, _net()[0].weight)


def test_trainer_resume_refuses_a_damaged_checkpoint(toy, tmp_path):
    first = toy.make_trainer(tmp_path / "run", max_steps=10)
    first.fit(until=5)
    first.close()
    _flip_tail(tmp_path / "run" / "model.safetensors")
    _one_line_error(
        lambda: toy.make_trainer(tmp_path / "run", max_steps=10, resume=True), "checksum"
    )


def test_the_fallback_warning_is_one_line_on_stderr(tmp_path):
    """Without any logging set up (as under the CLI), the skip is one line, no source line."""
    run = _run(tmp_path, steps=(1, 2))
    _flip_tail(run / "checkpoints" / "step_000002" / "model.safetensors")
    code = (
        "import sys; from genlab.core.run import latest_checkpoint; latest_checkpoint(sys.argv[1])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(run)], capture_output=True, text=True, check=True
    )
    assert done.stderr.startswith("skipping checkpoint") and "checksum" in done.stderr
    assert done.stderr.count("\n") == 1 and "Warning" not in done.stderr
