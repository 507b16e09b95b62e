"""PPO under torchrun: two processes sample the same rollouts, train on halves of each
minibatch, and end where one process does."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from genlab.align.reward import RewardModel, save_reward_model
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import save_gpt
from genlab.nets.gpt import GPT, GPTConfig

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


@pytest.mark.slow
def test_two_processes_train_the_policy_one_process_does(tmp_path):
    tok = Tokenizer.train(["hello world. say yes or no, please."] * 20, vocab_size=256)
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32)
    gpt = GPT(config)
    save_gpt(tmp_path / "sft", gpt, tok)
    save_reward_model(tmp_path / "rm", RewardModel.from_gpt(gpt), tok)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"say yes {i}"}) + "\n" for i in range(12)))
    args = [
        "ppo",
        "--policy", tmp_path / "sft",
        "--reward", tmp_path / "rm",
        "--prompts", prompts,
        "--iterations", "2",
        "--rollout-size", "8",
        "--minibatch-size", "4",
        "--ppo-epochs", "2",
        "--max-new-tokens", "6",
        "--lr", "1e-3",
        "--device", "cpu",
        "--no-progress",
    ]  # fmt: skip
    for cmd, out in (
        ([sys.executable, "-m", "genlab"], "one"),
        ([*TORCHRUN, "-m", "genlab"], "two"),
    ):
        result = subprocess.run(
            [str(c) for c in [*cmd, *args, "--out", tmp_path / out]],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    one = load_file(str(tmp_path / "one" / "model.safetensors"))
    two = load_file(str(tmp_path / "two" / "model.safetensors"))
    start = load_file(str(tmp_path / "sft" / "model.safetensors"))
    moved = max((one[f"policy.{k}"] - v).abs().max().item() for k, v in start.items())
    assert moved > 1e-3  # it trained
    for key in one:
        torch.testing.assert_close(one[key], two[key], atol=1e-5, rtol=0, msg=key)
    rollouts = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").open() if "reward" in x]
    assert [r["iteration"] for r in rollouts] == [1.0, 2.0]
