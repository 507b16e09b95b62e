"""Put adapters into a network by layer name, and choose which of them act.

The network is changed in place: each matching ``nn.Linear`` (or ``nn.Conv2d``, for LoRA)
becomes an ``AdapterLayer`` holding the original as ``base_layer``, so code that runs the
network (decoding, serving, evaluation) needs no change. Only the adapter's parameters train.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from genlab.adapt.config import AdapterConfig
from genlab.adapt.layers import AdapterLayer, BottleneckLinear, LoRAConv2d, LoRALinear
from genlab.adapt.prompt_tuning import (
    add_prompt,
    delete_prompt,
    prompt_names,
    prompt_weights,
    set_prompt,
)
from genlab.adapt.tokens import add_token_rows
from genlab.core.errors import GenlabError


def matches(name: str, pattern: str) -> bool:
    """``pattern`` names the layer: equal, a dotted suffix, or a full regular expression."""
    if name == pattern or name.endswith("." + pattern):
        return True
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def _wrapper(method: str, layer: nn.Module) -> type[AdapterLayer] | None:
    if method == "lora":
        if isinstance(layer, nn.Conv2d):
            return LoRAConv2d
        return LoRALinear if isinstance(layer, nn.Linear) else None
    return BottleneckLinear if isinstance(layer, nn.Linear) else None


def add_adapter(model: nn.Module, config: AdapterConfig, name: str = "default") -> list[str]:
    """Inject adapter ``name`` into every layer ``config.targets`` names, make it the one that
    acts, and return the layer names. A soft prompt (``method="prompt"``) goes in front of the
    token embeddings instead (``genlab.adapt.prompt_tuning``); ``config.tokens`` adds trainable
    embedding rows of those tokens (``genlab.adapt.tokens``)."""
    if "." in name or not name:
        raise GenlabError(f"adapter name '{name}' must be non-empty and have no '.'")
    chosen = _add_layers(model, config, name)
    if config.tokens:
        try:
            add_token_rows(model, config, name)
        except GenlabError:
            delete_adapter(model, name)  # nothing of a refused adapter stays in the model
            raise
        chosen.append("wte")
    set_adapters(model, name)
    return chosen


def _add_layers(model: nn.Module, config: AdapterConfig, name: str) -> list[str]:
    if config.method == "prompt":
        return add_prompt(model, config, name)
    chosen = []
    for layer_name, layer in list(model.named_modules()):
        if isinstance(layer, AdapterLayer) or ".base_layer" in layer_name:
            if isinstance(layer, AdapterLayer) and any(
                matches(layer_name, p) for p in config.targets
            ):
                chosen.append((layer_name, layer))
            continue
        if any(matches(layer_name, p) for p in config.targets):
            chosen.append((layer_name, layer))
    if not chosen:
        layers = [n for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]
        suffixes = dict.fromkeys(re.split(r"(?:^|\.)\d+\.", n)[-1] for n in layers)
        raise GenlabError(
            f"no layer matches the adapter targets {', '.join(config.targets)}; this model's "
            f"layers ({layers[0]}, ...) end in {', '.join(suffixes)}"
        )
    for layer_name, layer in chosen:
        if isinstance(layer, AdapterLayer):
            expected = LoRALinear if config.method == "lora" else BottleneckLinear
            if not isinstance(layer, expected):
                raise GenlabError(
                    f"layer {layer_name} already holds a {type(layer).__name__} adapter: one "
                    "adapter method per layer"
                )
            if name in layer.names:
                raise GenlabError(f"layer {layer_name} already has an adapter named '{name}'")
            wrapped = layer
        else:
            cls = _wrapper(config.method, layer)
            if cls is None:
                raise GenlabError(
                    f"layer {layer_name} is a {type(layer).__name__}: a {config.method} adapter "
                    "wraps nn.Linear" + (" or nn.Conv2d" if config.method == "lora" else "")
                )
            wrapped = cls(layer)
            parent, _, child = layer_name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, wrapped)
        wrapped.add(name, config)
        wrapped.train(layer.training)  # new dropout modules follow the model's mode
    return [n for n, _ in chosen]


def adapter_layers(model: nn.Module) -> Iterator[tuple[str, AdapterLayer]]:
    """Every adapter layer of ``model`` with its name (the name of the layer it wraps)."""
    for name, module in model.named_modules():
        if isinstance(module, AdapterLayer):
            yield name, module


def adapter_names(model: nn.Module) -> list[str]:
    """The names of the adapters in ``model``, in the order they were added."""
    seen: dict[str, None] = {}
    for _, layer in adapter_layers(model):
        seen.update(dict.fromkeys(layer.names))
    seen.update(dict.fromkeys(prompt_names(model)))
    return list(seen)


def set_adapters(model: nn.Module, which: str | Mapping[str, float] | None) -> None:
    """Choose what acts: one adapter by name, a weighted sum ``{name: weight}`` (combining
    tasks), or ``None`` for the base alone."""
    weights = {} if which is None else {which: 1.0} if isinstance(which, str) else dict(which)
    known = adapter_names(model)
    for name in weights:
        if name not in known:
            raise GenlabError(f"no adapter named '{name}'; this model has {', '.join(known)}")
    for _, layer in adapter_layers(model):
        layer.weights = {n: w for n, w in weights.items() if n in layer.names}
    set_prompt(model, weights)


def acting(model: nn.Module) -> dict[str, float]:
    """The adapters that act now, with their weights (``set_adapters`` takes this back)."""
    weights = prompt_weights(model)
    for _, layer in adapter_layers(model):
        weights.update(layer.weights)
    return weights


@contextlib.contextmanager
def base_only(model: nn.Module) -> Iterator[None]:
    """Within the block the base model runs alone (every adapter off, none copied); what acted
    acts again after it. DPO's frozen reference is the base this way, not a second model."""
    if any(layer.merged for _, layer in adapter_layers(model)):
        raise GenlabError("unmerge adapters before running the base alone")
    before = acting(model)
    set_adapters(model, None)
    try:
        yield
    finally:
        set_adapters(model, before)


def merge(model: nn.Module, which: str | Mapping[str, float] | None = None) -> None:
    """Fold LoRA updates into the base weights (all acting ones by default): outputs stay the
    same and decoding costs what the base costs. ``unmerge`` undoes it."""
    for _, layer in adapter_layers(model):
        chosen = layer.weights if which is None else which
        chosen = {chosen: 1.0} if isinstance(chosen, str) else chosen
        for name, weight in chosen.items():
            if name in layer.names:
                layer.merge(name, weight)  # type: ignore[operator]


def unmerge(model: nn.Module) -> None:
    """Take every merged update back out of the base weights."""
    for _, layer in adapter_layers(model):
        layer.unmerge()  # type: ignore[operator]


def delete_adapter(model: nn.Module, name: str) -> None:
    """Remove adapter ``name`` (unmerged first); layers left with none return to their base."""
    if name not in adapter_names(model):
        raise GenlabError(f"no adapter named '{name}'")
    unmerge(model)
    for layer_name, layer in list(adapter_layers(model)):
        if name in layer.names:
            layer.delete(name)  # type: ignore[operator]
        if not layer.names:
            parent, _, child = layer_name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, layer.base_layer)
    delete_prompt(model, name)


def adapter_parameters(model: nn.Module, name: str) -> dict[str, nn.Parameter]:
    """Adapter ``name``'s parameters, keyed by their full names in ``model``."""
    marker = f".{name}."
    return {
        n: p
        for n, p in model.named_parameters()
        if marker in n and not n.startswith("base_layer") and ".base_layer." not in n
    }


def train_only(model: nn.Module, name: str) -> int:
    """Freeze everything but adapter ``name``; return how many parameters train."""
    own = adapter_parameters(model, name)
    for n, p in model.named_parameters():
        p.requires_grad_(n in own)
    return sum(p.numel() for p in own.values())


def adapter_state_dict(model: nn.Module, name: str) -> dict[str, Tensor]:
    """Adapter ``name`` alone, its name dropped from the keys (``blocks.0.attn.qkv.lora_A.weight``),
    as PEFT saves one adapter: it loads under any name."""
    marker = f".{name}."
    return {
        n.replace(marker, "."): p.detach().cpu().contiguous()
        for n, p in adapter_parameters(model, name).items()
    }


def load_adapter_state(
    model: nn.Module, name: str, state: Mapping[str, Tensor], source: str
) -> None:
    """Load tensors saved by ``adapter_state_dict`` into adapter ``name``, naming the first
    missing, unexpected or mis-shaped tensor (an adapter made for another base)."""
    own = {n.replace(f".{name}.", "."): p for n, p in adapter_parameters(model, name).items()}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        key = (missing or unexpected)[0]
        what = "lacks" if missing else "has a tensor for"
        raise GenlabError(f"{source} {what} '{key}': the adapter was made for another base model")
    for key, p in own.items():
        if tuple(state[key].shape) != tuple(p.shape):
            raise GenlabError(
                f"{source}: '{key}' has shape {tuple(state[key].shape)} but this base needs "
                f"{tuple(p.shape)}: the adapter was made for another base model"
            )
        if not torch.isfinite(state[key]).all():
            raise GenlabError(f"{source}: '{key}' holds NaN or Inf values")
    with torch.no_grad():
        for key, p in own.items():
            p.copy_(state[key])
    for _, layer in adapter_layers(model):
        if layer.row_index is not None:  # rebuild the stacked matrices from the new weights
            layer.set_rows(layer.row_names, layer.row_index)


@contextlib.contextmanager
def rows(model: nn.Module, per_row: Sequence[str | None]) -> Iterator[None]:
    """Within the block, batch row ``b`` runs with adapter ``per_row[b]`` (``None``: the base):
    one batch mixes requests for different adapters (for inference; merged adapters must be
    unmerged first)."""
    set_rows(model, per_row)
    try:
        yield
    finally:
        set_rows(model, None)


def set_rows(model: nn.Module, per_row: Sequence[str | None] | None) -> None:
    """Give each batch row its adapter (see ``rows``), or ``None`` to stop choosing by row."""
    layers = list(adapter_layers(model))
    if per_row is None:
        for _, layer in layers:
            layer.set_rows((), None)
        return
    if any(layer.merged for _, layer in layers):
        raise GenlabError("unmerge adapters before choosing them per row")
    names = tuple(dict.fromkeys(n for n in per_row if n is not None))
    prompts = [n for n in names if n in prompt_names(model)]
    if prompts:
        raise GenlabError(
            f"'{prompts[0]}' is a soft prompt, which shifts every position after it: it cannot "
            "share a batch with other adapters; run it alone"
        )
    known = adapter_names(model)
    for n in names:
        if n not in known:
            raise GenlabError(f"no adapter named '{n}'; this model has {', '.join(known)}")
    device = next(model.parameters()).device
    for _, layer in layers:
        own = tuple(n for n in names if n in layer.names)
        index = torch.tensor(
            [own.index(n) if n in own else -1 for n in per_row], dtype=torch.long, device=device
        )
        layer.set_rows(own, index)
