"""The cascade recipe and its CLI: an upsampler run trains with the image recipe's conventions
(EMA, grids, exact resume), `genlab image train --method upsampler` and `genlab image sample
UPSAMPLER --base BASE` run end to end, and misuse is a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from genlab.cli import app, main
from genlab.core.checkpoint import read_model_config
from genlab.core.ema import EMA_FILE
from genlab.core.io import load_tensors
from genlab.core.train_config import TrainConfig
from genlab.methods.diffusion.upsampler import Upsampler, load_upsampler
from genlab.recipes.cascade import UpsamplerSettings, sample_cascade, train_upsampler
from genlab.recipes.diffusion import DataSpec, ImageTrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPT = "a large red circle on the left"
TINY = [
    "--preset", "tiny", "--base-channels", "16", "--text-dim", "16", "--text-layers", "1",
    "--n-images", "64", "--grid-sampler-steps", "2", "--max-steps", "2", "--batch-size", "8",
    "--warmup-steps", "1", "--sample-every", "2", "--eval-batches", "1", "--checkpoint-every",
    "2", "--device", "cpu", "--no-progress", "--no-tensorboard", "--no-plots",
    'unet_overrides={"num_heads": 2}',
]  # fmt: skip


def tiny(out: Path, max_steps: int = 4) -> ImageTrainConfig:
    return ImageTrainConfig(
        out=str(out),
        model="upsampler",
        data=DataSpec(data="shapes", size=32, n_images=64),
        unet_overrides={"base_channels": 16, "num_heads": 2},
        text_dim=16,
        text_layers=1,
        grid_sampler_steps=2,
        train=TrainConfig(
            max_steps=max_steps,
            batch_size=8,
            lr=2e-3,
            warmup_steps=1,
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
    out = tmp_path_factory.mktemp("upsampler") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the tests, so float sums match the resumed run's exactly
    train_upsampler(tiny(out), UpsamplerSettings(aug_max=0.3))
    torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> tuple[Path, Path]:
    """A base run at 16x16 and an upsampler 16 -> 32, both trained through the CLI."""
    root = tmp_path_factory.mktemp("cascade")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base, up = root / "base", root / "up"
        for args in (
            ["--method", "diffusion", "--size", "16", "--out", str(base)],
            ["--method", "upsampler", "--size", "32", "--low-res", "16", "--out", str(up)],
        ):
            result = CliRunner().invoke(app, ["image", "train", *args, *TINY])
            assert result.exit_code == 0, result.output
            assert "trained" in result.output
    finally:
        torch.set_num_threads(threads)
    return base, up


def test_run_folder_holds_the_upsampler_average_grids_and_settings(run):
    for name in ("config.json", "model.safetensors", EMA_FILE, "caption_tokenizer.json"):
        assert (run / name).is_file(), name
    assert read_model_config(run)["kind"] == "upsampler"
    recipe = json.loads((run / "recipe.json").read_text())
    assert recipe["model"] == "upsampler"
    assert recipe["upsampler"] == {"low_res": 16, "aug_max": 0.3}  # half of --size by default
    model, tok = load_upsampler(run)
    assert isinstance(model, Upsampler) and model.config.low_res == 16
    assert model.config.image_size == 32 and model.config.aug_max == 0.3
    raw, _ = load_upsampler(run, use_ema=False)
    assert not torch.equal(model.unet.conv_in.weight, raw.unet.conv_in.weight)
    grids = sorted(p.name for p in (run / "samples").glob("step_*.png"))
    assert grids == ["step_000002.png", "step_000004.png"]
    with Image.open(run / "samples" / "step_000004.png") as grid:
        # 8 held-out images; rows: low-res input, upsampled, original (32 px + 2 padding)
        assert grid.size == (4 * (8 * 34 + 2), 4 * (3 * 34 + 2))
    assert len((run / "samples" / "prompts.txt").read_text().splitlines()) == 8


def test_resume_continues_weights_and_average_exactly(run, tmp_path):
    cfg = tiny(tmp_path / "split")
    train_upsampler(cfg, UpsamplerSettings(aug_max=0.3), until=2)
    train_upsampler(cfg, resume=True)  # the run's own settings, not the defaults
    for name in ("model.safetensors", EMA_FILE):
        whole, split = load_tensors(run / name), load_tensors(tmp_path / "split" / name)
        for key, value in whole.items():
            assert torch.equal(split[key], value), (name, key)


def test_upsampling_held_out_images_is_seeded(run, tmp_path):
    a, caps = sample_cascade(run, tmp_path / "a.png", n=3, steps=2, seed=4)
    b, _ = sample_cascade(run, tmp_path / "b.png", n=3, steps=2, seed=4)
    assert a.shape == (3, 3, 32, 32) and len(caps) == 3 and torch.equal(a, b)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "a_low.png").is_file()


def test_cli_samples_the_cascade_from_prompts(cli_runs, tmp_path):
    base, up = cli_runs
    out = tmp_path / "grid.png"
    args = ["image", "sample", str(up), "--base", str(base), "--prompt", PROMPT, "--n", "3"]
    result = CliRunner().invoke(
        app, [*args, "--steps", "2", "--aug-level", "0.2", "--device", "cpu", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "wrote 3 samples" in result.output
    with Image.open(out) as grid, Image.open(tmp_path / "grid_low.png") as low:
        assert grid.format == "PNG" and grid.size == (4 * (3 * 34 + 2), 4 * 36)
        assert low.size == grid.size  # the base's 16 px samples, enlarged to 32


def test_cli_upsamples_held_out_images_without_a_base(cli_runs, tmp_path):
    _, up = cli_runs
    out = tmp_path / "g.png"
    args = ["image", "sample", str(up), "--n", "2", "--steps", "2", "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 2 samples" in result.output and out.is_file()


def test_cli_misuse_is_a_one_line_error(cli_runs, tmp_path, capsys):
    base, up = cli_runs
    cases = [
        (["image", "train", "--out", str(tmp_path / "r"), "--low-res", "8"], "--method upsampler"),
        (["image", "sample", str(base), "--base", str(base)], "is not one"),
        (["image", "sample", str(up), "--prompt", PROMPT], "--base BASE_RUN"),
        (["image", "sample", str(up), "--base", str(up)], "diffusion or adapter model"),
        (["image", "sample", str(up), "--aug-level", "0.9"], "outside the levels"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as e:
            main([*argv, "--out", str(tmp_path / "x.png")] if "sample" in argv else argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err, (argv, err)
