"""A toy run function for the sweep tests, named by dotted path (``sweep_toy:measure``) so the
fresh processes of a parallel sweep import it too."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def measure(settings: dict[str, Any], run_dir: Path) -> dict[str, float | str]:
    """A number drawn from a generator seeded by the settings. Each call adds a line to
    ``RUN_DIR/calls.txt``; a ``FAIL`` file in the folder makes it raise, a ``DIE`` file makes
    its process exit at once (as a crash would)."""
    with open(run_dir / "calls.txt", "a") as f:
        f.write("call\n")
    if (run_dir / "FAIL").exists():
        raise ValueError("told to fail\nby the FAIL file")
    if (run_dir / "DIE").exists():
        os._exit(3)
    g = torch.Generator().manual_seed(1000 * settings["seed"] + settings["x"])
    a, b = torch.randn(64, 64, generator=g), torch.randn(64, 64, generator=g)
    return {"y": (a @ b).sum().item() * settings["scale"], "label": f"x is {settings['x']}"}
