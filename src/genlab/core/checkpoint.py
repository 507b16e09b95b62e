"""Model folders: ``config.json`` (kind + config) beside ``model.safetensors``.

Every genlab model is saved the same way so that any verb can open any folder and say clearly
when it is the wrong thing: not a genlab folder, another kind of model, truncated weights, or
weights whose shapes do not match the config. Weights are safetensors and metadata JSON: nothing
is ever unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

import genlab
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_save_tensors, atomic_write_json, load_tensors, read_json

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"


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
    """Raise a one-line ``GenlabError`` naming the first missing, unexpected or mis-shaped
    tensor of ``state`` against the model's own state dict ``own``."""
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


def load_state_into(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly, naming the first missing, unexpected or mis-shaped tensor."""
    check_state_dict(model.state_dict(), state, source)
    model.load_state_dict(state, strict=True)


def load_model_weights(folder: str | os.PathLike, model: nn.Module) -> None:
    """Load ``folder/model.safetensors`` into ``model`` with shape checks."""
    path = Path(folder) / MODEL_FILE
    load_state_into(model, load_tensors(path, what="model weights"), source=str(path))
