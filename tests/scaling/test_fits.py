"""Scaling-law fits: Chinchilla's coefficients recovered from points drawn from the published
law plus noise, the compute-optimal split checked against the law itself, Kaplan's power law,
FLOPs counted against a real GPT, and the points a fit reads (file:line errors)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genlab.cli import main
from genlab.core.errors import GenlabError
from genlab.nets.gpt import GPT, GPTConfig
from genlab.recipes.scaling import ScalingSweepConfig, run_scaling_sweep
from genlab.scaling import (
    ChinchillaFit,
    compute_optimal,
    fit_chinchilla,
    fit_power_law,
    flops_per_token,
    non_embedding_params,
    predict,
    training_flops,
)
from genlab.scaling.chinchilla import PUBLISHED, predict_interval
from genlab.scaling.points import read_points

TRUE = ChinchillaFit(**PUBLISHED)


def sweep(seed: int, noise: float = 0.001) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An 8 x 8 grid of model sizes (1e7-1e10) and token budgets (1e9-1e12), losses from the
    published law times log-normal noise."""
    n, d = np.meshgrid(np.geomspace(1e7, 1e10, 8), np.geomspace(1e9, 1e12, 8))
    n, d = n.ravel(), d.ravel()
    rng = np.random.default_rng(seed)
    return n, d, predict(TRUE, n, d) * np.exp(rng.normal(0.0, noise, n.size))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_published_chinchilla_coefficients_are_recovered_within_5_percent(seed: int) -> None:
    fit = fit_chinchilla(*sweep(seed), n_resamples=0)
    for name, value in PUBLISHED.items():
        assert getattr(fit, name) == pytest.approx(value, rel=0.05), name


def test_bootstrap_intervals_cover_the_truth() -> None:
    fit = fit_chinchilla(*sweep(0, noise=0.002), n_resamples=40)
    for name, value in PUBLISHED.items():
        low, high = fit.intervals[name]
        assert low <= value <= high and low <= getattr(fit, name) <= high, name


def test_the_prediction_interval_holds_the_true_loss_of_an_extrapolated_run() -> None:
    fit = fit_chinchilla(*sweep(0, noise=0.002), n_resamples=40)
    n, d = 4e10, 4e12  # 4x beyond the grid in both directions
    low, high = predict_interval(fit, n, d)
    assert low <= float(predict(TRUE, n, d)) <= high and low <= float(predict(fit, n, d)) <= high
    assert high - low < 0.05  # 0.2% noise on 64 runs pins it down
    with pytest.raises(GenlabError, match="no bootstrap"):
        predict_interval(fit_chinchilla(*sweep(0), n_resamples=0), n, d)


def test_the_compute_optimal_split_minimises_the_law_at_fixed_compute() -> None:
    flops = np.array([1e18, 1e21, 1e24])
    n_opt, d_opt = compute_optimal(TRUE, flops)
    assert training_flops(n_opt, d_opt) == pytest.approx(flops)
    for scale in (0.5, 2.0):  # any other split of the same compute is worse
        n = n_opt * scale
        assert (predict(TRUE, n, flops / (6 * n)) > predict(TRUE, n_opt, d_opt)).all()
    assert TRUE.a + TRUE.b == pytest.approx(1.0)
    assert TRUE.a == pytest.approx(0.28 / 0.62)  # the paper's a = beta / (alpha + beta)


def test_kaplans_power_law_is_recovered() -> None:
    n = np.geomspace(1e5, 1e9, 12)
    rng = np.random.default_rng(0)
    loss = (8.8e13 / n) ** 0.076 * np.exp(rng.normal(0, 0.002, n.size))
    law = fit_power_law(n, loss, n_resamples=200)
    assert law.alpha == pytest.approx(0.076, rel=0.05)
    assert law.alpha_ci[0] <= 0.076 <= law.alpha_ci[1]
    assert law(n[0]) == pytest.approx(loss[0], rel=0.01)
    with pytest.raises(GenlabError, match="at least 3 distinct"):
        fit_power_law([1, 1, 2], [3, 2, 1])


def test_non_embedding_params_count_a_real_gpt() -> None:
    gpt = GPT(GPTConfig(vocab_size=50, block_size=64, n_layer=3, n_head=4, n_embd=64))
    blocks = sum(
        p.numel() for name, p in gpt.named_parameters() if ".blocks." in f".{name}" and p.dim() == 2
    )
    assert non_embedding_params(3, 64) == blocks
    assert flops_per_token(3, 64, 64) == 6 * blocks + 6 * 3 * 64 * 64


def test_points_come_from_a_file_or_a_sweep_and_bad_lines_are_named(tmp_path: Path) -> None:
    good = tmp_path / "points.jsonl"
    n, d, loss = sweep(0)
    good.write_text(
        "\n".join(
            json.dumps({"params": a, "tokens": b, "loss": c})
            for a, b, c in zip(n, d, loss, strict=True)
        )
    )
    assert len(read_points(good)) == 64
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"params": 1e6, "tokens": 1e9, "loss": 3.1}\n{"params": 1e6, "tokens": -5, "loss": 3}\n'
    )
    with pytest.raises(GenlabError, match=r"bad\.jsonl:2 needs positive numbers"):
        read_points(bad)
    folder = tmp_path / "sweep" / "p=1"
    folder.mkdir(parents=True)
    (folder / "point.json").write_text(json.dumps({"point": {"p": 1}}))
    (folder / "result.json").write_text(
        json.dumps({"params": 2e6, "tokens": 4e9, "eval_loss": 2.5})
    )
    assert read_points(tmp_path / "sweep") == [(2e6, 4e9, 2.5)]


def test_the_cli_fits_a_points_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    points = tmp_path / "points.jsonl"
    n, d, loss = sweep(1)
    points.write_text(
        "\n".join(
            json.dumps({"params": a, "tokens": b, "loss": c})
            for a, b, c in zip(n, d, loss, strict=True)
        )
    )
    main(["scaling", "fit", str(points), "--resamples", "5", "--out", str(tmp_path / "fit.json")])
    record = json.loads((tmp_path / "fit.json").read_text())
    assert record["runs"] == 64 and record["chinchilla"]["alpha"] == pytest.approx(0.34, rel=0.05)
    assert record["L(N)"]["alpha"] > 0 and record["compute_optimal"]["tokens_per_param"] > 0
    out = capsys.readouterr().out
    assert "| alpha |" in out and "tokens per parameter" in out


def test_a_sweep_of_tiny_gpts_records_what_a_fit_reads(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "shapes: [[1, 2, 16], [1, 2, 32]]\ntokens: [2048, 4096]\nextra: [[1, 2, 16, 8192]]\n"
    )
    main(["scaling", "sweep", "--grid", str(grid), "--out", str(tmp_path / "sweep"),
          "--block-size", "32", "--batch-size", "8", "--corpus-chars", "30000",
          "--vocab-size", "300", "--device", "cpu"])  # fmt: skip
    points = read_points(tmp_path / "sweep")
    assert sorted((n, d) for n, d, _ in points) == [
        (12 * 16**2, 2048), (12 * 16**2, 4096), (12 * 16**2, 8192), (12 * 32**2, 2048),
        (12 * 32**2, 4096),
    ]  # fmt: skip
    assert all(0 < loss < 10 for *_, loss in points)
    bad = tmp_path / "bad.yaml"
    bad.write_text("shapes: [[1, 3, 16]]\ntokens: [100]\n")
    with pytest.raises(GenlabError, match="width divisible by heads"):
        ScalingSweepConfig(grid=str(bad)).points()
    with pytest.raises(GenlabError, match="neither a preset"):
        ScalingSweepConfig(grid="huge").points()


def test_the_scaling_laws_experiment_predicts_a_held_out_run(tmp_path: Path) -> None:
    from genlab.recipes.experiments.scaling_laws import NAME, ScalingLawsConfig, run_experiment

    grid = tmp_path / "grid.json"
    shapes = [[1, 2, 16], [1, 2, 24], [1, 2, 32]]
    grid.write_text(json.dumps({"shapes": shapes, "tokens": [1024, 4096]}))
    sweep = ScalingSweepConfig(
        grid=str(grid), out=str(tmp_path / "sweep"), block_size=32, batch_size=8,
        corpus_chars=30_000, vocab_size=300, device="cpu",
    )  # fmt: skip
    cfg = ScalingLawsConfig(
        held_out_shape=(1, 2, 48), n_resamples=5, out_dir=str(tmp_path / "docs"), sweep=sweep
    )
    record = run_experiment(cfg, "genlab experiment scaling-laws")
    held = record["held_out"]
    largest = max(r["flops"] for r in record["runs"])
    assert held["flops"] == pytest.approx(4 * largest, rel=0.1) and held["error"] >= 0
    assert len(record["runs"]) == 6 and len(read_points(tmp_path / "sweep")) == 6  # not mixed in
    page = (tmp_path / "docs" / f"{NAME}.md").read_text()
    assert "Chinchilla (published)" in page and "goal: within 5%" in page
    assert set(record["kaplan"]) == {"alpha_N"}  # two budgets: no law in D
    assert (tmp_path / "docs" / f"{NAME}.png").stat().st_size > 1000


def test_a_sweep_point_can_be_a_torchrun_job(tmp_path: Path) -> None:
    """Two CPU processes (gloo) train each point data-parallel; rank 0 writes one result, with
    the same tokens as a one-process run of the same global batch."""
    grid = tmp_path / "grid.yaml"
    grid.write_text("shapes: [[1, 2, 16]]\ntokens: [2048]\n")
    common = ["--grid", str(grid), "--block-size", "32", "--batch-size", "8",
              "--corpus-chars", "30000", "--vocab-size", "300", "--device", "cpu"]  # fmt: skip
    main(["scaling", "sweep", *common, "--out", str(tmp_path / "ddp"), "--nproc-per-point", "2"])
    main(["scaling", "sweep", *common, "--out", str(tmp_path / "one")])
    [ddp], [one] = read_points(tmp_path / "ddp"), read_points(tmp_path / "one")
    assert ddp[:2] == one[:2] and ddp[2] == pytest.approx(one[2], rel=0.01)  # same batches
    with pytest.raises(GenlabError, match="local launcher"):
        run_scaling_sweep(
            ScalingSweepConfig(nproc_per_point=2, launcher="ray", out=str(tmp_path / "ray"))
        )
