"""Optimizer state as safetensors plus JSON, with parameters named rather than numbered.

``optimizer.state_dict()`` numbers parameters by their position in the param groups and holds
tensors and plain values side by side; pickling it is what torch does, and what genlab never
does. Here each tensor buffer becomes one safetensors entry keyed ``NAME/PARAM/BUFFER`` (the
optimizer's name, the parameter's path in the model, the buffer) and everything else (param
groups, scalar state) goes into a JSON string for the file's metadata. Naming parameters by path
lets a checkpoint written alone load under DDP or FSDP and the other way round, and lets loading
say which parameter does not fit. :mod:`genlab.core.run` stores the result in its run folders.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from genlab.core.distributed import is_fsdp, unwrap
from genlab.core.errors import GenlabError

# Per-parameter buffers of torch's Adam, AdamW and SGD: they must have their parameter's shape.
_PARAM_SHAPED = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer")


def _json_scalar(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in optimizer metadata")


def _param_names(model: nn.Module) -> dict[int, str]:
    return {id(p): name for name, p in unwrap(model).named_parameters()}


def _named_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()`` with parameters named by their path in ``model``, not by index.

    Under FSDP, torch's distributed-checkpoint helper gathers the shards (onto rank 0) instead.
    """
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(model, optimizer, options=options)
    names = _param_names(model)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if any(id(p) not in names for p in params):
        raise GenlabError(
            "the optimizer updates a parameter that is not in the model it is saved with"
        )
    order = [names[id(p)] for p in params]
    sd = optimizer.state_dict()
    groups = [{**g, "params": [order[i] for i in g["params"]]} for g in sd["param_groups"]]
    return {"state": {order[i]: s for i, s in sd["state"].items()}, "param_groups": groups}


def _load_named_state_dict(
    model: nn.Module, optimizer: torch.optim.Optimizer, sd: dict[str, Any], source: str
) -> None:
    """Inverse of :func:`_named_state_dict`: the saved groups must hold the same parameters."""
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True)
        set_optimizer_state_dict(model, optimizer, sd, options=options)
        return
    names = _param_names(model)
    own = [[names[id(p)] for p in g["params"]] for g in optimizer.param_groups]
    saved = [g["params"] for g in sd["param_groups"]]
    if own != saved:
        raise GenlabError(
            f"{source}: the optimizer's parameter groups do not match this model's "
            f"({sum(map(len, saved))} saved parameters in {len(saved)} groups, "
            f"{sum(map(len, own))} here in {len(own)})"
        )
    index = {name: i for i, name in enumerate(n for g in own for n in g)}
    optimizer.load_state_dict(
        {
            "state": {index[name]: s for name, s in sd["state"].items()},
            "param_groups": [
                {**g, "params": [index[n] for n in g["params"]]} for g in sd["param_groups"]
            ],
        }
    )


def optimizer_tensors(
    model: nn.Module, optimizers: Mapping[str, torch.optim.Optimizer]
) -> tuple[dict[str, torch.Tensor], str]:
    """Flatten optimizers' state into ``{"NAME/PARAM/BUFFER": tensor}`` plus JSON metadata.

    Parameters are named by their path in ``model`` (wrappers stripped), so a checkpoint loads
    into the same model whether it runs alone, under DDP or sharded by FSDP.
    """
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {}
    for name, optimizer in optimizers.items():
        sd = _named_state_dict(model, optimizer)
        if not sd:  # FSDP gathers onto rank 0 only
            continue
        state: dict[str, dict[str, Any]] = {}
        for param, buffers in sd["state"].items():
            entry: dict[str, Any] = {}
            for key, value in buffers.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"{name}/{param}/{key}"] = value
                    entry[key] = {"tensor": f"{name}/{param}/{key}"}
                else:
                    entry[key] = {"value": value}
            state[param] = entry
        meta[name] = {"state": state, "param_groups": sd["param_groups"]}
    return tensors, json.dumps(meta, default=_json_scalar)


def load_optimizer_tensors(
    model: nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer],
    tensors: dict[str, torch.Tensor],
    meta_json: str,
    source: str,
) -> None:
    """Inverse of :func:`optimizer_tensors`, with one-line errors when it does not fit."""
    try:
        meta = json.loads(meta_json)
    except json.JSONDecodeError as e:
        raise GenlabError(f"{source} has corrupt optimizer metadata ({e})") from e
    params = dict(unwrap(model).named_parameters())
    for name, optimizer in optimizers.items():
        if name not in meta:
            raise GenlabError(
                f"{source} has no state for optimizer '{name}' (it holds: {', '.join(meta)})"
            )
        state: dict[str, dict[str, Any]] = {}
        for param, buffers in meta[name]["state"].items():
            if param not in params:
                raise GenlabError(
                    f"{source}: optimizer '{name}' has state for '{param}', which this model lacks"
                )
            entry = {}
            for key, ref in buffers.items():
                if "tensor" in ref:
                    if ref["tensor"] not in tensors:
                        raise GenlabError(f"{source} lacks tensor '{ref['tensor']}'")
                    value = tensors[ref["tensor"]]
                    if key in _PARAM_SHAPED and value.shape != params[param].shape:
                        raise GenlabError(
                            f"{source}: optimizer state '{param}/{key}' has shape "
                            f"{tuple(value.shape)} but the parameter has "
                            f"{tuple(params[param].shape)}"
                        )
                    entry[key] = value
                else:
                    entry[key] = ref["value"]
            state[param] = entry
        sd = {"state": state, "param_groups": meta[name]["param_groups"]}
        try:
            _load_named_state_dict(model, optimizer, sd, source)
        except (KeyError, ValueError, RuntimeError) as e:
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise GenlabError(
                f"{source}: optimizer '{name}' state does not fit this model ({first_line})"
            ) from e
