"""A real process, SIGKILLed after a checkpoint and resumed in a new one, ends bitwise equal to
the same run never interrupted (CPU, one process)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

ARGS = ["--steps", "24", "--checkpoint-every", "4", "--dropout", "0.1"]


def _checkpointed_step(run) -> int:
    try:
        return json.loads((run / "state.json").read_text())["step"]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


@pytest.mark.slow
def test_sigkill_then_resume_is_bitwise_equal(toy_script, tmp_path):
    straight_dir, killed_dir = tmp_path / "straight", tmp_path / "killed"
    python = [sys.executable, str(toy_script)]
    straight = subprocess.Popen([*python, str(straight_dir), *ARGS])
    # the victim sleeps in each step so that the kill lands mid-run
    victim = subprocess.Popen([*python, str(killed_dir), *ARGS, "--sleep", "0.1"])
    deadline = time.monotonic() + 120
    while _checkpointed_step(killed_dir) < 8:
        assert victim.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    assert 8 <= _checkpointed_step(killed_dir) < 24

    subprocess.run([*python, str(killed_dir), *ARGS, "--resume"], check=True)
    assert straight.wait() == 0
    for name in ("model.safetensors", "optimizer.safetensors"):
        a, b = load_file(str(straight_dir / name)), load_file(str(killed_dir / name))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    assert _checkpointed_step(killed_dir) == 24
