"""The diffusion upsampler: its config, Imagen's noise conditioning augmentation (in training
batches only, unless sampling asks), what its UNet reads, a few steps of training, sampling,
and its run folder."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from genlab.core.errors import GenlabError
from genlab.core.registry import load, save
from genlab.data.captions import CaptionTokenizer
from genlab.data.images import to_uint8
from genlab.methods.diffusion.loss import DiffusionLoss
from genlab.methods.diffusion.schedule import NoiseSchedule
from genlab.methods.diffusion.text_conditioned import CAPTION_TOKENIZER_FILE
from genlab.methods.diffusion.upsampler import (
    KIND,
    Upsampler,
    UpsamplerBatchSource,
    UpsamplerConfig,
    aug_alpha_bar,
    downsample,
    noise_augment,
    upsample,
)
from genlab.nets.text_encoder import TextEncoderConfig
from genlab.nets.unet import UNetConfig

pytestmark = pytest.mark.usefixtures("one_thread")
CAPTIONS = ["a red square on the left", "a blue circle on the right"]


def tokenizer() -> CaptionTokenizer:
    return CaptionTokenizer.from_captions(CAPTIONS)


def make_config(**overrides) -> UpsamplerConfig:
    tok = tokenizer()
    unet = UNetConfig.preset("tiny", base_channels=16, num_heads=2, context_dim=16, cond_channels=3)
    text = TextEncoderConfig(tok.vocab_size, tok.max_length, dim=16, num_layers=1)
    settings = {"image_size": 16, "low_res": 8, "prediction": "v", "aug_max": 0.5}
    return UpsamplerConfig(unet=unet, text=text, **{**settings, **overrides})


def make_model(seed: int = 0, **overrides) -> Upsampler:
    torch.manual_seed(seed)
    return Upsampler(make_config(**overrides))


@torch.no_grad()
def speaking(model: Upsampler) -> Upsampler:
    """``model`` with its zero-initialised layers (the UNet's output, the level embedding's
    last layer) made random, so every input shows in the output, as after some training."""
    for p in model.parameters():
        if not p.any():
            p.normal_(0.0, 0.05)
    return model


def images(n: int = 8, seed: int = 0) -> torch.Tensor:
    """Blocky images: a random 4x4 pattern enlarged to 16x16, uint8."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    return to_uint8(F.interpolate(small, size=(16, 16), mode="nearest"))


def source(n: int = 8, seed: int = 0, **overrides) -> UpsamplerBatchSource:
    tokens, mask = tokenizer().encode([CAPTIONS[i % 2] for i in range(n)])
    return UpsamplerBatchSource(images(n), tokens, mask, make_config(**overrides), 0.1, seed)


def test_config_round_trips_and_refuses_what_cannot_upsample():
    cfg = make_config(resize="nearest", aug_max=0.3)
    back = UpsamplerConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.unet.cond_channels == 3 and back.low_res == 8
    with pytest.raises(GenlabError, match="cond_channels=3"):
        UpsamplerConfig(unet=UNetConfig(context_dim=16), text=cfg.text, image_size=16, low_res=8)
    with pytest.raises(GenlabError, match="smaller low-res image"):
        make_config(low_res=16)
    with pytest.raises(GenlabError, match="resize mode"):
        make_config(resize="bicubic")
    with pytest.raises(GenlabError, match="aug_max"):
        make_config(aug_max=1.5)


def test_aug_level_is_a_fraction_of_the_forward_process():
    schedule = NoiseSchedule("linear", 1000)
    T = 1000
    levels = torch.tensor([0.0, 1 / T, 100 / T, 1.0])
    abar = aug_alpha_bar(schedule, levels)
    expected = torch.stack([torch.tensor(1.0), *schedule.alphas_cumprod[[0, 99, 999]]])
    torch.testing.assert_close(abar, expected.float())
    fine = aug_alpha_bar(schedule, torch.linspace(0, 1, 50))
    assert (fine[1:] < fine[:-1]).all()  # more noise at every higher level
    x, noise = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    assert torch.equal(noise_augment(x, torch.zeros(2), noise, schedule), x)
    a = abar[2]
    torch.testing.assert_close(
        noise_augment(x, torch.full((2,), 0.1), noise, schedule),
        a.sqrt() * x + (1 - a).sqrt() * noise,
    )


def test_training_batches_corrupt_the_downsampled_image_at_random_levels():
    src = source()
    batch = src.get_batch(3, 0, 8, 8)
    assert batch["low_res"].shape == (8, 3, 8, 8) and batch["sample"].shape == (8, 3, 16, 16)
    level = batch["aug_level"]
    assert level.shape == (8,) and (level >= 0).all() and (level <= 0.5).all()
    assert level.std() > 0.05  # a level per row
    clean = downsample(batch["sample"], 8)
    # the 2x2 average of each block (the perfect conditioning) ...
    torch.testing.assert_close(clean, F.avg_pool2d(batch["sample"], 2))
    # ... corrupted: more where the level is higher
    err = (batch["low_res"] - clean).pow(2).mean(dim=(1, 2, 3))
    hi, lo = level.argmax(), level.argmin()
    assert err[hi] > err[lo]
    # a function of (seed, step), the same rows whatever the slice
    again = src.get_batch(3, 2, 5, 8)
    for key in ("low_res", "aug_level", "sample", "noise", "t"):
        torch.testing.assert_close(again[key], batch[key][2:5])
    assert not torch.equal(src.get_batch(4, 0, 8, 8)["aug_level"], level)
    # with aug_max 0 the condition is the exact downsampled image
    perfect = source(aug_max=0.0).get_batch(3, 0, 8, 8)
    torch.testing.assert_close(perfect["low_res"], downsample(perfect["sample"], 8))


def _conv_in_inputs(model: Upsampler) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    model.unet.conv_in.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    return seen


@torch.no_grad()
def test_the_unet_reads_noisy_image_then_upsampled_low_res_then_coordinates():
    model = make_model().eval()
    seen = _conv_in_inputs(model)
    batch = source(aug_max=0.0).get_batch(0, 0, 2, 2)
    x = torch.randn(2, 3, 16, 16)
    tokens, mask = batch["tokens"], batch["token_mask"]
    model(x, 10, tokens, mask, batch["low_res"], 0.0)
    got = seen[-1]
    assert got.shape == (2, 3 + 3 + 2, 16, 16)
    assert torch.equal(got[:, :3], x)
    up = F.interpolate(batch["low_res"], size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(got[:, 3:6], up)
    assert got[0, 6, 0, 0] == -1 and got[0, 6, 0, -1] == 1  # the x coordinate


@torch.no_grad()
def test_the_model_never_corrupts_its_input_itself():
    """Noise augmentation lives in the training batches (and in sampling when asked): the
    model, even in train mode, is a deterministic function of what it is given."""
    model = speaking(make_model()).train()
    batch = source().get_batch(0, 0, 4, 4)
    args = (batch["sample"], batch["t"], batch["tokens"], batch["token_mask"])
    a = model(*args, batch["low_res"], batch["aug_level"])
    b = model(*args, batch["low_res"], batch["aug_level"])
    assert a.abs().mean() > 0 and torch.equal(a, b)


@torch.no_grad()
def test_sampling_corrupts_the_low_res_image_only_when_asked():
    model = make_model()
    seen = _conv_in_inputs(model)
    low = downsample(torch.rand(2, 3, 16, 16) * 2 - 1, 8)
    scheduler = model.scheduler("ddim")
    scheduler.set_timesteps(2)
    up = F.interpolate(low, size=(16, 16), mode="bilinear", align_corners=False)
    upsample(model, tokenizer(), low, CAPTIONS, scheduler, seed=0)
    torch.testing.assert_close(seen[-1][:, 3:6], up)  # as given
    upsample(model, tokenizer(), low, CAPTIONS, scheduler, seed=0, aug_level=0.3)
    assert (seen[-1][:, 3:6] - up).abs().mean() > 0.1
    with pytest.raises(GenlabError, match="outside the levels"):
        upsample(model, tokenizer(), low, CAPTIONS, scheduler, aug_level=0.6)
    with pytest.raises(GenlabError, match="takes \\(B, 3, 8, 8\\)"):
        upsample(model, tokenizer(), up, CAPTIONS, scheduler)


def test_a_few_steps_of_training_lower_the_loss_by_reading_the_low_res_image():
    """20 steps on blocky images (their 8x8 copy holds all their detail): the held-out loss
    falls, and is then lower with each image's own low-res copy than with another's."""
    model = make_model(prediction="x0")
    src = source(n=16, prediction="x0")
    loss_fn = DiffusionLoss(model.noise_schedule())
    probe = src.get_batch(1000, 0, 16, 16)  # the same noise, steps and levels before and after
    other = {**probe, "low_res": probe["low_res"].roll(1, dims=0)}
    with torch.no_grad():
        before = loss_fn(model, probe)[0].item()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for step in range(20):
        loss, _ = loss_fn(model, src.get_batch(step, 0, 8, 8))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after, mismatched = (loss_fn(model, b)[0].item() for b in (probe, other))
    assert after < 0.75 * before, (before, after)
    assert after < 0.75 * mismatched, (after, mismatched)


@torch.no_grad()
def test_samples_have_the_high_res_shape_and_range_and_follow_the_seed():
    model = speaking(make_model())
    low = downsample(torch.rand(3, 3, 16, 16) * 2 - 1, 8)
    captions = [CAPTIONS[0], CAPTIONS[1], CAPTIONS[0]]
    scheduler = model.scheduler("ddim")
    scheduler.set_timesteps(3)
    kw = {"guidance": 2.0, "aug_level": 0.1, "batch_size": 2}
    a = upsample(model, tokenizer(), low, captions, scheduler, seed=1, **kw)
    b = upsample(model, tokenizer(), low, captions, scheduler, seed=1, **kw)
    c = upsample(model, tokenizer(), low, captions, scheduler, seed=2, **kw)
    assert a.shape == (3, 3, 16, 16) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(GenlabError, match="2 captions"):
        upsample(model, tokenizer(), low, CAPTIONS, scheduler)


def test_run_folder_round_trips(tmp_path):
    model = speaking(make_model()).eval()
    tok = tokenizer()
    save(tmp_path, model, KIND, model.config, {CAPTION_TOKENIZER_FILE: tok.to_json().encode()})
    loaded = load(tmp_path, KIND)
    assert isinstance(loaded.model, Upsampler) and loaded.config == model.config
    batch = source().get_batch(0, 0, 2, 2)
    args = (batch["sample"], batch["t"], batch["tokens"], batch["token_mask"], batch["low_res"])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(*args, 0.2), model(*args, 0.2))
        # the level reaches the output through its embedding
        assert not torch.allclose(model(*args, 0.0), model(*args, 0.4))
