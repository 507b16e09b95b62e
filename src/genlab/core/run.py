"""Run folders: checkpoints that survive a kill at any moment, keep the last K, and resume exactly.

A run folder looks like this::

    RUN/config.json                 {"kind", "config" (model), "train" (trainer), "genlab_version"}
    RUN/model.safetensors           the latest checkpoint, mirrored at the top level so that
    RUN/optimizer.safetensors       `genlab generate RUN` and friends read it directly
    RUN/state.json
    RUN/checkpoints/step_000200/    complete checkpoints, the newest K kept; each is also a model
    RUN/checkpoints/step_000300/    folder of its own (config.json and extra files included)
    RUN/metrics.jsonl, RUN/plots/, RUN/tensorboard/, extra files (e.g. tokenizer.json)

A checkpoint is written whole into a hidden temporary folder, every file fsynced, and then the
folder is renamed to ``step_NNNNNN`` in one atomic step: a kill leaves either no new checkpoint
or a complete one, never a mix. ``state.json`` is written last and carries the step, which the
safetensors headers repeat; loading checks that they agree, so even a hand-assembled folder
cannot mix files from two steps unnoticed. It also records the sha256 of each weights file,
checked on resume and on load, so a damaged file is refused rather than trained on (a folder
written before checksums still loads). The top-level copies are hard links (a copy where the
filesystem has none) swapped in atomically, ``state.json`` last.

The optimizer state is flattened into safetensors plus JSON metadata by
:mod:`genlab.core.optimizer_state`: nothing is pickled. Several modules and optimizers fit in one
checkpoint: put the modules in one container (``nn.ModuleDict({"generator": g, "discriminator":
d})``) and pass the optimizers as ``{"g": opt_g, "d": opt_d}``; that is how a GAN or PPO loop
saves its state with :class:`RunFolder` without the :class:`~genlab.core.trainer.Trainer`.

Under torchrun every rank calls :meth:`RunFolder.save` (FSDP gathers shards collectively and every
rank's RNG state is collected); rank 0 alone writes, the others wait at a barrier.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

import genlab
from genlab.core.checkpoint import (
    CHECKSUMS,
    CONFIG_FILE,
    MODEL_FILE,
    STATE_FILE,
    check_state_dict,
    file_sha256,
    load_state_into,
    read_model_config,
    verify_checksum,
)
from genlab.core.distributed import all_gather_object, barrier, dist_info, is_fsdp, unwrap
from genlab.core.errors import GenlabError
from genlab.core.io import (
    atomic_save_tensors,
    atomic_write_bytes,
    atomic_write_json,
    fsync_dir,
    load_tensors,
    read_json,
)
from genlab.core.optimizer_state import load_optimizer_tensors, optimizer_tensors
from genlab.core.rng import capture_rng_state, restore_rng_state

OPTIMIZER_FILE = "optimizer.safetensors"
CHECKPOINTS_DIR = "checkpoints"
_STEP_DIR = re.compile(r"^step_(\d+)$")
WEIGHTS_FILES = (MODEL_FILE, OPTIMIZER_FILE)
log = logging.getLogger(__name__)


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


def _step_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    """The ``checkpoints/step_*`` folders, oldest first (complete or not)."""
    root = run_dir / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name))]
    return sorted(found)


def _header_step(path: Path) -> str | None:
    """The ``step`` recorded in a safetensors header; a one-line error if missing or truncated."""
    if not path.is_file():
        raise GenlabError(f"incomplete checkpoint: {path} is missing")
    try:
        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get("step")
    except (SafetensorError, OSError) as e:
        raise GenlabError(f"{path} is truncated or not a safetensors file ({e})") from e


def verify_checkpoint(folder: str | os.PathLike) -> dict[str, Any]:
    """Return the ``state.json`` of a complete checkpoint folder, or say in one line what is wrong
    (missing or truncated file, files from different steps, or a file failing its checksum)."""
    folder = Path(folder)
    if not (folder / STATE_FILE).is_file():
        raise GenlabError(f"incomplete checkpoint: {folder} has no {STATE_FILE}")
    state = read_json(folder / STATE_FILE, what="checkpoint state")
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise GenlabError(f"{folder / STATE_FILE} is not a genlab checkpoint state (no step)")
    for name in WEIGHTS_FILES:
        step = _header_step(folder / name)
        if step != str(state["step"]):
            raise GenlabError(
                f"mixed checkpoint in {folder}: {name} is from step {step} but {STATE_FILE} "
                f"from step {state['step']}"
            )
        verify_checksum(folder / name, state, str(folder / STATE_FILE))
    return state


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint under ``run_dir/checkpoints`` (``None`` if there is none).

    An incomplete or damaged newer one is skipped with a one-line warning (logged, so a CLI
    user reads one line, not a Python warning with its source line); if every one is damaged,
    the newest's problem is raised.
    """
    dirs = _step_dirs(Path(run_dir))
    first_error: GenlabError | None = None
    for _, folder in reversed(dirs):
        try:
            verify_checkpoint(folder)
        except GenlabError as e:
            first_error = first_error or e
            log.warning("skipping checkpoint %s: %s", folder, e)
            continue
        return folder
    if first_error is not None:
        raise GenlabError(f"no complete checkpoint in {run_dir}: {first_error}")
    return None


def resolve_checkpoint(folder: str | os.PathLike) -> Path:
    """A checkpoint folder from a run folder (its newest complete checkpoint) or a step folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GenlabError(f"run folder not found: {folder}")
    found = latest_checkpoint(folder)  # raises when step folders exist but none is whole
    if found is not None:
        return found
    if (folder / STATE_FILE).is_file():
        return folder
    if (folder / CONFIG_FILE).is_file():
        raise GenlabError(
            f"{folder} holds no checkpoint yet (no {STATE_FILE}, no {CHECKPOINTS_DIR}/)"
        )
    raise GenlabError(
        f"{folder} is not a genlab run folder (no {CONFIG_FILE}); pass a folder written by genlab"
    )


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's full state dict under its own parameter names (gathered from FSDP shards)."""
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(model, options=options)
    return unwrap(model).state_dict()


def load_model_tensors(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a full state dict into a plain, DDP, compiled or FSDP-sharded model, checked first."""
    inner = unwrap(model)
    if is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        check_state_dict(inner.state_dict(), state, source)
        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
    else:
        load_state_into(inner, state, source)


def _publish(src: Path, dst: Path) -> None:
    """Make ``dst`` an atomic hard link to ``src`` (a copy where links are not supported)."""
    tmp = dst.with_name(f".{dst.name}.link")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        atomic_write_bytes(dst, src.read_bytes())
        return
    os.replace(tmp, dst)


def _remove_checkpoint(folder: Path) -> None:
    """Delete a checkpoint folder, ``state.json`` first so a half-deleted one reads incomplete."""
    with contextlib.suppress(FileNotFoundError):
        (folder / STATE_FILE).unlink()
    shutil.rmtree(folder, ignore_errors=True)


def check_unchanged(run: Path, saved: Mapping[str, Any], kept: Mapping[str, Any]) -> None:
    """A resumed run must keep the settings in ``kept`` that it recorded in ``saved``: they
    decide which data each step reads."""
    for name, now in kept.items():
        before = saved.get(name)
        if before is not None and before != now:
            raise GenlabError(
                f"cannot resume {run} with {name}={now}: the run used {before}, "
                "and the data order depends on it"
            )


class RunFolder:
    """A run folder: its config, its checkpoints, and saving/loading them (see module doc).

    ``kind`` names the model family (checked on load), ``config`` is the model's JSON config,
    ``train`` the trainer's, ``extra_files`` small files a reader needs (``tokenizer.json``).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        kind: str,
        config: dict[str, Any] | None = None,
        train: dict[str, Any] | None = None,
        extra_files: Mapping[str, bytes] | None = None,
        keep_last: int = 2,
    ):
        if keep_last < 1:
            raise GenlabError(f"keep_last must be at least 1 (got {keep_last})")
        self.path = Path(path)
        self.kind = kind
        self.config = config or {}
        self.train = train or {}
        self.extra_files = dict(extra_files or {})
        self.keep_last = keep_last

    def config_record(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "config": self.config,
            "train": self.train,
            "genlab_version": genlab.__version__,
        }

    def saved_config(self) -> dict[str, Any] | None:
        """The folder's ``config.json`` checked for this kind, or ``None`` for a new folder."""
        if not (self.path / CONFIG_FILE).is_file():
            return None
        return read_model_config(self.path, self.kind)

    def has_checkpoints(self) -> bool:
        """Whether any checkpoint folder exists (complete or not)."""
        return bool(_step_dirs(self.path)) or (self.path / STATE_FILE).is_file()

    def check_resume(self, resume: bool, kept: Mapping[str, Any]) -> bool:
        """Refuse to overwrite a run by accident; on resume, check that the training settings
        in ``kept`` (those that decide the data order) are the run's. Returns whether there is
        a checkpoint to resume from."""
        saved = self.saved_config()
        if not resume:
            if self.has_checkpoints():
                raise GenlabError(
                    f"{self.path} already holds a run with checkpoints: resume it (--resume) "
                    "or choose another output folder"
                )
            return False
        if saved is None:
            if self.path.is_dir() and any(self.path.iterdir()):
                raise GenlabError(
                    f"{self.path} is not a genlab run folder (no config.json): cannot resume"
                )
            return False
        check_unchanged(self.path, saved.get("train", {}), kept)
        return self.has_checkpoints()

    def write_config(self) -> None:
        """Write ``config.json`` and the extra files at the top level (rank 0; all ranks call)."""
        if dist_info().is_main:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path / CONFIG_FILE, self.config_record())
            for name, data in self.extra_files.items():
                atomic_write_bytes(self.path / name, data)
        barrier()

    def save(
        self,
        step: int,
        model: nn.Module,
        optimizers: Mapping[str, torch.optim.Optimizer],
        state: dict[str, Any] | None = None,
    ) -> Path:
        """Write checkpoint ``step`` (model, optimizers, RNG of every rank, ``state``) atomically,
        mirror it at the top level, and drop all but the newest ``keep_last``.

        Every rank must call it; only rank 0 writes. Checkpoints numbered after ``step`` are
        removed first: they belong to a future this (resumed) run is redoing.
        """
        weights = model_tensors(model)
        opt_tensors, opt_meta = optimizer_tensors(model, optimizers)
        rngs = all_gather_object(capture_rng_state())
        final = self.path / CHECKPOINTS_DIR / step_dir_name(step)
        info = dist_info()
        if info.is_main:
            record = {
                "step": step,
                "kind": self.kind,
                "world_size": info.world_size,
                **(state or {}),
                "rng": rngs,
            }
            self._write(final, step, weights, opt_tensors, opt_meta, record)
        barrier()
        return final

    def _write(
        self,
        final: Path,
        step: int,
        weights: dict[str, torch.Tensor],
        opt_tensors: dict[str, torch.Tensor],
        opt_meta: str,
        record: dict[str, Any],
    ) -> None:
        tmp = final.with_name(f".{final.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        header = {"kind": self.kind, "step": str(step)}
        atomic_save_tensors(tmp / MODEL_FILE, weights, metadata=header)
        atomic_save_tensors(tmp / OPTIMIZER_FILE, opt_tensors, {**header, "optimizers": opt_meta})
        atomic_write_json(tmp / CONFIG_FILE, self.config_record())
        for name, data in self.extra_files.items():
            atomic_write_bytes(tmp / name, data)
        sums = {name: file_sha256(tmp / name) for name in WEIGHTS_FILES}
        # insertion order, not sorted: the step first, the bulky RNG states last
        record = {k: v for k, v in record.items() if k != "rng"} | {
            CHECKSUMS: sums,
            "rng": record["rng"],
        }
        atomic_write_bytes(tmp / STATE_FILE, (json.dumps(record, indent=2) + "\n").encode())
        for other_step, folder in _step_dirs(self.path):
            if other_step >= step:
                _remove_checkpoint(folder)
        os.replace(tmp, final)
        fsync_dir(final.parent)
        for name in (MODEL_FILE, OPTIMIZER_FILE, STATE_FILE):
            _publish(final / name, self.path / name)
        fsync_dir(self.path)
        for _, folder in _step_dirs(self.path)[: -self.keep_last]:
            _remove_checkpoint(folder)
        for stale in (self.path / CHECKPOINTS_DIR).glob(".step_*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)

    def load(
        self,
        model: nn.Module,
        optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
        checkpoint: str | os.PathLike | None = None,
        restore_rng: bool = True,
    ) -> dict[str, Any]:
        """Load the newest complete checkpoint (or ``checkpoint``) and return its state."""
        return load_checkpoint(
            checkpoint if checkpoint is not None else self.path,
            model,
            optimizers,
            kind=self.kind,
            restore_rng=restore_rng,
        )


def load_checkpoint(
    folder: str | os.PathLike,
    model: nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    kind: str | tuple[str, ...] | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint (a run folder's newest complete one, or a step folder) into ``model``
    and ``optimizers``; restore this rank's RNG state; return ``state.json``.

    Every problem (not a run folder, wrong kind, truncated or mixed files, mismatched shapes) is
    a one-line :class:`GenlabError`. Call it on every rank, after wrapping for DDP/FSDP.
    """
    ckpt = resolve_checkpoint(folder)
    if kind is not None and (ckpt / CONFIG_FILE).is_file():
        read_model_config(ckpt, kind)
    state = verify_checkpoint(ckpt)
    weights = ckpt / MODEL_FILE  # its checksum was checked with the folder
    load_model_tensors(model, load_tensors(weights, what="model weights"), str(weights))
    if optimizers:
        path = ckpt / OPTIMIZER_FILE
        tensors = load_tensors(path, what="optimizer state")
        with safe_open(str(path), "pt") as f:
            meta = (f.metadata() or {}).get("optimizers", "{}")
        load_optimizer_tensors(model, optimizers, tensors, meta, str(path))
    rngs = state.get("rng") or []
    rank = dist_info().rank
    if restore_rng and rank < len(rngs):
        restore_rng_state(rngs[rank])
    return state
