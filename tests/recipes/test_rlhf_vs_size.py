"""``genlab experiment rlhf-vs-size``: the big model's size, the verdict rule, and the whole
experiment on a smoke-sized demo (page, JSON and figure agree; a rerun trains nothing)."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from genlab.cli import main
from genlab.core.errors import GenlabError
from genlab.metrics.bootstrap import Interval
from genlab.nets.gpt import GPT, GPTConfig
from genlab.recipes.chatgpt.presets import demo_config
from genlab.recipes.experiments.rlhf_vs_size import (
    BIG,
    MODELS,
    NAME,
    RLHFSizeConfig,
    big_run,
    claim_verdict,
    gpt_config,
    parameter_count,
    per_prompt,
    read_demo,
    scaled_shape,
    table,
)


def test_the_big_model_of_the_demo_preset_has_about_4x_its_parameters():
    pre = demo_config().pretrain
    base = GPTConfig.preset(pre.preset, block_size=pre.block_size, vocab_size=pre.vocab_size)
    big = scaled_shape(base, 4.0)
    ratio = parameter_count(big) / parameter_count(base)
    assert 3.5 <= ratio <= 4.5
    assert big.n_layer >= base.n_layer and big.n_embd >= base.n_embd
    assert big.head_dim == base.head_dim and big.vocab_size == base.vocab_size
    # the count without weights is the real model's
    assert parameter_count(big) == sum(p.numel() for p in GPT(big).parameters())


def test_the_big_run_differs_from_the_demo_only_in_the_model_size(smoke_demo, tmp_path):
    demo = read_demo(smoke_demo)
    run = big_run(demo, RLHFSizeConfig(demo=(str(smoke_demo),), out=str(tmp_path)))
    ratio = parameter_count(run.shape) / parameter_count(gpt_config(smoke_demo / "pretrain"))
    assert 3.5 <= ratio <= 4.5
    shape = run.config.pretrain
    assert (shape.n_layer, shape.n_head, shape.n_embd) == (
        run.shape.n_layer,
        run.shape.n_head,
        run.shape.n_embd,
    )
    assert run.config.pretrain.tokenizer == str(smoke_demo / "pretrain" / "tokenizer.json")
    same = replace(
        run.config,
        out=demo.config.out,
        progress=demo.config.progress,
        pretrain=replace(
            run.config.pretrain,
            n_layer=None,
            n_head=None,
            n_embd=None,
            tokenizer=None,
            train=replace(run.config.pretrain.train, progress=False),
        ),
        sft=replace(
            run.config.sft,
            sft=replace(
                run.config.sft.sft, train=replace(run.config.sft.sft.train, progress=False)
            ),
        ),
    )
    assert asdict(same) == asdict(demo.config)


def test_a_demo_trained_with_other_settings_than_its_preset_is_refused(smoke_demo, tmp_path):
    demo = tmp_path / "demo"
    shutil.copytree(smoke_demo, demo)
    config = json.loads((demo / "pretrain" / "config.json").read_text())
    config["train"]["max_steps"] += 1
    (demo / "pretrain" / "config.json").write_text(json.dumps(config))
    with pytest.raises(GenlabError, match="max_steps=11 but the 'smoke' preset now sets 10"):
        read_demo(demo)
    shutil.rmtree(demo / "dpo")
    with pytest.raises(GenlabError, match="no finished dpo stage"):
        read_demo(demo)


def _interval(low: float, high: float) -> Interval:
    return Interval((low + high) / 2, low, high)


@pytest.mark.parametrize(
    ("ppo", "dpo", "expected"),
    [
        ((0.52, 0.60), (0.40, 0.55), "reproduced"),
        ((0.40, 0.49), (0.51, 0.70), "reproduced"),
        ((0.30, 0.45), (0.35, 0.49), "refuted"),
        ((0.30, 0.45), (0.45, 0.55), "inconclusive"),
        ((0.45, 0.55), (0.48, 0.52), "inconclusive"),
        ((0.50, 0.60), (0.40, 0.50), "inconclusive"),  # bounds at 50% decide nothing
    ],
)
def test_the_verdict_needs_a_whole_interval_on_one_side_of_50_percent(ppo, dpo, expected):
    assert claim_verdict({"ppo": _interval(*ppo), "dpo": _interval(*dpo)}) == expected


def test_settings_out_of_range_are_one_line_errors():
    with pytest.raises(GenlabError, match="scale"):
        RLHFSizeConfig(scale=1.0).validate()
    with pytest.raises(GenlabError, match="samples"):
        RLHFSizeConfig(samples=0).validate()


@pytest.mark.slow
def test_the_experiment_writes_a_page_whose_numbers_are_its_json(smoke_demo, tmp_path, capsys):
    docs, runs = tmp_path / "docs", tmp_path / "runs"
    args = [
        "experiment",
        "rlhf-vs-size",
        "--demo",
        str(smoke_demo),
        "--out",
        str(runs),
        "--out-dir",
        str(docs),
        "--n-per-family",
        "2",
        "--samples",
        "2",
        "--no-progress",
    ]
    main(args)
    assert f"wrote {docs / NAME}.md" in capsys.readouterr().out
    page = (docs / f"{NAME}.md").read_text()
    results = json.loads((docs / f"{NAME}.json").read_text())
    assert (docs / f"{NAME}.png").read_bytes()[:4] == b"\x89PNG"

    assert results["verdict"] in ("reproduced", "refuted", "inconclusive")
    assert f"**Verdict: {results['verdict']}.**" in page
    assert results["command"].startswith("genlab experiment rlhf-vs-size --demo")
    assert results["command"] in page
    assert 3.5 <= results["param_ratio"] <= 4.5
    models = results["models"]
    assert set(models) == set(MODELS)
    assert results["prompts_per_seed"] == 2 * len(results["families"])
    for m, entry in models.items():
        for key in ("exact", "judge") + (() if m == BIG else ("win",)):
            cell = entry[key]
            assert 0.0 <= cell["low"] <= cell["mean"] <= cell["high"] <= 1.0, (m, key)
        assert entry["train_seconds"] > 0
    assert "win" not in models[BIG]
    # the page's table is the JSON's numbers
    assert table(results) in page
    rows = [line for line in page.splitlines() if line.startswith("| ") and "M |" in line]
    assert len(rows) == 4
    for row, m in zip(rows, MODELS, strict=True):
        entry = models[m]
        assert f"| {entry['params'] / 1e6:.2f}M | {entry['train_seconds']:.0f} |" in row
        assert Interval(**entry["exact"]).format() in row
        assert Interval(**entry["judge"]).format(percent=False, digits=3) in row
        if m != BIG:
            assert Interval(**entry["win"]).format() in row
    assert re.search(r"load average at the start \[.*\], at the end \[.*\]", page)

    # the big model: a bigger GPT on the demo's tokenizer, both stages recorded
    (big,) = models[BIG]["folders"]
    shape = gpt_config(big)
    assert (shape.n_layer, shape.n_embd) == (
        results["big_shape"]["n_layer"],
        results["big_shape"]["n_embd"],
    )
    assert (smoke_demo / "pretrain" / "tokenizer.json").read_bytes() == (
        Path(big).parent / "pretrain" / "tokenizer.json"
    ).read_bytes()
    weights = sorted(runs.rglob("model.safetensors"))
    assert len(weights) >= 2
    mtimes = [w.stat().st_mtime_ns for w in weights]

    # a rerun keeps the trained model and reuses the cached answers: the same numbers
    main(args)
    assert [w.stat().st_mtime_ns for w in weights] == mtimes
    again = json.loads((docs / f"{NAME}.json").read_text())
    assert again["models"] == results["models"]


def test_the_full_score_share_counts_sampled_answers_not_prompts():
    values = {"exact": [1.0, 0.0], "scores": [[1.0, 0.5, 1.0, 0.9], [1.0, 1.0, 1.0, 1.0]]}
    big = {"exact": [1.0, 1.0], "scores": [[1.0, 0.5, 0.9, 0.9], [0.2, 1.0, 1.0, 1.0]]}
    got = per_prompt(values, big)
    assert got["perfect"] == [0.5, 1.0]
    assert got["judge"] == [0.85, 1.0]
    assert got["win"] == [(0.5 + 0.5 + 1 + 0.5) / 4, (1 + 0.5 * 3) / 4]
    assert got["ties"] == [0.75, 0.75]
