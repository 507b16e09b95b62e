"""The adapters experiment at toy size: the base it pretrains when missing (once, resumed, never
over a user's own), each method's learning rate chosen on validation, the paired ratio to full
fine-tuning, and the page, JSON and figure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genlab.core.errors import GenlabError
from genlab.core.io import read_json
from genlab.recipes.chatgpt.presets import smoke_config
from genlab.recipes.experiments import adapters
from genlab.recipes.experiments.adapters import AdaptersConfig, build_base, ratio_interval

pytestmark = pytest.mark.usefixtures("one_thread")


def toy(tmp: Path, **kw) -> AdaptersConfig:
    return AdaptersConfig(
        base=str(tmp / "base"), base_steps=3, families=("sentiment",), n_train=32, steps=2,
        lr_full=(1e-3,), lr_lora=(1e-3, 1e-2), lr_bottleneck=(1e-3,), lr_prompt=(1e-1,),
        n_per_family=2, out=str(tmp / "sweep"), out_dir=str(tmp / "docs"), **kw,
    )  # fmt: skip


def test_the_base_is_built_once_and_a_users_own_is_left_alone(tmp_path: Path) -> None:
    cfg = toy(tmp_path)
    build_base(cfg, smoke_config(seed=0))
    state = read_json(tmp_path / "base" / "state.json")
    assert state["step"] == 3 and (tmp_path / "base-corpus.jsonl").stat().st_size > 10_000
    weights = tmp_path / "base" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    build_base(cfg, smoke_config(seed=0))  # finished: nothing retrains
    assert weights.stat().st_mtime_ns == before
    own = tmp_path / "own"
    own.mkdir()
    (own / "model.safetensors").write_bytes(weights.read_bytes())
    build_base(AdaptersConfig(base=str(own)))  # no corpus beside it: not ours to train
    assert sorted(p.name for p in own.iterdir()) == ["model.safetensors"]


def test_ratio_interval_pairs_the_prompts() -> None:
    mean, low, high = ratio_interval([1, 1, 0, 0], [1, 1, 1, 0], seed=0)
    assert mean == pytest.approx(2 / 3) and low <= mean <= high
    same = ratio_interval([1, 0, 1, 0], [1, 0, 1, 0], seed=0)
    assert same == (1.0, 1.0, 1.0)  # paired; a resample where full got nothing is undefined
    assert all(np.isnan(ratio_interval([1, 0], [0, 0], seed=0)))
    floor = [1, 0, 0, 0]  # on gains over the floor: full adds 2 prompts, ours 1
    gain = ratio_interval(np.subtract([1, 1, 0, 0], floor), np.subtract([1, 1, 1, 0], floor), 0)
    assert gain[0] == pytest.approx(0.5) and gain[1] <= 0.5 <= gain[2]


def test_chosen_runs_take_the_best_validation_mean() -> None:
    rows = [
        {"method": m, "lr": lr, "val_exact": v}
        for m in adapters.METHODS
        for lr, v in ((1e-3, 0.5), (1e-2, 0.75 if m == "lora" else 0.25))
    ]
    assert adapters.chosen_runs(rows) == {
        "full": 1e-3,
        "lora": 1e-2,
        "bottleneck": 1e-3,
        "prompt": 1e-3,
    }


def test_the_experiment_writes_its_page(tmp_path: Path) -> None:
    cfg = toy(tmp_path)
    build_base(cfg, smoke_config(seed=0))
    results = adapters.run_experiment(cfg, "genlab experiment adapters")
    methods = results["methods"]
    assert list(methods) == list(adapters.METHODS)
    assert methods["full"]["trainable_share"] == 1.0
    assert 0 < methods["lora"]["trainable_share"] < methods["bottleneck"]["trainable_share"] * 10
    for m in adapters.METHODS[1:]:
        for share in (methods[m]["of_full"], methods[m]["of_gain"]):
            assert share["low"] <= share["mean"] <= share["high"] or np.isnan(share["mean"])
    assert set(results["goal"]) == {"score", "params"}
    assert set(results["base_few_shot"]["per_family"]) == {"sentiment"}
    docs = tmp_path / "docs"
    page = (docs / "adapters.md").read_text()
    assert "| lora |" in page and "base, few-shot (floor)" in page and "Goal: LoRA at r=8" in page
    assert "of full's gain over the floor" in page
    assert json.loads((docs / "adapters.json").read_text())["families"] == ["sentiment"]
    assert (docs / "adapters.png").stat().st_size > 1000


def test_bad_settings_are_refused_in_one_line() -> None:
    with pytest.raises(GenlabError, match="base_steps"):
        AdaptersConfig(base_steps=0).validate()
