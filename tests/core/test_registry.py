"""The model registry: one save and one load for every kind, and one-line errors for broken or
foreign folders."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from genlab.core.errors import GenlabError
from genlab.core.registry import ExtraFile, Kind, load, register, registered, save


@dataclass(frozen=True)
class ToyConfig:
    width: int = 3

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ToyConfig:
        return cls(**d)


class Toy(nn.Module):
    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.lin = nn.Linear(config.width, 1)


def read_note(path: Path) -> str:
    return path.read_text()


register(Kind("toy-registry", ToyConfig, Toy, (ExtraFile("note.txt", "note", read_note),)))


def test_round_trip_with_extra_file(tmp_path):
    torch.manual_seed(0)
    model = Toy(ToyConfig(4))
    save(tmp_path / "m", model, "toy-registry", ToyConfig(4), {"note.txt": b"hello"})
    loaded = load(tmp_path / "m")
    assert loaded.kind == "toy-registry" and loaded.config == ToyConfig(4)
    assert loaded.files == {"note": "hello"} and not loaded.model.training
    assert torch.equal(loaded.model.lin.weight, model.lin.weight)
    assert "toy-registry" in registered()


def test_broken_and_foreign_folders_fail_in_one_line(tmp_path):
    folder = tmp_path / "m"
    save(folder, Toy(ToyConfig()), "toy-registry", ToyConfig(), {"note.txt": b"x"})
    cases = []
    with pytest.raises(GenlabError, match="a gpt model is needed") as e:
        load(folder, kind="gpt")
    cases.append(e)
    (folder / "note.txt").unlink()
    with pytest.raises(GenlabError, match="has no note.txt") as e:
        load(folder)
    cases.append(e)
    meta = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**meta, "kind": "martian"}))
    with pytest.raises(GenlabError, match="unknown model kind 'martian'") as e:
        load(folder)
    cases.append(e)
    with pytest.raises(GenlabError, match="not a genlab checkpoint") as e:
        load(tmp_path)
    cases.append(e)
    with pytest.raises(GenlabError, match="needs the file note.txt") as e:
        save(tmp_path / "n", Toy(ToyConfig()), "toy-registry", ToyConfig())
    cases.append(e)
    assert all("\n" not in str(c.value) for c in cases)


def test_weights_of_another_shape_are_named(tmp_path):
    folder = tmp_path / "m"
    save(folder, Toy(ToyConfig(3)), "toy-registry", ToyConfig(3), {"note.txt": b"x"})
    meta = json.loads((folder / "config.json").read_text())
    meta["config"]["width"] = 5
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(GenlabError, match="weight 'lin.weight' has shape"):
        load(folder)
