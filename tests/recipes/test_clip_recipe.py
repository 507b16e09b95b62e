"""Training genlab's CLIP into a run folder, its held-out figures, and the two metrics verbs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from genlab.cli import app, main
from genlab.core.errors import GenlabError
from genlab.core.train_config import TrainConfig
from genlab.data.images import Scene, ShapesDataset, export_images
from genlab.metrics.clip_score import clip_score, load_clip
from genlab.recipes.clip import (
    ACCURACY_FILE,
    CLIPTrainConfig,
    ScoreOptions,
    default_clip_dir,
    score_target,
    swapped,
    train_clip,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = [
    "--n-images",
    "128",
    "--eval-images",
    "64",
    "--width",
    "8",
    "--text-dim",
    "16",
    "--text-layers",
    "1",
    "--embed-dim",
    "8",
    "--max-steps",
    "3",
    "--batch-size",
    "32",
    "--warmup-steps",
    "1",
    "--eval-every",
    "3",
    "--eval-batches",
    "1",
    "--checkpoint-every",
    "3",
    "--device",
    "cpu",
    "--no-progress",
    "--no-tensorboard",
    "--no-plots",
]


def test_swapped_caption_exchanges_the_two_shapes():
    one, two = ShapesDataset(2, 32, 0).scenes[0], None
    for scene in ShapesDataset(20, 32, 0).scenes:
        if scene.relation is not None:
            two = scene
            break
    assert one.relation is None and swapped(one) is None
    assert two is not None
    a, b = two.shapes
    words = {"left of": "to the left of", "right of": "to the right of"}
    relation = words.get(two.relation, two.relation)
    assert swapped(two) == (
        f"a {b.size} {b.color} {b.kind} {relation} a {a.size} {a.color} {a.kind}"
    )
    assert swapped(two) == Scene((b, a), two.relation).caption != two.caption


def test_train_clip_writes_a_loadable_folder_and_its_figures(tmp_path):
    train = TrainConfig(
        max_steps=3,
        batch_size=32,
        warmup_steps=1,
        eval_every=3,
        eval_batches=1,
        checkpoint_every=3,
        device="cpu",
        progress=False,
        tensorboard=False,
        plots=False,
    )
    cfg = CLIPTrainConfig(
        out=str(tmp_path / "clip"),
        n_images=128,
        eval_images=64,
        width=8,
        text_dim=16,
        text_layers=1,
        embed_dim=8,
        train=train,
    )
    figures = train_clip(cfg)
    assert json.loads((tmp_path / "clip" / ACCURACY_FILE).read_text()) == pytest.approx(figures)
    for key in ("acc_i2t", "acc_t2i", "acc_i2t_one_shape", "acc_i2t_two_shapes", "acc_relation"):
        assert 0.0 <= figures[key] <= 1.0, key
    assert figures["n"] == 64 and figures["retrieval_batch"] == 64
    assert 0.0 <= figures["clip_score_shuffled"] <= 100.0
    model = load_clip(tmp_path / "clip")
    assert model.net.config.width == 8 and model.net.config.text.num_layers == 1
    scenes = ShapesDataset(4, 32, 301)  # the held-out seed: the figure is reproduced exactly
    score = clip_score(model, scenes.pixels, [s.caption for s in scenes.scenes])
    assert score == pytest.approx(
        clip_score(model, scenes.pixels, [s.caption for s in scenes.scenes])
    )
    with pytest.raises(GenlabError, match="--data must be one of shapes"):
        train_clip(CLIPTrainConfig(data="digits"))


def test_default_folder_follows_genlab_home(monkeypatch, tmp_path):
    monkeypatch.setenv("GENLAB_HOME", str(tmp_path))
    assert default_clip_dir("shapes", 32) == tmp_path / "clip" / "shapes-32"


def test_cli_trains_then_scores_a_folder_of_captioned_images(tmp_path, capsys):
    runner = CliRunner()
    out = tmp_path / "clip"
    result = runner.invoke(app, ["metrics", "train-clip", "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"CLIP in {out}; held-out top-1 within batches of 64: ")
    assert (out / ACCURACY_FILE).is_file() and (out / "model.safetensors").is_file()
    export_images(ShapesDataset(6, 32, 7), tmp_path / "images")
    result = runner.invoke(
        app,
        [
            "metrics",
            "clip-score",
            str(tmp_path / "images"),
            "--clip",
            str(out),
            "--device",
            "cpu",
            "--json",
            str(tmp_path / "score.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "score.json").read_text())
    direct = score_target(tmp_path / "images", load_clip(out), ScoreOptions(n=500))
    assert saved["clip_score"] == pytest.approx(direct["clip_score"]) and saved["n"] == 6
    assert result.output.startswith(
        f"CLIP score with the CLIP in {out}: {direct['clip_score']:.3f}"
    )
    with pytest.raises(SystemExit) as e:
        main(["metrics", "clip-score", str(tmp_path), "--clip", str(tmp_path / "x")])
    assert e.value.code == 2 and "train-clip --out" in capsys.readouterr().err


def test_score_options_refuse_a_single_caption(tmp_path):
    with pytest.raises(GenlabError, match="at least 2"):
        score_target(tmp_path, object(), ScoreOptions(n=1))  # type: ignore[arg-type]


def test_a_diffusion_run_is_sampled_for_held_out_captions_and_scored(tmp_path):
    from genlab.recipes.diffusion import DataSpec, ImageTrainConfig, train_diffusion

    train = TrainConfig(
        max_steps=2,
        batch_size=8,
        warmup_steps=1,
        eval_every=2,
        eval_batches=1,
        checkpoint_every=2,
        device="cpu",
        progress=False,
        tensorboard=False,
        plots=False,
    )
    run = tmp_path / "run"
    cfg = ImageTrainConfig(
        out=str(run),
        data=DataSpec(data="shapes", size=16, n_images=32),
        preset="tiny",
        unet_overrides={"base_channels": 16, "num_heads": 2},
        text_dim=16,
        text_layers=1,
        grid_sampler_steps=2,
        train=train,
    )
    train_diffusion(cfg)
    folder = tmp_path / "clip"
    main(["metrics", "train-clip", "--out", str(folder), *TINY])
    clip = load_clip(folder)
    result = score_target(run, clip, ScoreOptions(n=4, steps=2, batch_size=4))
    assert result["n"] == 4
    assert set(result) == {"clip_score", "clip_score_real", "clip_score_shuffled", "n"}
    again = score_target(run, clip, ScoreOptions(n=4, steps=2, batch_size=4))
    assert again == result  # the same seed samples the same images
