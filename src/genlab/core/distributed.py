"""Many processes: torchrun set-up, data-parallel wrapping (DDP or FSDP) and collectives.

Data parallelism (Li et al., 2020, "PyTorch Distributed") runs one model replica per process,
each on its share of the global batch, and averages gradients with an all-reduce during the
backward pass, so every replica takes the same optimizer step. FSDP (Zhao et al., 2023,
"PyTorch FSDP"; here the per-parameter ``fully_shard`` API) shards parameters, gradients and
optimizer state across processes and gathers each layer's weights only while it runs: for
models that do not fit one device.

Launch with ``torchrun --nproc_per_node N script.py`` (several nodes: ``--nnodes`` and a
rendezvous endpoint); torchrun sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and the master
address, which :func:`init_distributed` reads. The backend is NCCL on CUDA and gloo on the CPU.
Every helper here is a no-op in a single process, so the same training code runs both ways.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from genlab.core.device import pick_device
from genlab.core.errors import GenlabError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its global rank, its rank on its node, and the world size."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, writes checkpoints and shows the progress bar."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    """This process's place, from the live process group or else torchrun's variables."""
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        return DistInfo(dist.get_rank(), local, dist.get_world_size())
    return DistInfo(
        int(os.environ.get("RANK", "0")),
        int(os.environ.get("LOCAL_RANK", "0")),
        int(os.environ.get("WORLD_SIZE", "1")),
    )


def init_distributed(device: str = "auto") -> tuple[DistInfo, torch.device, bool]:
    """Join torchrun's process group when launched by it; pick this process's device.

    Returns ``(info, device, created)``; ``created`` says this call opened the process group,
    so the caller should close it with :func:`shutdown` when done.
    """
    info = dist_info()
    torch_device = pick_device(device, info.local_rank)
    if not info.distributed or dist.is_initialized():
        return info, torch_device, False
    if not dist.is_available():
        raise GenlabError("launched with WORLD_SIZE > 1 but this torch has no torch.distributed")
    if torch_device.type == "mps":
        raise GenlabError("multi-process training is not supported on MPS; use CPU or CUDA")
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
        dist.init_process_group("nccl", device_id=torch_device)
    else:
        dist.init_process_group("gloo")
    return dist_info(), torch_device, True


def shutdown(wait: bool = True) -> None:
    """Close the process group if one is open, after a final barrier when ``wait``."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (a no-op alone): non-zero ranks wait here while rank 0 writes."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over processes in place and return it (unchanged alone)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_object(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order (``[obj]`` alone). Objects must be picklable
    plain data: they travel between processes, never to disk."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def wrap_model(model: nn.Module, device: torch.device, fsdp: bool = False) -> nn.Module:
    """Wrap ``model`` for data parallelism when several processes run (returned as is alone).

    DDP broadcasts rank 0's weights at wrap time, so every replica starts equal. With
    ``fsdp=True`` every module held in an ``nn.ModuleList`` (the usual home of Transformer
    blocks) becomes its own shard unit, then the root: the model is changed in place.
    Build optimizers after wrapping; they must see the sharded parameters.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        for module in list(model.modules()):
            if isinstance(module, nn.ModuleList):
                for block in module:
                    fully_shard(block)
        fully_shard(model)
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside DDP and ``torch.compile`` wrappers (FSDP wraps in place)."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def is_fsdp(model: nn.Module) -> bool:
    """Whether ``fully_shard`` was applied to the (unwrapped) model.

    Looked up in ``sys.modules`` so that processes that never shard skip importing FSDP (and
    DTensor with it: about a second at start-up).
    """
    fsdp = sys.modules.get("torch.distributed.fsdp")
    return fsdp is not None and isinstance(unwrap(model), fsdp.FSDPModule)


@contextlib.contextmanager
def gradient_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce inside this block when ``enabled`` is False.

    With gradient accumulation only the last micro-batch's backward needs to synchronise:
    the others add into local gradients, saving one all-reduce per micro-batch.
    """
    if enabled:
        yield
    elif isinstance(model, DistributedDataParallel):
        with model.no_sync():
            yield
    elif is_fsdp(model):
        inner = unwrap(model)
        inner.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            inner.set_requires_gradient_sync(True)
    else:
        yield
