"""Reference libraries: skip a test that needs a missing one, except in CI, where it fails.

The parity tests compare genlab with the field's own implementation (transformers, diffusers,
torchmetrics, scikit-learn, tensorboard, Chromium for the page). Locally a missing one skips
its tests; with ``GENLAB_REQUIRE_REFERENCES=1`` (set by ``.ci/run``) it fails them, so a broken
install cannot turn parity tests into silent skips under a green run.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest

REQUIRE_ENV = "GENLAB_REQUIRE_REFERENCES"
INSTALL = "pip install -e '.[test]' (or make test)"
# import name -> the distribution pip knows it by, where they differ
DISTRIBUTIONS = {"sklearn": "scikit-learn"}


def references_required() -> bool:
    """Whether a missing reference must fail rather than skip (CI)."""
    return os.environ.get(REQUIRE_ENV) == "1"


def unavailable(what: str, install: str = INSTALL, detail: str = "") -> NoReturn:
    """Fail (with ``GENLAB_REQUIRE_REFERENCES=1``) or skip, in one line naming the fix."""
    message = f"{what} is missing{f' ({detail})' if detail else ''}; install it with: {install}"
    if references_required():
        pytest.fail(f"{message} [{REQUIRE_ENV}=1: must not skip]", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def require(module: str) -> ModuleType:
    """``import module`` for a test that compares against it (at module level or in a test)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        error = str(e)  # a broken install says more than "No module named"
    top = module.split(".")[0]
    unavailable(f"reference library {DISTRIBUTIONS.get(top, top)}", detail=error)
