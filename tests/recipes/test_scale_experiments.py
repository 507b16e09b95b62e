"""The four experiments over the scaling sweep's models (emergence, calibration, u-shaped,
knowledge vs language): their scoring rules by hand, then each whole on a tiny sweep (page,
JSON and figure agree; the sweep is trained once and reused)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genlab.cli import main
from genlab.core.errors import GenlabError
from genlab.data.tinyworld.world import World
from genlab.recipes.experiments import calibration, emergence, knowledge_vs_language, u_shaped
from genlab.recipes.experiments.sweep_models import by_size, sweep_models
from genlab.recipes.scaling import ScalingSweepConfig


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> ScalingSweepConfig:
    """Two shapes at two budgets, trained once for the module."""
    root = tmp_path_factory.mktemp("scale-experiments")
    grid = root / "grid.json"
    grid.write_text(json.dumps({"shapes": [[1, 2, 16], [1, 2, 32]], "tokens": [1024, 4096]}))
    cfg = ScalingSweepConfig(
        grid=str(grid), out=str(root / "sweep"), block_size=32, batch_size=8,
        corpus_chars=30_000, vocab_size=300, device="cpu",
    )  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    sweep_models(cfg)
    torch.set_num_threads(threads)
    return cfg


def test_the_sweep_models_come_in_loss_order_and_by_size_keeps_one_budget(sweep):
    models = sweep_models(sweep)
    assert len(models) == 4 and [m.loss for m in models] == sorted(
        (m.loss for m in models), reverse=True
    )
    assert all((m.folder / "model.safetensors").is_file() for m in models)
    chosen = by_size(models)
    assert [m.width for m in chosen] == [16, 32] and {m.tokens for m in chosen} == {4096}


def test_emergence_reads_results_and_scores_digits_and_jumps():
    assert emergence.result_of("Ones: 7 + 6 = 13, write 3 and carry 1.\nSo 47 + 36 = 83.") == 83
    assert emergence.result_of("Ones: 7 + 6 = 13") is None
    assert emergence.digit_share(83, 83) == 1.0 and emergence.digit_share(None, 83) == 0.0
    assert emergence.digit_share(73, 83) == 0.5 and emergence.digit_share(1083, 83) == 0.5
    assert emergence.largest_jump([0.0, 0.0, 0.0, 1.0]) == 1.0
    assert emergence.largest_jump([0.0, 0.25, 0.5, 0.75, 1.0]) == pytest.approx(0.25)
    assert emergence.largest_jump([0.3, 0.3]) == 0.0


def test_emergence_on_the_tiny_sweep(sweep, tmp_path):
    cfg = emergence.EmergenceConfig(
        n_problems=4, max_new_tokens=16, device="cpu", out_dir=str(tmp_path), sweep=sweep
    )
    record = emergence.run_experiment(cfg, "genlab experiment emergence")
    assert len(record["models"]) == 4
    for model in record["models"]:
        assert set(model["results"]) == set(emergence.TASKS)
        for task in model["results"].values():
            for key in emergence.METRICS:
                mean, low, high = task[key]
                assert low <= mean <= high
            assert 0 <= task["exact"][0] <= task["digits"][0] <= 1 and task["loglik"][0] < 0
    page = (tmp_path / "emergence.md").read_text()
    assert "largest jump" in page and "genlab experiment emergence" in page
    assert (tmp_path / "emergence.png").stat().st_size > 1000


def test_u_shape_reading():
    flat = [[0.5, 0.45, 0.55]] * 3
    assert u_shaped.shape_of(flat) == "flat"
    assert (
        u_shaped.shape_of([[0.8, 0.75, 0.85], [0.2, 0.15, 0.25], [0.7, 0.65, 0.75]]) == "U-shaped"
    )
    assert u_shaped.shape_of([[0.8, 0.75, 0.85], [0.5, 0.45, 0.55], [0.2, 0.15, 0.25]]) == "inverse"
    assert u_shaped.shape_of([[0.2, 0.15, 0.25], [0.5, 0.45, 0.55], [0.8, 0.75, 0.85]]) == "rising"


def test_u_shaped_on_the_tiny_sweep(sweep, tmp_path):
    cfg = u_shaped.UShapedConfig(n_traps=12, device="cpu", out_dir=str(tmp_path), sweep=sweep)
    record = u_shaped.run_experiment(cfg, "genlab experiment u-shaped")
    assert set(record["shape"].values()) <= {"U-shaped", "inverse", "rising", "flat"}
    for model in record["models"]:
        for key in u_shaped.SCORES:
            mean, low, high = model[key]
            assert 0 <= low <= mean <= high <= 1 and mean * 12 == pytest.approx(round(mean * 12))
    assert "copies against memory" in (tmp_path / "u_shaped.md").read_text()


def test_tokens_to_reach_interpolates_in_log_tokens():
    reach = knowledge_vs_language.tokens_to_reach
    # floor 0.5, final 1.0: the goal is 0.95, halfway (in score) between 1000 and 4000 tokens
    assert reach([1000, 4000, 16000], [0.9, 1.0, 1.0], 0.5) == pytest.approx(2000)
    assert reach([1000, 4000], [0.99, 1.0], 0.5) == 1000
    assert reach([1000, 4000], [0.4, 0.45], 0.5) is None


def test_knowledge_vs_language_on_the_tiny_sweep(sweep, tmp_path):
    cfg = knowledge_vs_language.KnowledgeLanguageConfig(
        n_pairs=10, early_tokens=(512,), device="cpu", out_dir=str(tmp_path), sweep=sweep
    )
    record = knowledge_vs_language.run_experiment(cfg, "genlab experiment knowledge-vs-language")
    assert len(record["models"]) == 6  # two early runs and the sweep's four
    assert sorted({m["tokens"] for m in record["models"]}) == [512, 1024, 4096]
    assert set(record["untrained"]) == set(record["tokens_to_90pct"]) == {"1 x 16", "1 x 32"}
    for reach in record["tokens_to_90pct"].values():
        assert all(v is None or 512 <= v <= 4096 for v in reach.values())
    assert Path(f"{sweep.out}-early").is_dir()
    page = (tmp_path / "knowledge_vs_language.md").read_text()
    assert "untrained" in page and "facts / grammar" in page


def test_fact_choices_hold_the_answer_and_probabilities_normalise(sweep):
    world = World(0)
    choices = calibration.fact_choices(world, 30, seed=0)
    for c in choices:
        truth = c.options[c.answer].strip(" .").split(" ")[-1]
        subject = next(p for p in world.persons if f" {p} " in f" {c.prompt} ")
        assert any(f.object == truth for f in world.facts_about(subject))
        assert len(set(c.options)) == len(c.options) >= 2
    model, tokenizer = sweep_models(sweep)[0].open("cpu")
    probs = calibration.option_probabilities(model, tokenizer, choices[:5])
    assert all(p.shape == (len(c.options),) for p, c in zip(probs, choices[:5], strict=True))
    assert all(np.isclose(p.sum(), 1.0) for p in probs)


def test_calibration_needs_a_finished_demo(sweep, tmp_path):
    cfg = calibration.CalibrationConfig(demo=str(tmp_path / "none"), sweep=sweep)
    with pytest.raises(GenlabError, match="genlab demo"):
        calibration.run_experiment(cfg)


def test_calibration_on_the_tiny_sweep_and_the_smoke_demo(sweep, smoke_demo, tmp_path):
    out = tmp_path / "docs"
    args = ["experiment", "calibration", "--n-questions", "20", "--n-per-family", "4"]
    args += ["--demo", str(smoke_demo), "--device", "cpu", "--out-dir", str(out)]
    args += ["--grid", sweep.grid, "--out", sweep.out, "--block-size", "32", "--batch-size", "8"]
    args += ["--corpus-chars", "30000", "--vocab-size", "300", "--sweep-device", "cpu"]
    main(args)
    record = json.loads((out / "calibration.json").read_text())
    assert len(record["by_size"]) == 4 and set(record["rlhf"]) == set(calibration.RLHF_MODELS)
    for row in [*record["by_size"], *record["rlhf"].values()]:
        ece, low, high = row["ece"]
        assert 0 <= low <= high <= 1 and 0 <= ece <= 1
        assert sum(row["bins"]["count"]) in (20, 8)
    page = (out / "calibration.md").read_text()
    assert "Before and after RLHF" in page and "--n-questions 20" in page


def test_the_suite_runs_its_parts_on_one_sweep_and_reports_their_minutes(
    sweep, smoke_demo, tmp_path, monkeypatch
):
    from genlab.recipes.experiments import scale_all

    monkeypatch.setattr(
        scale_all, "SUITE", {u_shaped: lambda: u_shaped.UShapedConfig(n_traps=8, device="cpu")}
    )
    cfg = scale_all.ScaleAllConfig(
        demo=str(smoke_demo), device="cpu", out_dir=str(tmp_path), sweep=sweep
    )
    minutes = scale_all.run_experiment(cfg, "genlab experiment scale-all")
    assert set(minutes) == {"sweep", "demo", "u_shaped", "total"}
    assert minutes["demo"] < 0.5  # the demo was there: not trained again
    page = (tmp_path / "scale_all.md").read_text()
    assert "[u_shaped](u_shaped.md)" in page and "minutes of process time" in page
    assert (tmp_path / "u_shaped.md").is_file()
