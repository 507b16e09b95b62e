"""A base model with one adapter, saved as the adapter alone: the registry's ``adapter`` kind.

A run that trains an adapter writes ``config.json`` (the base folder's path and the adapter's
config) and a ``model.safetensors`` of the adapter's tensors only: kilobytes per task beside one
copy of the base. ``genlab.load(folder)`` loads the base, injects the adapter and fills it, so an
adapter run opens, generates and serves like its base (``generator``: the adapted ``model``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

# the kinds an adapter's base can be: importing them registers them
import genlab.methods.autoregressive.checkpoint  # noqa: F401
import genlab.methods.diffusion.text_conditioned  # noqa: F401
from genlab.adapt.config import AdapterConfig
from genlab.adapt.inject import (
    adapter_names,
    adapter_parameters,
    add_adapter,
    delete_adapter,
    load_adapter_state,
    train_only,
)
from genlab.core import registry
from genlab.core.checkpoint import MODEL_FILE, read_model_config, read_weights
from genlab.core.errors import GenlabError
from genlab.core.registry import Kind, Loaded

KIND = "adapter"


@dataclass(frozen=True)
class AdaptedConfig:
    """Which base, which adapter, under which name."""

    base: str  # the base model's folder (absolute, symbolic links kept as the user gave them)
    adapter: AdapterConfig
    name: str = "default"
    base_weights: str = MODEL_FILE  # the base's weights file (a diffusion run's ema.safetensors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "adapter": self.adapter.to_dict(),
            "name": self.name,
            "base_weights": self.base_weights,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AdaptedConfig:
        unknown = sorted(set(d) - {"base", "adapter", "name", "base_weights"})
        if unknown or "base" not in d or "adapter" not in d:
            raise GenlabError(
                "config.json of an adapter needs base and adapter (and may name name and "
                "base_weights)"
            )
        return cls(
            d["base"],
            AdapterConfig.from_dict(d["adapter"]),
            d.get("name", "default"),
            d.get("base_weights", MODEL_FILE),
        )


class Adapted(nn.Module):
    """``model`` (the base, adapter injected) whose state dict is the adapter's tensors alone;
    calling it calls the base."""

    def __init__(self, model: nn.Module, config: AdaptedConfig, base_kind: str = "") -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.base_kind = base_kind
        self.base_files: dict[str, Any] = {}
        self._own = set(adapter_parameters(model, config.name))
        self.register_state_dict_post_hook(_adapter_only)
        self.register_load_state_dict_post_hook(_base_not_missing)

    @classmethod
    def around(cls, base: nn.Module, base_folder: str | Path, adapter: AdapterConfig,
               name: str = "default", base_weights: str = MODEL_FILE) -> Adapted:  # fmt: skip
        """Inject ``adapter`` into ``base`` (loaded from ``base_weights`` of ``base_folder``)
        and freeze the rest."""
        config = AdaptedConfig(str(Path(base_folder).absolute()), adapter, name, base_weights)
        add_adapter(base, adapter, name)
        adapted = cls(base, config)
        train_only(adapted.model, name)
        return adapted

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _adapter_only(module: Adapted, state: dict[str, Tensor], prefix: str, _meta: Any) -> None:
    own = {prefix + "model." + n for n in module._own}
    for key in [k for k in state if k.startswith(prefix) and k not in own]:
        del state[key]


def _base_not_missing(module: Adapted, keys: Any) -> None:
    own = {"model." + n for n in module._own}
    keys.missing_keys[:] = [k for k in keys.missing_keys if k in own]


def build(config: AdaptedConfig) -> Adapted:
    """Load the base from its folder and inject the (still untrained) adapter."""
    if not Path(config.base).exists():
        raise GenlabError(
            f"the adapter's base model {config.base} is not there; put the base back at that "
            "path (config.json 'base' names it)"
        )
    base = registry.load(config.base, weights=config.base_weights)
    model = base.model.get_submodule(registry.kind(base.kind).generator or "")
    add_adapter(model, config.adapter, config.name)
    adapted = Adapted(model, config, base.kind)
    adapted.base_files = base.files
    train_only(adapted.model, config.name)
    return adapted


def _adopt_base_files(loaded: Loaded) -> None:
    """An adapter reads and writes text with its base's tokenizer: give the loaded adapter the
    base's files (``loaded.files['tokenizer']``)."""
    loaded.files = {**loaded.model.base_files, **loaded.files}  # type: ignore[union-attr]


registry.register(Kind(KIND, AdaptedConfig, build, (), _adopt_base_files, generator="model"))


def load_adapter(folder: str | Path, device: str | torch.device = "cpu") -> Adapted:
    """Open an adapter run folder (base loaded, adapter filled) in eval mode."""
    return registry.load(folder, kind=KIND, device=device).model  # type: ignore[return-value]


def adapter_config(folder: str | Path) -> AdaptedConfig:
    """What an adapter run folder holds: its base's path and its adapter's config."""
    return AdaptedConfig.from_dict(read_model_config(folder, KIND)["config"])


def attach(model: nn.Module, folder: str | Path, name: str) -> AdaptedConfig:
    """Inject the adapter of run ``folder`` into ``model`` under ``name`` (as ``add_adapter``:
    it then acts) and fill it with the folder's tensors: many adapters on one base loaded once,
    as S-LoRA serves them. The recorded base is not opened: ``model`` is taken for it when every
    tensor's shape fits; else a one-line error names the first layer that does not, and no part
    of the adapter stays in ``model``."""
    if name in adapter_names(model):
        raise GenlabError(f"the model already has an adapter named '{name}'")
    config = adapter_config(folder)
    path = Path(folder) / MODEL_FILE
    saved = read_weights(path, what="adapter weights")
    # saved as Adapted's state dict: "model." + the parameter's name, the adapter's name in it
    state = {k.removeprefix("model.").replace(f".{config.name}.", "."): t for k, t in saved.items()}
    try:
        add_adapter(model, config.adapter, name)
        load_adapter_state(model, name, state, str(path))
    except GenlabError:
        if name in adapter_names(model):
            delete_adapter(model, name)
        raise
    return config
