"""Pretraining end to end: built-in and user data, the token cache, resume, generate."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.core.train_config import TrainConfig
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.methods.autoregressive.decoding import generate
from genlab.recipes.pretrain import PretrainConfig, pretrain


def tiny(out, **kw) -> PretrainConfig:
    train = TrainConfig(
        max_steps=kw.pop("max_steps", 30),
        batch_size=8,
        lr=3e-3,
        warmup_steps=5,
        eval_every=10,
        eval_batches=2,
        checkpoint_every=10,
        progress=False,
        plots=False,
        tensorboard=False,
        seed=kw.pop("seed", 0),
    )
    return PretrainConfig(
        out=str(out),
        preset="tiny",
        block_size=32,
        vocab_size=300,
        builtin_chars=60_000,
        train=train,
        **kw,
    )


def test_builtin_pretraining_learns_and_the_run_generates(tmp_path):
    metrics = pretrain(tiny(tmp_path / "run", max_steps=60))
    log = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    evals = [r["eval_loss"] for r in log if "eval_loss" in r]
    assert evals[-1] < evals[0] - 0.3  # validation loss falls
    assert metrics["eval_perplexity"] == pytest.approx(np.exp(metrics["eval_loss"]))
    model, tok = load_gpt(tmp_path / "run")
    assert model.config.vocab_size == tok.vocab_size <= 300
    out = generate(
        model, [[tok.bos_id, *tok.encode("The")]], max_new_tokens=10, temperature=0, tokenizer=tok
    )[0]
    assert len(out.tokens) == 10 and isinstance(out.text, str)
    assert (tmp_path / ".token-cache").is_dir()


def test_user_jsonl_data_and_cache_reuse(tmp_path):
    data = tmp_path / "docs.jsonl"
    lines = [
        json.dumps({"body": f"record {i}: the quick brown fox jumps {i % 7} times."})
        for i in range(400)
    ]
    data.write_text("\n".join(lines))
    cfg = tiny(tmp_path / "a", data=str(data), text_field="body", max_steps=5)
    pretrain(cfg)
    cache = list((tmp_path / ".token-cache").glob("*.bin"))
    assert len(cache) == 1
    stamp = cache[0].stat().st_mtime_ns
    pretrain(tiny(tmp_path / "b", data=str(data), text_field="body", max_steps=5))
    assert cache[0].stat().st_mtime_ns == stamp  # the second run reused the tokens


def test_resume_continues_to_the_same_weights(tmp_path):
    pretrain(tiny(tmp_path / "full", max_steps=20))
    pretrain(tiny(tmp_path / "part", max_steps=20), until=10)
    assert json.loads((tmp_path / "part" / "state.json").read_text())["step"] == 10
    pretrain(tiny(tmp_path / "part", max_steps=20), resume=True)
    a, _ = load_gpt(tmp_path / "full")
    b, _ = load_gpt(tmp_path / "part")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_too_little_data_is_a_clear_error(tmp_path):
    data = tmp_path / "small.txt"
    data.write_text("tiny text")
    with pytest.raises(GenlabError, match="too few"):
        pretrain(tiny(tmp_path / "run", data=str(data)))


@pytest.mark.slow
def test_cli_pretrain_then_generate(tmp_path):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "genlab",
        "pretrain",
        "--out",
        str(run),
        "--preset",
        "tiny",
        "--max-steps",
        "8",
        "--batch-size",
        "4",
        "--block-size",
        "32",
        "--vocab-size",
        "300",
        "--builtin-chars",
        "30000",
        "--eval-every",
        "4",
        "--checkpoint-every",
        "4",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "validation loss" in done.stdout
    gen = subprocess.run(
        [
            sys.executable,
            "-m",
            "genlab",
            "generate",
            "-c",
            str(run),
            "--prompt",
            "The",
            "--max-new-tokens",
            "5",
            "--temperature",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert gen.returncode == 0, gen.stderr
    assert gen.stdout.startswith("The")
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2
    assert "--resume" in again.stderr and len(again.stderr.strip().splitlines()) == 1
