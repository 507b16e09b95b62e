"""Fixtures for the core tests: the toy model and script the trainer tests share."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

TOY_SCRIPT = Path(__file__).with_name("trainer_toy.py")


def _load_toy() -> ModuleType:
    spec = importlib.util.spec_from_file_location("genlab_trainer_toy", TOY_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def toy() -> ModuleType:
    """``tests/core/trainer_toy.py`` as a module (ToyNet, toy_data, step_fn, make_trainer)."""
    return _load_toy()


@pytest.fixture(scope="session")
def toy_script() -> Path:
    return TOY_SCRIPT


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test in this folder runs on one thread (see ``one_thread``)."""
