"""The autoencoder's halves: shapes at every size, the config's checks and round trip, and the
decoder's caption conditioning (FiLM from a bag of words; no caption = the null vector)."""

from __future__ import annotations

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.nets.autoencoder import AutoencoderConfig, Decoder, Encoder


def _config(**overrides: object) -> AutoencoderConfig:
    base = dict(image_size=16, base_channels=8, channel_mults=(1, 2), latent_channels=3)
    return AutoencoderConfig(**{**base, **overrides})


@pytest.mark.parametrize(("size", "mults"), [(8, (1, 2)), (16, (1, 2, 2)), (32, (1, 1, 2))])
def test_shapes_round_trip_through_the_latent_grid(size: int, mults: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    cfg = _config(image_size=size, channel_mults=mults, image_channels=1)
    assert cfg.downsample == 2 ** (len(mults) - 1)
    assert cfg.latent_size == size // cfg.downsample
    enc, dec = Encoder(cfg, out_channels=5), Decoder(cfg)
    h = enc(torch.rand(2, 1, size, size) * 2 - 1)
    assert h.shape == (2, 5, cfg.latent_size, cfg.latent_size)
    out = dec(torch.randn(2, 3, cfg.latent_size, cfg.latent_size))
    assert out.shape == (2, 1, size, size)
    assert torch.isfinite(out).all()


def test_config_round_trip_and_checks() -> None:
    cfg = _config(cond_vocab=12, cond_dim=6)
    d = cfg.to_dict()
    d["channel_mults"] = list(d["channel_mults"])  # as JSON gives it back
    assert AutoencoderConfig.from_dict(d) == cfg
    with pytest.raises(GenlabError, match="multiple of 2"):
        _config(image_size=15)
    with pytest.raises(GenlabError, match="norm groups"):
        _config(base_channels=6)
    with pytest.raises(GenlabError, match="latent_channels"):
        _config(latent_channels=0)
    with pytest.raises(GenlabError, match="unknown autoencoder setting 'z'"):
        AutoencoderConfig.from_dict({**cfg.to_dict(), "z": 1})


def test_captions_condition_the_decoder() -> None:
    torch.manual_seed(0)
    dec = Decoder(_config(cond_vocab=10, cond_dim=8))
    with torch.no_grad():
        dec.caption.null.normal_()  # a trained null vector is not zero
    z = torch.randn(2, 3, 8, 8)
    red = torch.tensor([[1, 4, 5, 0], [1, 4, 5, 0]])
    blue = torch.tensor([[1, 6, 7, 8], [1, 6, 7, 8]])
    out_red, out_blue = dec(z, red), dec(z, blue)
    assert (out_red - out_blue).abs().max() > 1e-3
    # the same caption gives the same output whatever the padding after it
    torch.testing.assert_close(dec(z, red[:, :3]), out_red)
    # no caption is the all-padding caption: the null vector
    none = dec(z, None)
    torch.testing.assert_close(none, dec(z, torch.zeros(2, 5, dtype=torch.long)))
    assert (none - out_red).abs().max() > 1e-3


def test_an_unconditional_decoder_ignores_captions() -> None:
    torch.manual_seed(0)
    dec = Decoder(_config())
    assert dec.caption is None
    z = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(dec(z, torch.tensor([[1, 4, 5]])), dec(z))
