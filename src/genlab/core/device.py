"""Devices and numeric precision: where a model runs and in which float format.

Mixed precision (Micikevicius et al., 2018, "Mixed Precision Training") keeps float32 master
weights and runs matrix products in a 16-bit format. ``bf16`` has float32's exponent range, so it
needs no loss scaling and works under autocast on CPUs with bf16 matrix units as on GPUs.
``fp16`` has a narrow range: small gradients underflow unless the loss is multiplied by a scale
that a ``GradScaler`` adapts, skipping steps whose gradients overflow. genlab offers it on CUDA
only, where it is the fast path of older GPUs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from genlab.core.errors import GenlabError

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: this process's CUDA GPU (by ``local_rank``), else Apple MPS, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise GenlabError(f"unknown device '{name}': use auto, cpu, cuda, cuda:N or mps") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise GenlabError(f"device '{name}' asked for, but this torch sees no CUDA GPU")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise GenlabError(f"device '{name}' asked for, but MPS is not available here")
    return device


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision the device cannot train in, in one line."""
    if precision not in PRECISIONS:
        raise GenlabError(f"unknown precision '{precision}': use one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise GenlabError(
            f"fp16 training needs a CUDA GPU (it relies on loss scaling); on {device.type} "
            "use --precision bf16 or fp32"
        )


def precision_dtype(precision: str) -> torch.dtype | None:
    """The dtype of a precision name; ``auto`` is None (the model's own)."""
    if precision == "auto":
        return None
    if precision not in PRECISIONS:
        raise GenlabError(
            f"unknown precision '{precision}': use auto or one of {', '.join(PRECISIONS)}"
        )
    return _DTYPES[precision]


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Run the enclosed forward pass in ``precision`` (a no-op for fp32)."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=_DTYPES[precision]):
        yield


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """A loss scaler for fp16, ``None`` otherwise (bf16 and fp32 need none)."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested tuple/list/dict) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
