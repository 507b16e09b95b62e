"""The GAN's networks: shapes and range, DCGAN's widths, per-row scores, projection
conditioning, spectral normalisation and the config's checks and round trip."""

from __future__ import annotations

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.nets.gan import GAN, Discriminator, GANConfig, Generator

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 7


def tiny(size: int = 8, **kw) -> GANConfig:
    return GANConfig(**{"image_size": size, "base_channels": 4, "z_dim": 8, **kw})


def captions(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (n, 4), generator=g)
    ids[:, 0] = 1  # <cls>
    ids[0, 3:] = 0  # padding
    return ids


@pytest.mark.parametrize("size", [8, 16, 32])
@pytest.mark.parametrize("norm", ["group", "batch"])
def test_shapes_and_range(size: int, norm: str) -> None:
    torch.manual_seed(0)
    config = tiny(size, image_channels=3, norm=norm, cond_vocab=VOCAB, spectral_norm=True)
    gan = GAN(config)
    z = 3 * torch.randn(5, config.z_dim)  # large latents: tanh keeps the range
    fake = gan.generator(z, captions(5))
    assert fake.shape == (5, 3, size, size)
    assert fake.abs().max() <= 1 and fake.std() > 0
    real = torch.rand(5, 3, size, size) * 2 - 1
    out = gan(z, captions(5), real)
    assert out.fake.shape == (5, 3, size, size)
    assert out.fake_logits.shape == out.real_logits.shape == (5,)
    assert torch.isfinite(out.real_logits).all()
    assert gan(z, captions(5)).real_logits is None


def test_dcgan_widths_and_init() -> None:
    config = GANConfig(image_size=64, base_channels=64, z_dim=100)
    assert config.channels() == [512, 256, 128, 64]  # at 4, 8, 16, 32 pixels
    torch.manual_seed(0)
    g, d = Generator(config), Discriminator(config)
    assert g.project[0].weight.shape == (512 * 16, 100)
    assert [m.out_channels for m in d.features if isinstance(m, torch.nn.Conv2d)] == [
        64,
        128,
        256,
        512,
    ]
    assert d.out.weight.shape == (1, 512 * 16)
    assert abs(g.ups[0].weight.std().item() - 0.02) < 1e-3  # N(0, 0.02), Radford et al.
    assert abs(d.features[2].weight.std().item() - 0.02) < 1e-3


def test_the_discriminator_scores_each_image_alone() -> None:
    """No batch statistics in D: a row's score ignores the others (R1 relies on it), and the
    GAN's one pass over fakes and reals equals scoring each set alone."""
    torch.manual_seed(0)
    config = tiny(16, cond_vocab=VOCAB)
    gan = GAN(config)
    x, caps = torch.rand(6, 3, 16, 16) * 2 - 1, captions(6)
    whole = gan.discriminator(x, caps)
    torch.testing.assert_close(gan.discriminator(x[:2], caps[:2]), whole[:2])
    z = torch.randn(6, config.z_dim)
    out = gan(z, caps, x)
    torch.testing.assert_close(out.real_logits, whole)
    torch.testing.assert_close(out.fake_logits, gan.discriminator(out.fake, caps))


def test_captions_condition_both_networks() -> None:
    torch.manual_seed(0)
    gan = GAN(tiny(cond_vocab=VOCAB))
    z, x = torch.randn(4, 8), torch.rand(4, 3, 8, 8)
    a, b = captions(4, seed=0), captions(4, seed=1)
    assert not torch.allclose(gan.generator(z, a), gan.generator(z, b))
    assert not torch.allclose(gan.discriminator(x, a), gan.discriminator(x, b))
    # no captions is the all-padding caption, the learned null vector
    pad = torch.zeros(4, 5, dtype=torch.long)
    torch.testing.assert_close(gan.generator(z, None), gan.generator(z, pad))
    torch.testing.assert_close(gan.discriminator(x, None), gan.discriminator(x, pad))
    with torch.no_grad():
        gan.generator.captions.null.add_(1.0)
    assert not torch.allclose(gan.generator(z, None), gan.generator(z, a))


def test_an_unconditional_gan_ignores_captions() -> None:
    torch.manual_seed(0)
    gan = GAN(tiny())
    z, x = torch.randn(3, 8), torch.rand(3, 3, 8, 8)
    assert gan.generator.captions is None and gan.discriminator.captions is None
    torch.testing.assert_close(gan.generator(z, captions(3)), gan.generator(z, None))
    torch.testing.assert_close(gan.discriminator(x, captions(3)), gan.discriminator(x))


def test_spectral_norm_makes_each_layer_1_lipschitz() -> None:
    torch.manual_seed(0)
    d = Discriminator(tiny(16, spectral_norm=True))
    assert any(name.endswith("weight.original") for name in d.state_dict())
    x = torch.randn(2, 3, 16, 16)
    for _ in range(20):  # each training-mode pass runs one power iteration
        d(x)
    layers = [m for m in d.features if isinstance(m, torch.nn.Conv2d)] + [d.out]
    for layer in layers:
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=1e-3)
    plain = Discriminator(tiny(16))
    assert torch.linalg.matrix_norm(plain.out.weight.detach(), ord=2) < 0.9


def test_config_checks_and_round_trip() -> None:
    config = tiny(32, cond_vocab=VOCAB, norm="batch", spectral_norm=True)
    assert GANConfig.from_dict(config.to_dict()) == config
    for bad in (dict(image_size=12), dict(image_size=128), dict(image_size=4)):
        with pytest.raises(GenlabError, match="pixels"):
            tiny(**bad)
    with pytest.raises(GenlabError, match="norm 'layer'"):
        tiny(norm="layer")
    with pytest.raises(GenlabError, match="positive"):
        tiny(z_dim=0)
    with pytest.raises(GenlabError, match="unknown GAN setting 'depth'"):
        GANConfig.from_dict({**config.to_dict(), "depth": 3})


def test_a_linear_output_is_the_tanh_generators_pre_activation() -> None:
    torch.manual_seed(0)
    tanh = Generator(tiny(16, image_channels=3))
    linear = Generator(tiny(16, image_channels=3, output="linear"))
    with torch.no_grad():
        tanh.to_image.weight.mul_(100)  # a trained generator's outputs reach past +-1
    linear.load_state_dict(tanh.state_dict())  # the same weights: only the last step differs
    z = 4 * torch.randn(6, 8)
    raw = linear(z)
    torch.testing.assert_close(torch.tanh(raw), tanh(z))
    assert raw.abs().max() > 1  # unbounded: sampling clamps
    with pytest.raises(GenlabError, match="unknown GAN output 'sigmoid'"):
        tiny(output="sigmoid")
