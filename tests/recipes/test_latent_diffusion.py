"""Latent diffusion: a UNet over a frozen VAE's latents. The latent space encodes to the scaled
posterior mean and decodes back; a run keeps the VAE run's weights untouched, samples images of
the pixel size, reloads to the same images, and refuses an autoencoder that reads captions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_diffusion_recipe import tiny
from test_image_family import tiny as tiny_family

from genlab.core.ema import EMA_FILE
from genlab.core.errors import GenlabError
from genlab.core.io import load_tensors
from genlab.data.images import from_uint8
from genlab.methods.diffusion.latent import (
    LatentConfig,
    LatentSpace,
    encode_pixels,
    open_autoencoder,
    unit_variance_scale,
)
from genlab.methods.diffusion.text_conditioned import (
    DiffusionConfig,
    DiffusionModel,
    generate,
    generate_captions,
    load_diffusion,
)
from genlab.methods.vae.vae import VAE, VAEConfig
from genlab.nets.text_encoder import TextEncoderConfig
from genlab.nets.unet import UNetConfig
from genlab.recipes.diffusion import load_images, train_diffusion
from genlab.recipes.image_family import train_family

pytestmark = pytest.mark.usefixtures("one_thread")

AE = VAEConfig(image_size=16, base_channels=8, channel_mults=(1, 2), latent_channels=3)


def latent_model(
    scale: float = 2.0, prediction: str = "eps", latent: bool = True
) -> DiffusionModel:
    torch.manual_seed(0)
    unet = UNetConfig.preset(
        "tiny", image_channels=3, context_dim=8, base_channels=8, num_heads=2, norm_groups=4
    )
    text = TextEncoderConfig(vocab_size=10, max_length=4, dim=8, num_layers=1, num_heads=2)
    space = LatentConfig(AE, scale) if latent else None
    config = DiffusionConfig(unet, text, image_size=16, prediction=prediction, latent=space)
    return DiffusionModel(config)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_only_a_pixel_model_clips_its_x0_estimate_to_the_pixel_range(sampler, prediction):
    """A scaled latent has unit variance: [-1, 1] would cut a third of a Gaussian's (clipped,
    DDPM drew no shape at all from a latent model that DDIM sampled well)."""
    x0 = torch.full((1, 3, 8, 8), 3.0)  # a latent well outside the pixels' range
    for latent in (True, False):
        scheduler = latent_model(prediction=prediction, latent=latent).scheduler(sampler)
        scheduler.set_timesteps(10)
        t = int(scheduler.timesteps[0])
        abar = scheduler.alphas_cumprod[t]
        targets = {"eps": torch.zeros_like(x0), "v": -(1 - abar).sqrt() * x0, "x0": x0}
        out = scheduler.step(targets[prediction], t, abar.sqrt() * x0)  # x_t with no noise
        clipped = not latent and (sampler == "ddpm" or prediction == "eps")
        expected = 1.0 if clipped else 3.0
        assert out.pred_original_sample == pytest.approx(torch.full_like(x0, expected), abs=1e-4)


def test_latent_space_encodes_the_scaled_posterior_mean_and_decodes_back():
    torch.manual_seed(0)
    space = LatentSpace(LatentConfig(AE, 2.5))
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    mean, _ = space.vae.encode(images)
    latents = space.encode(images)
    assert latents.shape == (3, 3, 8, 8) == (3, *space.shape)
    torch.testing.assert_close(latents, 2.5 * mean)
    torch.testing.assert_close(space.decode(latents), space.vae.decode(mean).clamp(-1, 1))
    assert not any(p.requires_grad for p in space.parameters())


def test_unit_variance_scale_and_its_guard():
    latents = torch.randn(500, 4, 2, 2) * 3.0
    assert abs(unit_variance_scale(latents) * latents.std() - 1.0) < 1e-5
    with pytest.raises(GenlabError, match="same latent"):
        unit_variance_scale(torch.ones(4, 2, 2, 2))


def test_latent_config_round_trip_and_refusals():
    config = latent_model().config
    assert DiffusionConfig.from_dict(config.to_dict()) == config
    assert config.sample_shape == (3, 8, 8)
    old = {k: v for k, v in config.to_dict().items() if k != "latent"}  # a pixel run's config
    assert DiffusionConfig.from_dict(old).latent is None
    with pytest.raises(GenlabError, match="must not read captions"):
        LatentConfig(replace(AE, cond_vocab=5), 1.0)
    with pytest.raises(GenlabError, match="positive"):
        LatentConfig(AE, 0.0)
    with pytest.raises(GenlabError, match="latent channels"):
        replace(config, unet=replace(config.unet, image_channels=4))


def test_a_latent_model_denoises_latents_and_returns_decoded_images():
    model = latent_model()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("latent.") for n in trainable)
    assert any(n.startswith("latent.vae.") for n in model.state_dict())
    seen = []
    model.unet.register_forward_hook(lambda m, args, out: seen.append(args[0].shape))
    scheduler = model.scheduler("ddim")
    scheduler.set_timesteps(2)
    tokens, mask = torch.ones(2, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.bool)
    images = generate(model, tokens, mask, scheduler, guidance=1.0, generator=torch.Generator())
    assert images.shape == (2, 3, 16, 16) and images.abs().max() <= 1
    assert seen and all(s[1:] == (3, 8, 8) for s in seen)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("latent")
    vae_run = root / "vae"
    train_family(tiny_family(vae_run, "vae", captions=False, latent_channels=3))
    ldm = root / "ldm"
    train_diffusion(replace(tiny(ldm), latent_vae=str(vae_run)))
    return vae_run, ldm


def test_the_run_keeps_the_vae_runs_weights_and_its_measured_scale(runs):
    vae_run, ldm = runs
    autoencoder = open_autoencoder(vae_run)
    model, _ = load_diffusion(ldm)
    assert model.latent is not None
    for name, value in autoencoder.state_dict().items():
        torch.testing.assert_close(model.latent.vae.state_dict()[name], value, rtol=0, atol=0)
    raw = load_tensors(ldm / "model.safetensors")
    assert any(k.startswith("latent.vae.") for k in raw)
    pixels, _ = load_images(tiny(ldm).data)
    expected = unit_variance_scale(encode_pixels(autoencoder, pixels))
    assert model.config.latent.scale == pytest.approx(expected, rel=1e-6)
    latents = model.latent.encode(from_uint8(pixels))
    assert float(latents.std()) == pytest.approx(1.0, rel=1e-4)


def test_a_reloaded_latent_run_draws_the_same_images(runs):
    _, ldm = runs
    model, tokenizer = load_diffusion(ldm)
    again, _ = load_diffusion(ldm)
    captions = ["a large red circle on the left", "a small blue square at the top"]

    def draw(m: DiffusionModel) -> torch.Tensor:
        scheduler = m.scheduler("ddim")
        scheduler.set_timesteps(3)
        return generate_captions(m, tokenizer, captions, scheduler, guidance=2.0, seed=7)

    first = draw(model)
    assert first.shape == (2, 3, 16, 16)
    torch.testing.assert_close(first, draw(again), rtol=0, atol=0)
    ema = load_tensors(ldm / EMA_FILE)
    assert any(k.startswith("unet.") for k in ema)


def test_a_caption_reading_vae_or_another_size_is_refused(runs, tmp_path):
    vae_run, _ = runs
    reader = tmp_path / "reader"
    train_family(tiny_family(reader, "vae", max_steps=1))
    with pytest.raises(GenlabError, match="--no-captions"):
        train_diffusion(replace(tiny(tmp_path / "a"), latent_vae=str(reader)))
    bigger = tiny(tmp_path / "b")
    bigger = replace(bigger, latent_vae=str(vae_run), data=replace(bigger.data, size=32))
    with pytest.raises(GenlabError, match="--size"):
        train_diffusion(bigger)


def test_vae_without_captions_has_an_unconditional_decoder(runs):
    vae_run, _ = runs
    model = open_autoencoder(vae_run)
    assert isinstance(model, VAE) and model.config.cond_vocab == 0
    assert model.decoder.caption is None
