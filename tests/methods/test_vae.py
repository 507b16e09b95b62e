"""The VAE: shapes and ranges, training lowers the loss, bits per dimension against a hand
computation of the negative ELBO, free bits, captions, and a save/load round trip."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from genlab.core.errors import GenlabError
from genlab.core.registry import load, save
from genlab.methods.vae.vae import (
    KIND,
    VAE,
    VAEConfig,
    VAELoss,
    bits_per_dim,
    gaussian_nll,
    reconstruct,
    sample,
)


def _model(seed: int = 0, **net: object) -> VAE:
    torch.manual_seed(seed)
    base = dict(image_size=8, base_channels=8, channel_mults=(1, 2), latent_channels=2)
    return VAE(VAEConfig(**{**base, **net}))


def _images(n: int = 4, channels: int = 3, seed: int = 1) -> torch.Tensor:
    """8-bit images in [-1, 1]: a smooth pattern plus a little noise, rounded to the bins."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(-0.8, 0.8, 8)
    base = (
        ramp[None, None, :, None]
        * ramp[None, None, None, :]
        * torch.randn(n, channels, 1, 1, generator=g)
    )
    pixels = ((base + 0.05 * torch.randn(n, channels, 8, 8, generator=g)).clamp(-1, 1) + 1) * 127.5
    return pixels.round() / 127.5 - 1


def test_shapes_and_ranges() -> None:
    model = _model()
    images = _images(3)
    out = model(images)
    assert out.mean.shape == images.shape and out.log_scale.shape == (3,)
    assert out.posterior_mean.shape == out.posterior_logvar.shape == (3, 2, 4, 4)
    assert model.latent_shape == (2, 4, 4)
    samples = sample(model, 5, None, torch.Generator().manual_seed(0))
    assert samples.shape == (5, 3, 8, 8) and samples.min() >= -1 and samples.max() <= 1
    again = sample(model, 5, None, torch.Generator().manual_seed(0))
    assert torch.equal(samples, again)  # a function of the generator
    cold = sample(model, 5, None, torch.Generator().manual_seed(0), temperature=0.0)
    torch.testing.assert_close(cold, model.decode(torch.zeros(5, 2, 4, 4)).clamp(-1, 1).detach())
    recon = reconstruct(model, images)
    assert recon.shape == images.shape and recon.min() >= -1 and recon.max() <= 1
    mean, _ = model.encode(images)
    torch.testing.assert_close(recon, model.decode(mean).clamp(-1, 1).detach())


def test_a_few_steps_lower_the_loss() -> None:
    model = _model()
    images = _images(8)
    loss_fn = VAELoss()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss_at(seed: int) -> float:
        torch.manual_seed(seed)
        return loss_fn(model, (images, None))[0].item()

    before = loss_at(123)
    for step in range(25):
        torch.manual_seed(step)
        loss, metrics = loss_fn(model, (images, None))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert set(metrics) == {"recon", "kl", "kl_term", "scale", "samples"}
    assert loss_at(123) < before - 0.1


def test_bits_per_dim_is_the_negative_elbo_by_hand() -> None:
    model = _model()
    with torch.no_grad():
        model.log_scale.copy_(torch.tensor([-1.0, -0.5, 0.3]))
    images = _images(3)
    bpd = bits_per_dim(model, images, None, torch.Generator().manual_seed(7), samples=2)
    assert bpd.shape == (3,) and torch.isfinite(bpd).all()

    g = torch.Generator().manual_seed(7)
    dims = 3 * 8 * 8
    nats = torch.zeros(3)
    with torch.no_grad():
        for _ in range(2):
            y = images + torch.rand(images.shape, generator=g) / 127.5  # one 8-bit bin
            mu, logvar = model.encoder(y).chunk(2, dim=1)
            std = (0.5 * logvar).exp()
            z = mu + std * torch.randn(mu.shape, generator=g)
            scale = model.log_scale.exp()[:, None, None].expand_as(y)
            log_lik = Normal(model.decoder(z), scale).log_prob(y).flatten(1).sum(1)
            kl = kl_divergence(Normal(mu, std), Normal(0.0, 1.0)).flatten(1).sum(1)
            nats += (kl - log_lik) / 2
    # from nats per image in [-1, 1] units to bits per dimension in [0, 256) units
    expected = nats / (dims * math.log(2)) + math.log2(127.5)
    torch.testing.assert_close(bpd, expected)
    assert (bpd > 0).all()


def test_free_bits_floor_each_latent_channels_kl() -> None:
    model = _model(latent_channels=4)
    images = _images(4)
    with torch.no_grad():
        mu, logvar = model.encode(images)
    kl_c = (0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)).sum((2, 3)).mean(0)  # (4,) nats
    floor = kl_c.median().item()
    assert (kl_c < floor).any() and (kl_c > floor).any()

    def run(free_bits: float) -> tuple[torch.Tensor, dict]:
        torch.manual_seed(5)
        return VAELoss(free_bits=free_bits)(model, (images, None))

    loss0, m0 = run(0.0)
    loss1, m1 = run(floor)
    torch.testing.assert_close(m0["kl"], kl_c.sum())
    torch.testing.assert_close(m0["kl_term"], kl_c.sum())
    torch.testing.assert_close(m1["kl"], kl_c.sum())  # the reported KL is the true one
    torch.testing.assert_close(m1["kl_term"], kl_c.clamp(min=floor).sum())
    torch.testing.assert_close(loss1 - loss0, (m1["kl_term"] - m0["kl_term"]) / (3 * 64))

    # above every channel's KL the KL term is a constant: the encoder feels the likelihood alone
    high = kl_c.max().item() + 1
    loss_high, m_high = run(high)
    assert m_high["kl_term"].item() == pytest.approx(4 * high)
    grads_high = torch.autograd.grad(loss_high, list(model.encoder.parameters()))
    torch.manual_seed(5)
    out = model(images)
    recon_only = gaussian_nll(images, out.mean, out.log_scale).mean() / (3 * 64)
    grads_recon = torch.autograd.grad(recon_only, list(model.encoder.parameters()))
    for a, b in zip(grads_high, grads_recon, strict=True):
        torch.testing.assert_close(a, b)


def test_captions_change_the_decoder_output() -> None:
    model = _model(cond_vocab=9, cond_dim=8)
    with torch.no_grad():
        model.decoder.caption.null.normal_()
    z = torch.randn(2, 2, 4, 4)
    a = torch.tensor([[1, 3, 4], [1, 3, 4]])
    b = torch.tensor([[1, 5, 6], [1, 5, 6]])
    assert (model.decode(z, a) - model.decode(z, b)).abs().max() > 1e-3
    torch.testing.assert_close(model.decode(z, None), model.decode(z, torch.zeros_like(a)))
    g = torch.Generator
    sa = sample(model, 2, a, g().manual_seed(0))
    assert (sa - sample(model, 2, b, g().manual_seed(0))).abs().max() > 1e-3
    with pytest.raises(GenlabError, match="3 caption rows, got 2"):
        sample(model, 3, a, g().manual_seed(0))


def test_save_load_round_trip_is_exact(tmp_path: Path) -> None:
    model = _model(cond_vocab=9, cond_dim=8)
    with torch.no_grad():
        model.log_scale.fill_(-0.7)
    save(tmp_path / "vae", model, KIND, model.config)
    loaded = load(tmp_path / "vae")
    assert loaded.kind == KIND and loaded.config == model.config
    images, captions = _images(2), torch.tensor([[1, 3, 4], [1, 0, 0]])
    torch.testing.assert_close(
        reconstruct(loaded.model, images, captions),
        reconstruct(model, images, captions),
        rtol=0,
        atol=0,
    )
    args = (images, captions)
    bpd = bits_per_dim(model, *args, torch.Generator().manual_seed(3))
    assert torch.equal(bits_per_dim(loaded.model, *args, torch.Generator().manual_seed(3)), bpd)


def test_config_round_trip_and_checks() -> None:
    cfg = _model(cond_vocab=9).config
    assert VAEConfig.from_dict(cfg.to_dict()) == cfg
    assert VAEConfig.from_dict({"latent_channels": 5}).latent_channels == 5
    with pytest.raises(GenlabError, match="unknown autoencoder setting 'num_codes'"):
        VAEConfig.from_dict({**cfg.to_dict(), "num_codes": 4})  # a VQ-VAE's config
    with pytest.raises(GenlabError, match="free_bits"):
        VAELoss(free_bits=-1.0)
