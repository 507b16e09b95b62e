"""Atomic file writes and safe reads.

A checkpoint must survive a SIGKILL at any moment: every write goes to a temporary file in the
same folder, is fsynced, then renamed over the target (rename is atomic on POSIX), and the folder
is fsynced so the rename itself is durable.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from genlab.core.errors import GenlabError


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (a crash cannot undo it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the new one whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Read JSON, turning a missing or corrupt file into a one-line ``GenlabError``."""
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise GenlabError(
            f"{what} {path} is not valid JSON ({e}); it may be truncated: restore it or start anew"
        ) from e


def atomic_save_tensors(
    path: str | os.PathLike,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str] | None = None,
) -> None:
    """Save tensors as safetensors atomically (contiguous CPU copies, shared storage broken)."""
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    atomic_write_bytes(path, save(flat, metadata=metadata))


def load_tensors(path: str | os.PathLike, what: str = "weights") -> dict[str, torch.Tensor]:
    """Load a safetensors file (never a pickle) with a one-line error when missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"{what} not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise GenlabError(
            f"{what} {path} cannot be read as safetensors ({e}); it may be truncated or not a "
            "genlab file"
        ) from e
