"""The text-to-image experiments on a tiny budget: pixel-vs-latent trains its three arms (the
cascade's two stages, the latent arm's autoencoder), text-encoder-size its encoder x width grid
over the toy ladder's GPTs; each writes its page, JSON and figures, measures seen and unseen
compositions against the same-caption floor, and a rerun re-measures nothing."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.core.train_config import TrainConfig
from genlab.metrics.features import train_feature_net
from genlab.recipes import diffusion_eval
from genlab.recipes.clip import CLIPTrainConfig, train_clip
from genlab.recipes.diffusion_eval import EvalGroup
from genlab.recipes.experiments import t2i_arms
from genlab.recipes.experiments.diffusion_steps import StepsConfig
from genlab.recipes.experiments.pixel_vs_latent import PixelVsLatentConfig
from genlab.recipes.experiments.pixel_vs_latent import run_experiment as pixel_vs_latent
from genlab.recipes.experiments.t2i_arms import DONE_FILE, adherence_interval
from genlab.recipes.experiments.text_encoder_size import (
    TextEncoderSizeConfig,
    effects,
    encoder_names,
)
from genlab.recipes.experiments.text_encoder_size import run_experiment as text_encoder_size

pytestmark = pytest.mark.usefixtures("one_thread")


def quick(steps: int) -> TrainConfig:
    return TrainConfig(
        max_steps=steps, batch_size=16, warmup_steps=1, eval_every=steps, eval_batches=1,
        checkpoint_every=steps, device="cpu", progress=False, tensorboard=False, plots=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def instruments(tmp_path_factory) -> tuple[Path, Path]:
    """A feature net (8-d features) and a CLIP trained for a few steps at 32 pixels."""
    root = tmp_path_factory.mktemp("instruments")
    train_feature_net(root / "features", "shapes", 32, 256, quick(5), width=8, feature_dim=8)
    clip = CLIPTrainConfig(
        out=str(root / "clip"), size=32, n_images=128, eval_images=64, width=8, text_dim=16,
        text_layers=1, embed_dim=8, train=quick(3),
    )  # fmt: skip
    train_clip(clip)
    return root / "features", root / "clip"


@pytest.fixture
def few_kid_subsets(monkeypatch):
    monkeypatch.setattr(diffusion_eval, "KID_SUBSETS", 5)


def tiny(cfg_type, tmp_path: Path, instruments: tuple[Path, Path], **changes):
    features, clip = instruments
    return cfg_type(
        minutes=10.0, max_steps=2, vae_minutes=10.0, size=32, n_images=256, n=100, steps=2, batch_size=50,
        features=str(features), clip=str(clip), runs_dir=str(tmp_path / "runs"),
        out_dir=str(tmp_path / "page"), **changes,
    )  # fmt: skip


def test_pixel_vs_latent_trains_every_arm_and_writes_its_page(
    tmp_path, instruments, few_kid_subsets, monkeypatch
):
    cfg = tiny(PixelVsLatentConfig, tmp_path, instruments, low_res=16)
    result = pixel_vs_latent(cfg, command="genlab experiment pixel-vs-latent")
    assert [r["arm"] for r in result["rows"]] == ["latent", "pixel", "cascade"]
    runs = Path(cfg.runs_dir)
    for done in ("autoencoder", "latent", "pixel", "cascade/base", "cascade/upsampler"):
        assert (runs / done / DONE_FILE).is_file(), done
    for row in result["rows"]:
        for group in ("seen", "unseen"):
            measured = row[group]
            assert measured["n"] == 100 and measured["scored"] == 100
            assert 0 <= measured["adherence_low"] <= measured["adherence"]
            assert measured["adherence"] <= measured["adherence_high"] <= 1
            assert 0 <= measured["clip_score"] <= 100 and measured["seconds_per_image"] > 0
            assert measured["fid_floor"] == result["floor"][group]["fid"]
    cascade = result["rows"][2]
    assert cascade["steps"] == 4  # two stages of two steps each
    page = (Path(cfg.out_dir) / "pixel_vs_latent.md").read_text()
    assert "| latent |" in page and "real images (floor)" in page
    assert "(cascade: 5 for the 16x16 base, 5 for the upsampler)" in page
    assert "genlab experiment pixel-vs-latent" in page
    for name in ("pixel_vs_latent.png", "pixel_vs_latent_samples.png", "pixel_vs_latent.json"):
        assert (Path(cfg.out_dir) / name).is_file()
    saved = json.loads((Path(cfg.out_dir) / "pixel_vs_latent.json").read_text())
    assert saved["autoencoder"]["steps"] == 2

    def no_measuring(*args, **kwargs):
        raise AssertionError("a rerun with the same settings must reuse the measured rows")

    monkeypatch.setattr(t2i_arms, "measure_group", no_measuring)
    again = pixel_vs_latent(cfg)
    assert again["rows"] == result["rows"]
    samples = (Path(cfg.out_dir) / "pixel_vs_latent_samples.png").read_bytes()
    subset = pixel_vs_latent(replace(cfg, arms=("cascade",)))  # the others stay on the page
    assert subset["rows"] == result["rows"]
    assert (Path(cfg.out_dir) / "pixel_vs_latent_samples.png").read_bytes() == samples
    page = (Path(cfg.out_dir) / "pixel_vs_latent.md").read_text()
    assert "latent, pixel: measured by an earlier run" in page and "| cascade |" in page
    assert "autoencoder trained" in page  # the latent arm's autoencoder is kept with it
    assert "another feature net" not in page

    saved = json.loads((Path(cfg.out_dir) / "pixel_vs_latent.json").read_text())
    saved["rows"][1]["unseen"]["fid_floor"] = 123.0  # as if measured with other instruments
    (Path(cfg.out_dir) / "pixel_vs_latent.json").write_text(json.dumps(saved))
    pixel_vs_latent(replace(cfg, arms=("cascade",)))
    page = (Path(cfg.out_dir) / "pixel_vs_latent.md").read_text()
    assert "pixel: measured with another feature net" in page and "unseen FID 123" in page
    assert "latent: measured with another" not in page
    saved = json.loads((Path(cfg.out_dir) / "pixel_vs_latent.json").read_text())
    del saved["settings"]["preset"]  # a page written before the setting existed: its default
    (Path(cfg.out_dir) / "pixel_vs_latent.json").write_text(json.dumps(saved))
    kept = pixel_vs_latent(replace(cfg, arms=("cascade",)))
    assert [r["arm"] for r in kept["rows"]] == ["latent", "pixel", "cascade"]

    elsewhere = replace(cfg, arms=("latent", "pixel"), out_dir=str(tmp_path / "other"))
    pixel_vs_latent(elsewhere)  # no earlier page there: the page says which arms it lacks
    page = (Path(elsewhere.out_dir) / "pixel_vs_latent.md").read_text()
    assert "arms not run: cascade" in page and "| cascade |" not in page
    assert "earlier run" not in page
    monkeypatch.undo()
    other = replace(elsewhere, arms=("latent",), guidance=2.0)  # other settings: nothing kept
    assert [r["arm"] for r in pixel_vs_latent(other)["rows"]] == ["latent"]


def test_text_encoder_size_grid_over_the_ladder(tmp_path, instruments, ladder, few_kid_subsets):
    cfg = tiny(
        TextEncoderSizeConfig, tmp_path, instruments, encoders=("xs", "s"), widths=(8,),
        ladder=ladder,
    )  # fmt: skip
    names = encoder_names(cfg)
    assert set(names) == {"xs", "s"} and all(v.startswith("gpt:") for v in names.values())
    result = text_encoder_size(cfg)
    grid = [(r["encoder"], r["width"]) for r in result["rows"]]
    assert grid == [("xs", 8), ("s", 8)]
    xs, s = result["rows"]
    assert xs["params"] < s["params"]  # the UNet's context projections read a wider encoder
    assert set(result["floor"]) == {"unseen"} and "seen" not in xs  # unseen compositions only
    page = (Path(cfg.out_dir) / "text_encoder_size.md").read_text()
    assert "Imagen's claim is" in page


def test_effects_average_each_factor_over_the_other():
    cfg = replace(TextEncoderSizeConfig(), encoders=("a", "b"), widths=(8, 16))
    adherence = {("a", 8): 0.5, ("a", 16): 0.6, ("b", 8): 0.8, ("b", 16): 0.7}
    rows = [
        {"encoder": e, "width": w, "unseen": {"adherence": v}} for (e, w), v in adherence.items()
    ]
    gain = effects(rows, cfg)
    assert gain["encoder"] == pytest.approx(((0.8 - 0.5) + (0.7 - 0.6)) / 2)
    assert gain["unet"] == pytest.approx(((0.6 - 0.5) + (0.7 - 0.8)) / 2)


def test_adherence_interval_brackets_the_share():
    interval = adherence_interval({"adherence": 0.5, "scored": 400.0}, seed=0)
    assert 0.44 < interval["adherence_low"] < 0.5 < interval["adherence_high"] < 0.56
    assert adherence_interval({"adherence": 1.0, "scored": 50.0}, seed=0) == {
        "adherence_low": 1.0,
        "adherence_high": 1.0,
    }


def test_an_interrupted_measurement_keeps_the_groups_it_finished(tmp_path, monkeypatch):
    """The first group's row survives a failure in the second; the rerun draws only the second,
    and a new key measures both again."""
    drawn: list[str] = []

    def draw(captions: list[str], seed: int) -> torch.Tensor:
        drawn.append(captions[0])
        if captions[0] == "unseen" and drawn.count("unseen") == 1:
            raise KeyboardInterrupt
        return torch.zeros(len(captions), 3, 4, 4)

    def fake_group(net, images, group: EvalGroup) -> dict[str, float]:
        return {"adherence": 0.5, "scored": float(len(images)), "fid": len(group.name)}

    monkeypatch.setattr(t2i_arms, "measure_group", fake_group)
    monkeypatch.setattr(t2i_arms, "clip_score", lambda clip, images, captions: 50.0)
    tools = SimpleNamespace(net=None, clip=None)
    groups = {
        name: EvalGroup(name, "test", [name] * 4, torch.zeros(4, 3, 4, 4), {})
        for name in ("seen", "unseen")
    }
    cfg = PixelVsLatentConfig(seed=0)
    with pytest.raises(KeyboardInterrupt):
        t2i_arms.measure_arm(tmp_path, draw, tools, groups, cfg, key="k")
    row = t2i_arms.measure_arm(tmp_path, draw, tools, groups, cfg, key="k")
    assert drawn == ["seen", "unseen", "unseen"]
    assert list(row) == ["seen", "unseen"] and row["unseen"]["fid"] == 6
    assert t2i_arms.measure_arm(tmp_path, draw, tools, {"seen": groups["seen"]}, cfg, "k") == {
        "seen": row["seen"]
    }
    t2i_arms.measure_arm(tmp_path, draw, tools, groups, cfg, key="other")
    assert drawn[3:] == ["seen", "unseen"]


@pytest.mark.parametrize("config", [PixelVsLatentConfig, StepsConfig])
def test_the_gpu_preset_measures_at_least_ten_thousand_images_a_set(config):
    assert config().n == 2000 and config(n=500).n == 500
    assert config(preset="gpu").n == 10_000 and config(preset="gpu", n=500).n == 10_000
    assert config(preset="gpu", n=20_000).n == 20_000
    with pytest.raises(GenlabError, match="preset"):
        config(preset="tpu").validate()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"arms": ("latent", "gan")}, "arms must be"),
        ({"low_res": 32}, "low_res"),
        ({"n": 10}, "n"),
    ],
)
def test_bad_settings_are_refused(changes, message):
    with pytest.raises(GenlabError, match=message):
        replace(PixelVsLatentConfig(), **changes).validate()
    with pytest.raises(GenlabError, match="widths"):
        replace(TextEncoderSizeConfig(), widths=(12,)).validate()
