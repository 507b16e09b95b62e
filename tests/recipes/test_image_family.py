"""The image-family recipe and its CLI: every family trains a few steps on shapes through one
interface and samples the right shape and range; a token model's run carries its tokenizer;
runs resume exactly; captions are dropped as a function of (seed, step); bad input is one line."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image

import genlab
from genlab.cli import main
from genlab.core.checkpoint import save_model_folder
from genlab.core.errors import GenlabError
from genlab.core.io import load_tensors
from genlab.core.train_config import TrainConfig
from genlab.metrics.features import KIND as FEATURES_KIND
from genlab.metrics.features import FeatureNet, FeatureNetConfig
from genlab.recipes.diffusion import DataSpec, ImageTrainConfig
from genlab.recipes.image_family import CaptionedSource, train_family
from genlab.recipes.image_family_eval import is_family_run, open_family_run
from genlab.recipes.image_settings import FamilySettings

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPTS = ["a small red circle at the center", "a large blue square on the left"]


def tiny(out: Path, method: str, max_steps: int = 4, **family) -> ImageTrainConfig:
    settings = {"width": 8, "depth": 2, "num_codes": 32, "palette_colors": 8, "palette_grid": 8}
    settings |= {"net": {"cond_dim": 8}} if method in ("vae", "flow", "gan") else {}
    return ImageTrainConfig(
        out=str(out),
        model=method,
        data=DataSpec(data="shapes", size=16, n_images=64),
        family=FamilySettings(**{**settings, **family}),
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
def vq_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vq") / "run"
    train_family(tiny(out, "vq", max_steps=6, downsample=2))
    return out


@pytest.mark.parametrize("method", ["vae", "flow", "gan", "igpt", "maskgit"])
def test_each_family_trains_and_samples_through_one_interface(method, tmp_path):
    out = tmp_path / method
    metrics = train_family(tiny(out, method))
    assert metrics["step"] == 4 and metrics["params"] > 0
    assert is_family_run(out)
    assert genlab.load(out).kind == method  # every folder opens through the registry
    assert sorted(p.name for p in (out / "samples").glob("*.png")) == [
        "step_000002.png",
        "step_000004.png",
    ]
    fr = open_family_run(out)
    images = fr.generate(PROMPTS * 2, seed=3)
    assert images.shape == (4, 3, 16, 16)
    assert images.min() >= -1 and images.max() <= 1
    assert torch.equal(images, fr.generate(PROMPTS * 2, seed=3))  # the seed decides
    assert not torch.equal(images, fr.generate(PROMPTS * 2, seed=4))
    held, captions = torch.rand(3, 3, 16, 16).mul(255).round().div(127.5).sub(1), PROMPTS[:1] * 3
    bpd = fr.bits_per_dim(held, captions)
    if method == "gan" or method == "maskgit":
        assert bpd is None  # no likelihood: a GAN has none, MaskGIT's is not tractable
    else:
        assert bpd is not None and math.isfinite(bpd) and bpd > 0


def test_token_run_carries_its_vq_tokenizer_and_resumes_exactly(vq_run, tmp_path):
    copy = tmp_path / "vq-copy"
    shutil.copytree(vq_run, copy)
    cfg = tiny(tmp_path / "maskgit", "maskgit", tokenizer=str(copy))
    train_family(cfg, until=2)
    train_family(cfg, resume=True)
    straight = replace(cfg, out=str(tmp_path / "straight"))
    train_family(straight)
    a = load_tensors(tmp_path / "maskgit" / "model.safetensors")
    b = load_tensors(tmp_path / "straight" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    shutil.rmtree(copy)  # the run samples without the VQ run it was trained over
    fr = open_family_run(tmp_path / "maskgit")
    assert fr.tokens is not None and fr.tokens.grid == (8, 8)
    assert fr.generate(PROMPTS, seed=0, steps=2).shape == (2, 3, 16, 16)
    grid = tmp_path / "random-order.png"  # --temperature inf: decided in a random order
    argv = ["image", "sample", str(tmp_path / "maskgit"), "--steps", "2", "--n", "1"]
    main([*argv, "--temperature", "inf", "--out", str(grid)])
    assert Image.open(grid).size == (4 * (18 + 2), 4 * (18 + 2))


def test_gan_resumes_exactly_through_the_recipe(tmp_path):
    cfg = tiny(tmp_path / "a", "gan")
    train_family(cfg, until=2)
    train_family(cfg, resume=True)
    train_family(replace(cfg, out=str(tmp_path / "b")))
    for name in ("model.safetensors", "optimizer.safetensors", "ema.safetensors"):
        a, b = load_tensors(tmp_path / "a" / name), load_tensors(tmp_path / "b" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_captions_are_dropped_as_a_function_of_seed_and_step():
    images = torch.zeros(1000, 1, 4, 4, dtype=torch.uint8)
    captions = torch.arange(1, 1001).unsqueeze(1).repeat(1, 3)
    source = CaptionedSource(images, captions, cond_drop=0.25, seed=7)
    _, whole = source.get_batch(5, 0, 400, 400)
    dropped = (whole == 0).all(1)
    assert 0.18 < dropped.float().mean() < 0.32
    assert (whole[~dropped] != 0).all()  # a kept caption is kept whole
    halves = torch.cat([source.get_batch(5, 0, 200, 400)[1], source.get_batch(5, 200, 400, 400)[1]])
    assert torch.equal(halves, whole)  # however the rows are split over processes
    x, _ = source.get_batch(5, 0, 4, 400)
    assert x.dtype == torch.float32 and x.min() == -1  # uint8 pixels arrive in [-1, 1]


def test_cli_trains_samples_and_refuses_bad_input(vq_run, tmp_path, capsys):
    out = tmp_path / "flow"
    args = ["image", "train", "--method", "flow", "--out", str(out), "--size", "16"]
    args += ["--n-images", "64", "--max-steps", "2", "--batch-size", "8", "--width", "8"]
    args += ["--depth", "2", "--no-progress", "--no-tensorboard", "--no-plots"]
    main(args)
    grid = tmp_path / "grid.png"
    main(["image", "sample", str(out), "--n", "2", "--out", str(grid)])
    assert Image.open(grid).size == (4 * (2 * 18 + 2), 4 * (18 + 2))  # 2 padded images, 4x
    assert capsys.readouterr().out.startswith("trained")

    for argv, message in (
        (["image", "sample", str(out), "--prompt", "a purple zebra"], "never saw (zebra)"),
        (["image", "sample", str(vq_run)], "a tokenizer"),
        ([*args[:3], "bogus", *args[4:6]], "unknown image method 'bogus'"),
    ):
        with pytest.raises(SystemExit) as e:
            main([*argv, "--out", str(grid)] if argv[1] == "sample" else argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    with pytest.raises(GenlabError, match="--downsample must be a power of 2"):
        train_family(tiny(tmp_path / "vq3", "vq", downsample=3))


def test_image_families_experiment_writes_its_tables_and_reuses_its_runs(tmp_path, capsys):
    torch.manual_seed(0)
    config = FeatureNetConfig(width=8, feature_dim=8, image_size=16)
    features = tmp_path / "features"
    save_model_folder(features, FeatureNet(config), FEATURES_KIND, config.to_dict())
    argv = ["experiment", "image-families", "--size", "16", "--minutes", "0.0001"]
    argv += ["--tokenizer-minutes", "0.0001", "--n", "100", "--n-bpd", "4", "--width", "8"]
    argv += ["--token-width", "4", "--latency-images", "2", "--maskgit-steps", "1,2"]
    argv += ["--diffusion-steps", "2", "--features", str(features), "--device", "cpu"]
    argv += ["--runs-dir", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "docs")]
    main(argv)
    result = json.loads((tmp_path / "docs" / "image_families.json").read_text())
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == ["diffusion", "vae", "flow", "gan", "igpt", "maskgit"]
    for method, r in rows.items():
        assert r["steps"] == 11  # the budget's ten probe steps and the first: all that fit
        assert r["fid_low"] <= r["fid"] <= r["fid_high"] and 0 <= r["adherence"] <= 1
        assert r["seconds_per_image"] > 0 and r["seconds_batch1"] > 0
        assert (r["bits_per_dim"] is None) == (method in ("diffusion", "gan", "maskgit"))
    steps = result["maskgit_steps"]
    assert [(r["order"], r["steps"]) for r in steps] == [
        ("confidence", 1),
        ("confidence", 2),
        ("random", 1),
        ("random", 2),
    ]
    igpt = rows["igpt"]
    assert steps[0]["speedup_batch1"] == pytest.approx(
        igpt["seconds_batch1"] / steps[0]["seconds_batch1"]
    )
    page = (tmp_path / "docs" / "image_families.md").read_text()
    assert "genlab experiment image-families" in page and "| real vs real |" in page
    assert page.count("| maskgit |") == 1 and "MaskGIT's steps against image GPT" in page
    assert "| random | 2 |" in page and "| confidence | 1 |" in page
    for png in ("image_families.png", "image_families_samples.png"):
        assert (tmp_path / "docs" / png).read_bytes()[:4] == b"\x89PNG"

    before = {p: p.stat().st_mtime for p in (tmp_path / "runs").glob("*/model.safetensors")}
    main(argv)  # trained runs are reused: only the measurements are made again
    after = {p: p.stat().st_mtime for p in (tmp_path / "runs").glob("*/model.safetensors")}
    assert before == after and len(before) == 7
