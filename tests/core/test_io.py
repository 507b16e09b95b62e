"""Atomic writes: whole files, usual permissions, one-line errors on corrupt input."""

import os
import stat

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_save_tensors, atomic_write_bytes, load_tensors, read_json


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["f.bin"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_tensors_round_trip_and_corrupt_files_are_named(tmp_path):
    tensors = {"a": torch.arange(6.0).view(2, 3), "b": torch.ones(2, dtype=torch.int64)}
    atomic_save_tensors(tmp_path / "w.safetensors", tensors)
    back = load_tensors(tmp_path / "w.safetensors")
    assert all(torch.equal(back[k], v) for k, v in tensors.items())
    data = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(GenlabError, match="truncated"):
        load_tensors(tmp_path / "cut.safetensors")
    (tmp_path / "bad.json").write_text('{"a": ')
    with pytest.raises(GenlabError, match="not valid JSON"):
        read_json(tmp_path / "bad.json")
    with pytest.raises(GenlabError, match="not found"):
        read_json(tmp_path / "missing.json")
