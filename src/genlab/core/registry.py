"""The model registry: one save and one load for every kind of model genlab writes.

A model folder is ``config.json`` (``kind``, ``config``) + ``model.safetensors`` + the extra files
its kind needs (a tokenizer, a caption vocabulary). Each kind registers once, where it is
defined, what rebuilds it: its config class, its module class and its extra files. Then one
:func:`load` opens a GPT, a reward model, a PPO policy or a diffusion model alike, and says what
is wrong when a folder is broken or of another kind: not a genlab folder, an unknown kind, a
missing file, truncated weights, or shapes that do not match the config. The registry knows no
model; it only stores what the kinds told it. Nothing is unpickled.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genlab.core.checkpoint import (
    MODEL_FILE,
    load_state_into,
    read_model_config,
    read_weights,
    save_model_folder,
)
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes


@dataclass(frozen=True)
class ExtraFile:
    """A file a kind needs beside its weights: ``read(path)`` opens it as ``Loaded.files[key]``."""

    name: str  # in the folder, e.g. "tokenizer.json"
    key: str  # e.g. "tokenizer"
    read: Callable[[Path], Any]
    why: str = "it is needed to use the model"


@dataclass(frozen=True)
class Kind:
    """How to rebuild one kind of model from its folder."""

    name: str
    config_class: Any  # a dataclass with ``from_dict`` and ``to_dict``
    build: Callable[[Any], nn.Module]  # config -> module with fresh weights
    files: tuple[ExtraFile, ...] = ()
    check: Callable[[Loaded], None] | None = None  # e.g. tokenizer and model agree
    generator: str | None = None  # submodule that generates text ("" the module itself)


@dataclass
class Loaded:
    """An opened model folder: the module (eval mode), its config and its extra files."""

    kind: str
    model: nn.Module
    config: Any
    path: Path
    files: dict[str, Any] = field(default_factory=dict)


_KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Make ``kind`` loadable; registering a name twice with another definition is an error."""
    known = _KINDS.get(kind.name)
    if known is not None and known != kind:
        raise GenlabError(f"model kind '{kind.name}' is registered twice")
    _KINDS[kind.name] = kind
    return kind


def registered() -> list[str]:
    """The names of the registered kinds, sorted."""
    return sorted(_KINDS)


def save(
    folder: str | os.PathLike,
    model: nn.Module,
    kind: str,
    config: Any,
    files: Mapping[str, bytes] | None = None,
) -> Path:
    """Write ``model`` as a folder of ``kind``: weights, ``config.json`` and the extra files
    (``files``: name -> bytes; the kind's required files must be among them)."""
    spec = _spec(kind)
    files = dict(files or {})
    missing = [f.name for f in spec.files if f.name not in files]
    if missing:
        raise GenlabError(f"saving a '{kind}' model needs the file {missing[0]}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        atomic_write_bytes(folder / name, data)
    return save_model_folder(folder, model, kind, config.to_dict())


def load(
    folder: str | os.PathLike,
    kind: str | tuple[str, ...] | None = None,
    device: str | torch.device = "cpu",
    weights: str = MODEL_FILE,
) -> Loaded:
    """Open a model folder (a run folder opens its newest checkpoint) in eval mode on ``device``.

    ``kind`` restricts what is accepted (a chat needs a ``gpt``); ``weights`` picks another
    weights file of the folder (``ema.safetensors``). Every problem is a one-line error.
    """
    folder = Path(folder)
    meta = read_model_config(folder, kind)
    spec = _spec(meta["kind"])
    config = spec.config_class.from_dict(meta["config"])
    loaded = Loaded(kind=spec.name, model=spec.build(config), config=config, path=folder)
    for extra in spec.files:
        path = folder / extra.name
        if not path.is_file():
            raise GenlabError(f"{folder} has no {extra.name}; {extra.why}")
        loaded.files[extra.key] = extra.read(path)
    path = folder / weights
    if not path.is_file():
        raise GenlabError(f"{path} not found: the folder has no {weights} (is the run finished?)")
    load_state_into(loaded.model, read_weights(path), source=str(path))
    if spec.check is not None:
        spec.check(loaded)
    loaded.model.to(device).eval()
    return loaded


def kind(name: str) -> Kind:
    """The registered definition of the kind ``name`` (one-line error if unknown)."""
    return _spec(name)


def _spec(kind: str) -> Kind:
    if kind not in _KINDS:
        raise GenlabError(
            f"unknown model kind '{kind}': this genlab knows {', '.join(registered()) or 'none'}"
        )
    return _KINDS[kind]
