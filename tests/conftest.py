"""Suite-wide set-up: the reference-library rule of :mod:`references`, importable everywhere.

Test modules import the helper as ``from references import require``; this folder is put on
``sys.path`` here so that works under any ``--import-mode``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from references import REQUIRE_ENV, references_required  # noqa: E402


def pytest_report_header() -> str:
    """Say in the run's header whether a missing reference library fails or skips."""
    if references_required():
        return f"reference libraries: required ({REQUIRE_ENV}=1, a missing one fails)"
    return f"reference libraries: optional (a missing one skips; {REQUIRE_ENV}=1 fails instead)"


@pytest.fixture
def one_thread():
    """Run the test on one intra-op thread: tiny models gain nothing from more, and on a busy
    2-core machine OpenMP threads waiting for each other make each small step many times
    slower. Folders and modules of tiny models use it for every test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_fact_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fact model of an 8-person world that knows most trained facts (about 25 s on one
    thread), trained once for the whole run: unlearning and editing tests share it."""
    from genlab.recipes.fact_model import FactModelConfig, train_fact_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = FactModelConfig(
        out=str(tmp_path_factory.mktemp("fact_model") / "run"),
        world_size=8,
        n_layer=2,
        n_head=2,
        n_embd=64,
        block_size=64,
        vocab_size=320,
        steps=600,
        batch_size=16,
        lr=3e-3,
        device="cpu",
        progress=False,
    )
    try:
        return train_fact_model(cfg)
    finally:
        torch.set_num_threads(threads)
