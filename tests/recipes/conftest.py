"""Fixtures the recipe tests share."""

from __future__ import annotations

import pytest
import torch

from genlab.recipes.chatgpt import run_stages
from genlab.recipes.chatgpt.presets import smoke_config
from genlab.recipes.experiments.ladder import LadderConfig, ladder_runs


@pytest.fixture(scope="session")
def smoke_demo(tmp_path_factory):
    """A finished smoke-preset demo (every stage, a few steps each), shared by the tests that
    read one (they copy it before changing anything)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("smoke-demo") / "demo"
    run_stages(smoke_config(out=str(out)))
    torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="session")
def ladder(tmp_path_factory) -> LadderConfig:
    """The toy ladder (two rungs, a few steps each), trained once for every experiment test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = LadderConfig(
        preset="toy", corpus_chars=20_000, task_examples=12, steps=4, batch_size=4,
        block_size=256, vocab_size=300, device="cpu", parallel=1,
        sweep_dir=str(tmp_path_factory.mktemp("ladder")),
    )  # fmt: skip
    ladder_runs(cfg)
    torch.set_num_threads(threads)
    return cfg
