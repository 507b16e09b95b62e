"""Fixtures the recipe tests share."""

from __future__ import annotations

import pytest
import torch

from genlab.recipes.chatgpt import run_stages
from genlab.recipes.chatgpt.presets import smoke_config


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
