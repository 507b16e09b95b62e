"""Model folders: ``config.json`` (kind + config) beside ``model.safetensors``.

Every genlab model is saved the same way so that any verb can open any folder and say clearly
when it is the wrong thing: not a genlab folder, another kind of model, truncated or damaged
weights, weights whose shapes do not match the config, or weights holding NaN or Inf (a damaged
file or a diverged run, which would otherwise only show as NaN samples much later). Weights are
safetensors and metadata JSON: nothing is ever unpickled.

A checkpoint's ``state.json`` records the sha256 of each weights file beside it (``sha256``:
file name -> hex digest); reading a weights file checks it, so flipped bits that leave the
safetensors header intact are still caught. Folders written before checksums still load.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

import genlab
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_save_tensors, atomic_write_json, load_tensors, read_json

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.json"
CHECKSUMS = "sha256"  # key of state.json: weights file name -> sha256 of its bytes


def file_sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes, read in blocks (weights can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verify_checksum(path: str | os.PathLike, state: Mapping[str, Any], source: str) -> None:
    """Refuse a weights file whose sha256 differs from the one ``state`` (read from ``source``)
    records for it; a state without one (written before checksums) passes."""
    path = Path(path)
    expected = (state.get(CHECKSUMS) or {}).get(path.name)
    if expected is not None and file_sha256(path) != expected:
        raise GenlabError(
            f"{path} fails its sha256 checksum recorded in {source}: the file is damaged; "
            "restore it or load an earlier checkpoint (checkpoints/step_*)"
        )


def read_weights(path: str | os.PathLike, what: str = "model weights") -> dict[str, torch.Tensor]:
    """Load a weights file, checked first against the checksum its folder's ``state.json``
    records (run and checkpoint folders; a plain model folder has none)."""
    path = Path(path)
    state_path = path.parent / STATE_FILE
    if state_path.is_file():
        state = read_json(state_path, what="checkpoint state")
        if isinstance(state, dict):
            verify_checksum(path, state, str(state_path))
    return load_tensors(path, what=what)


def save_model_folder(
    folder: str | os.PathLike,
    model: nn.Module,
    kind: str,
    config: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights and ``{"kind", "config", ...extra}`` atomically into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(folder / MODEL_FILE, model.state_dict(), metadata={"kind": kind})
    meta = {"kind": kind, "config": config, "genlab_version": genlab.__version__, **(extra or {})}
    atomic_write_json(folder / CONFIG_FILE, meta)
    return folder


def read_model_config(
    folder: str | os.PathLike, kind: str | tuple[str, ...] | None = None
) -> dict[str, Any]:
    """Return the folder's ``config.json`` after checking it is a genlab folder (of ``kind``,
    when given)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GenlabError(f"checkpoint folder not found: {folder}")
    if not (folder / CONFIG_FILE).is_file():
        raise GenlabError(
            f"{folder} is not a genlab checkpoint (no {CONFIG_FILE}); pass a run folder written "
            "by genlab"
        )
    meta = read_json(folder / CONFIG_FILE, what="checkpoint config")
    if not isinstance(meta, dict) or "kind" not in meta or "config" not in meta:
        raise GenlabError(f"{folder / CONFIG_FILE} is not a genlab checkpoint config")
    if kind is None:
        return meta
    kinds = (kind,) if isinstance(kind, str) else kind
    if meta["kind"] not in kinds:
        raise GenlabError(
            f"{folder} holds a '{meta['kind']}' model, but a {' or '.join(kinds)} model is needed"
        )
    return meta


def check_state_dict(
    own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], source: str
) -> None:
    """Raise a one-line ``GenlabError`` naming the first missing, unexpected, mis-shaped or
    non-finite tensor of ``state`` against the model's own state dict ``own``."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing:
        raise GenlabError(f"{source} lacks weight '{missing[0]}' ({len(missing)} missing in all)")
    if unexpected:
        raise GenlabError(
            f"{source} has unexpected weight '{unexpected[0]}' ({len(unexpected)} in all): "
            "it was written for another model"
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise GenlabError(
                f"{source}: weight '{name}' has shape {tuple(tensor.shape)} but the config needs "
                f"{tuple(own[name].shape)}"
            )
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise GenlabError(
                f"{source}: weight '{name}' holds NaN or Inf values (a damaged file or a "
                "diverged run); load an earlier checkpoint (checkpoints/step_*) or retrain"
            )


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly, naming the first missing, unexpected or mis-shaped tensor."""
    check_state_dict(model.state_dict(), state, source)
    model.load_state_dict(state, strict=True)


def load_model_weights(folder: str | os.PathLike, model: nn.Module) -> None:
    """Load ``folder/model.safetensors`` into ``model`` with checksum and shape checks."""
    path = Path(folder) / MODEL_FILE
    load_state_into(model, read_weights(path), source=str(path))
