"""Seeding and random-number-generator state, as plain JSON.

Exact resume (a killed run, resumed, ends bitwise equal to one never interrupted) needs every
random stream a training step can touch to continue where it stopped: Python's ``random``,
NumPy's global generator and torch's CPU and CUDA generators (dropout, noise in diffusion,
sampling in PPO). This module captures them as JSON-able dicts (bytes as base64) so that a
run's ``state.json`` holds them without pickling anything.
"""

from __future__ import annotations

import base64
import random
from typing import Any

import numpy as np
import torch


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def capture_rng_state() -> dict[str, Any]:
    """The state of every global generator, as a JSON-able dict."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {
            "version": version,
            "state": _b64(np.asarray(internal, dtype=np.uint64).tobytes()),
            "gauss": gauss,
        },
        "numpy": {
            "name": name,
            "keys": _b64(np.asarray(keys, dtype=np.uint32).tobytes()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": _b64(torch.get_rng_state().numpy().tobytes()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s.numpy().tobytes()) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back the generators captured by :func:`capture_rng_state`."""
    py = state["python"]
    internal = tuple(int(v) for v in np.frombuffer(_unb64(py["state"]), dtype=np.uint64))
    random.setstate((py["version"], internal, py["gauss"]))
    npy = state["numpy"]
    keys = np.frombuffer(_unb64(npy["keys"]), dtype=np.uint32).copy()
    np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(torch.frombuffer(bytearray(_unb64(state["torch"])), dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        cuda = [torch.frombuffer(bytearray(_unb64(s)), dtype=torch.uint8) for s in state["cuda"]]
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
