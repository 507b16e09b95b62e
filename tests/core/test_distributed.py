"""torchrun on CPU (gloo): two processes end where one process does at the same global batch.

Dropout is 0 here: different process layouts draw different dropout masks, so the equivalence
is exact (up to float summation order) only without it.
"""

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from genlab.core.logging import read_metrics
from genlab.core.optim import build_adamw
from genlab.core.run import load_checkpoint

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
ARGS = ["--steps", "12", "--batch", "16", "--checkpoint-every", "4"]


def _run(cmd: list) -> None:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def _assert_same_weights(run_a, run_b) -> None:
    a = load_file(str(run_a / "model.safetensors"))
    b = load_file(str(run_b / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0, msg=key)


@pytest.fixture(scope="module")
def single_run(toy, tmp_path_factory):
    """The reference, in this process: the whole 16-row batch as 4 micro-batches of 4."""
    run = tmp_path_factory.mktemp("single") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        toy.make_trainer(run, max_steps=12, batch_size=16, micro_batch_size=4).fit()
    finally:
        torch.set_num_threads(threads)
    return run


@pytest.mark.slow
def test_ddp_then_fsdp_resumed_under_torchrun_match_one_process(
    toy, toy_script, single_run, tmp_path
):
    run = tmp_path / "run"
    # DDP: 2 ranks x 2 micro-batches of 4, stopped after step 6 ...
    _run([*TORCHRUN, toy_script, run, *ARGS, "--micro", "4", "--until", "6"])
    # ... resumed by a new torchrun launch that shards the model with FSDP: a checkpoint names
    # parameters, not a process layout
    _run([*TORCHRUN, toy_script, run, *ARGS, "--micro", "4", "--fsdp", "--resume"])
    _assert_same_weights(single_run, run)
    # rank 0 alone logged: every step once
    steps = [r["step"] for r in read_metrics(run) if "loss" in r]
    assert steps == [5, 6, 10, 12]
    # the checkpoint loads into a plain model in one process, optimizer state included
    model = toy.ToyNet()
    state = load_checkpoint(run, model, {"optimizer": build_adamw(model, lr=1.0)})
    assert state["step"] == 12 and state["world_size"] == 2 and len(state["rng"]) == 2
