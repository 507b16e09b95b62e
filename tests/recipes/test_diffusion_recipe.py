"""The diffusion recipe and its CLI: a tiny run trains, writes grids and its weight average,
resumes exactly, `genlab image sample` draws a seeded PNG grid from it, and each of the three
`genlab experiment diffusion-*` commands writes its table, page and figures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from genlab.cli import main
from genlab.core.checkpoint import save_model_folder
from genlab.core.ema import EMA_FILE
from genlab.core.errors import GenlabError
from genlab.core.io import load_tensors
from genlab.core.sweep import point_dir
from genlab.core.train_config import TrainConfig
from genlab.methods.diffusion.text_conditioned import load_diffusion
from genlab.metrics.features import KIND as FEATURES_KIND
from genlab.metrics.features import FeatureNet, FeatureNetConfig
from genlab.metrics.fid import feature_statistics, frechet_distance
from genlab.recipes.diffusion import DataSpec, ImageTrainConfig, train_diffusion
from genlab.recipes.diffusion_eval import sample_run
from genlab.recipes.experiments.diffusion_steps import fid_ratio
from genlab.recipes.experiments.sampling import SAMPLE_POINT, sweep_features

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(out: Path, max_steps: int = 4) -> ImageTrainConfig:
    return ImageTrainConfig(
        out=str(out),
        data=DataSpec(data="shapes", size=16, n_images=64),
        preset="tiny",
        unet_overrides={"base_channels": 16, "num_heads": 2},
        text_dim=16,
        text_layers=1,
        grid_sampler_steps=2,
        train=TrainConfig(
            max_steps=max_steps,
            batch_size=8,
            lr=2e-3,
            warmup_steps=1,
            weight_decay=0.0,
            eval_every=2,
            eval_batches=1,
            checkpoint_every=2,
            log_every=1,
            device="cpu",
            progress=False,
            tensorboard=False,
            plots=False,
        ),
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddpm") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the tests, so float sums match the resumed run's exactly
    train_diffusion(tiny(out))
    torch.set_num_threads(threads)
    return out


def test_run_folder_holds_grids_average_and_tokenizer(run):
    for name in (
        "config.json",
        "model.safetensors",
        EMA_FILE,
        "caption_tokenizer.json",
        "recipe.json",
    ):
        assert (run / name).is_file(), name
    grids = sorted(p.name for p in (run / "samples").glob("step_*.png"))
    assert grids == ["step_000002.png", "step_000004.png"]
    prompts = (run / "samples" / "prompts.txt").read_text().splitlines()
    assert len(prompts) == 8 and all(p.startswith("a ") for p in prompts)
    with Image.open(run / "samples" / "step_000004.png") as grid:
        assert grid.size == (4 * (8 * 18 + 2), 4 * (2 * 18 + 2))  # 8 prompts x 2, 16 px + pad
    model, tok = load_diffusion(run)
    raw, _ = load_diffusion(run, use_ema=False)
    assert not torch.equal(model.unet.conv_in.weight, raw.unet.conv_in.weight)
    assert tok.vocab_size == model.config.text.vocab_size


def test_resume_continues_weights_and_average_exactly(run, tmp_path):
    cfg = tiny(tmp_path / "split")
    train_diffusion(cfg, until=2)
    train_diffusion(cfg, resume=True)
    for name in ("model.safetensors", EMA_FILE):
        whole, split = load_tensors(run / name), load_tensors(tmp_path / "split" / name)
        for key, value in whole.items():
            assert torch.equal(split[key], value), (name, key)


def test_sample_grid_is_seeded(run, tmp_path):
    a, caps = sample_run(
        run, tmp_path / "a.png", prompts=["a large red circle on the left"], n=3, steps=2, seed=5
    )
    b, _ = sample_run(
        run, tmp_path / "b.png", prompts=["a large red circle on the left"], n=3, steps=2, seed=5
    )
    c, _ = sample_run(
        run, tmp_path / "c.png", prompts=["a large red circle on the left"], n=3, steps=2, seed=6
    )
    assert a.shape == (3, 3, 16, 16) and caps == ["a large red circle on the left"] * 3
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    with pytest.raises(GenlabError, match="never saw"):
        sample_run(run, tmp_path / "d.png", prompts=["a pink circle"], n=1, steps=2)


def test_cli_sample_writes_a_png(run, tmp_path, capsys):
    out = tmp_path / "grid.png"
    argv = [
        "image",
        "sample",
        str(run),
        "--sampler",
        "ddpm",
        "--steps",
        "3",
        "--n",
        "4",
        "--guidance",
        "2",
        "--prompt",
        "a small blue square at the top",
        "--seed",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    main(argv)
    assert "wrote 4 samples" in capsys.readouterr().out
    with Image.open(out) as grid:
        assert grid.format == "PNG" and grid.size == (4 * (4 * 18 + 2), 4 * 20)


def test_cli_without_prompts_draws_held_out_captions(run, tmp_path, capsys):
    main(
        [
            "image",
            "sample",
            str(run),
            "--steps",
            "2",
            "--n",
            "3",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "g.png"),
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("wrote 3 samples") and lines[1].strip().startswith("a ")


def test_cli_errors_are_one_line(run, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["image", "sample", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png")])
    assert e.value.code == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["image", "train", "--out", str(tmp_path / "r"), "--model", "gam"])
    assert e.value.code == 2
    assert "unknown image method 'gam'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# The three experiments, end to end at toy size through `genlab experiment`: each writes its
# JSON rows, a page with a table row per setting and the command that made it, and figures.


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> Path:
    """An untrained feature network: enough to exercise FID and adherence end to end."""
    torch.manual_seed(0)
    config = FeatureNetConfig(width=8, feature_dim=8)
    folder = tmp_path_factory.mktemp("features") / "net"
    save_model_folder(folder, FeatureNet(config), FEATURES_KIND, config.to_dict())
    return folder


def _page(out: Path, name: str, command: str) -> str:
    page = (out / f"{name}.md").read_text()
    assert f"genlab experiment {command}" in page
    for png in (f"{name}.png", f"{name}_samples.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return page


def test_steps_experiment_compares_ddpm_with_each_ddim_count(run, net, tmp_path, capsys):
    argv = (
        ["experiment", "diffusion-steps", "--run", str(run), "--features", str(net), "--n", "4"]
        + ["--ddim-steps", "2,3", "--ddpm-steps", "5", "--batch-size", "4"]
        + ["--out-dir", str(tmp_path), "--sweep-dir", str(tmp_path / "sweeps")]
    )
    main(argv)
    result = json.loads((tmp_path / "diffusion_steps.json").read_text())
    rows = result["rows"]
    assert [(r["sampler"], r["steps"]) for r in rows] == [("ddpm", 5), ("ddim", 2), ("ddim", 3)]
    for r in rows:
        assert r["n"] == 4 and 0 <= r["adherence"] <= 1 and r["fid"] >= 0
        assert r["seconds_per_image"] > 0 and "kid" in r
        assert r["fid_ratio_low"] <= r["fid_ratio"] <= r["fid_ratio_high"]
        assert r["speedup"] == pytest.approx(rows[0]["seconds_per_image"] / r["seconds_per_image"])
    # DDPM is its own yardstick: ratio 1 in every resample
    assert (rows[0]["fid_ratio"], rows[0]["fid_ratio_low"], rows[0]["fid_ratio_high"]) == (1, 1, 1)
    assert rows[1]["fid_ratio"] == pytest.approx(rows[1]["fid"] / rows[0]["fid"])
    assert result["real_images"]["n"] == 4
    page = _page(tmp_path, "diffusion_steps", "diffusion-steps")
    assert page.count("| DDIM |") == 2 and page.count("| DDPM |") == 1
    assert "| real images (floor) |" in page and "paired bootstrap" in page
    points = sorted((tmp_path / "sweeps" / "diffusion_steps").glob("*/result.json"))
    assert len(points) == 3
    for point in points:  # the features of every image are kept for the intervals
        assert load_tensors(point.parent / "features.safetensors")["features"].shape == (4, 8)

    capsys.readouterr()
    main(argv)  # every setting is measured already: the page is rewritten from the sweep
    assert "3 points, 3 already done, 0 to run" in capsys.readouterr().out
    assert json.loads((tmp_path / "diffusion_steps.json").read_text()) == result


def test_guidance_experiment_has_a_row_per_scale_alike_in_parallel(run, net, tmp_path):
    def guidance(out: Path, *more: str) -> list[dict]:
        main(
            ["experiment", "diffusion-guidance", "--run", str(run), "--features", str(net)]
            + ["--n", "4", "--scales", "0,2", "--steps", "2", "--out-dir", str(out)]
            + ["--sweep-dir", str(out / "sweeps"), *more]
        )
        return json.loads((out / "diffusion_guidance.json").read_text())["rows"]

    rows = guidance(tmp_path / "one")
    assert [r["guidance"] for r in rows] == [0.0, 2.0]
    assert rows[0]["fid"] != rows[1]["fid"]  # the caption changes the samples
    _page(tmp_path / "one", "diffusion_guidance", "diffusion-guidance")
    # each scale in its own process: the same numbers and samples (up to float sums, whose
    # order may follow the processes' thread counts)
    for a, b in zip(rows, guidance(tmp_path / "two", "--parallel", "2"), strict=True):
        assert a.pop("seconds_per_image") > 0 and b.pop("seconds_per_image") > 0
        assert b == pytest.approx(a, rel=1e-5)
    one, two = (
        sorted((tmp_path / d / "sweeps" / "diffusion_guidance").glob("*/samples.safetensors"))
        for d in ("one", "two")
    )
    assert [p.parent.name for p in one] == [p.parent.name for p in two] and len(one) == 2
    for a, b in zip(one, two, strict=True):
        assert torch.allclose(load_tensors(a)["images"], load_tensors(b)["images"], atol=1e-5)


def test_prediction_experiment_trains_one_arm_per_target_alike(run, net, tmp_path, capsys):
    base = shutil.copytree(run, tmp_path / "base")  # a base run fitted into minutes
    recipe = json.loads((base / "recipe.json").read_text())
    (base / "recipe.json").write_text(json.dumps({**recipe, "time_budget": 60.0}))
    argv = (
        ["experiment", "diffusion-prediction", "--base", str(base), "--runs", str(tmp_path / "a")]
        + ["--predictions", "eps,x0", "--max-steps", "2", "--features", str(net), "--n", "4"]
        + ["--steps", "2", "--out-dir", str(tmp_path), "--sweep-dir", str(tmp_path / "sweeps")]
    )
    main(argv)
    result = json.loads((tmp_path / "diffusion_prediction.json").read_text())
    rows = result["rows"]
    assert [r["prediction"] for r in rows] == ["eps", "x0"]
    assert result["real_images"]["n"] == 4 and all("kid" in r for r in rows)
    arms = [Path(r["run"]) for r in rows]
    assert all(arm.parent == tmp_path / "a" for arm in arms)
    configs = [json.loads((arm / "config.json").read_text()) for arm in arms]
    assert configs[0]["config"]["prediction"] == "eps"
    assert configs[1]["config"]["prediction"] == "x0"
    assert configs[0]["train"] == configs[1]["train"]  # the same budget and seed
    for arm in arms:  # the same steps, whatever the machine's speed: no time budget
        assert json.loads((arm / "recipe.json").read_text())["time_budget"] is None
    assert "| real images (floor) |" in _page(
        tmp_path, "diffusion_prediction", "diffusion-prediction"
    )

    capsys.readouterr()
    main(argv)  # the arms are trained and measured already
    assert capsys.readouterr().out.count("2 points, 2 already done, 0 to run") == 2


def test_fid_ratio_is_one_for_the_same_set_and_grows_with_a_shift():
    gen = torch.Generator().manual_seed(0)
    reference = torch.randn(300, 4, generator=gen)
    base = torch.randn(300, 4, generator=gen)
    same = fid_ratio(base, base, reference)
    assert (same.mean, same.low, same.high) == (1, 1, 1)
    shifted = fid_ratio(base + 0.5, base, reference)
    assert 1 < shifted.low <= shifted.mean <= shifted.high
    assert shifted.mean == pytest.approx(
        frechet_distance(*feature_statistics(base + 0.5), *feature_statistics(reference))
        / frechet_distance(*feature_statistics(base), *feature_statistics(reference))
    )


def test_a_point_measured_without_features_is_named(tmp_path):
    point = point_dir(tmp_path, SAMPLE_POINT, {"steps": 2}, {})
    point.mkdir(parents=True)
    with pytest.raises(GenlabError, match="without its image features: delete the folder"):
        sweep_features([{"steps": 2}], {}, tmp_path)
