"""WaveGrad's network: shapes, the hop, its config round trip, and a continuous noise level."""

from __future__ import annotations

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.nets.wavegrad import WaveGrad, WaveGradConfig, noise_level_embedding

SMALL = WaveGradConfig(
    n_mels=8,
    factors=(2, 2, 2),
    mel_channels=16,
    up_channels=(16, 8, 8),
    down_channels=(4, 8, 8),
)


def test_output_has_the_audio_shape() -> None:
    torch.manual_seed(0)
    net = WaveGrad(SMALL)
    assert SMALL.hop_length == 8
    audio, mel = torch.randn(3, 40), torch.randn(3, 8, 5)
    out = net(audio, torch.rand(3), mel)
    assert out.shape == (3, 40)
    assert torch.isfinite(out).all()


def test_a_mel_frame_must_cover_a_hop_of_audio() -> None:
    net = WaveGrad(SMALL)
    with pytest.raises(GenlabError, match="8 samples"):
        net(torch.randn(1, 41), torch.rand(1), torch.randn(1, 8, 5))


def test_the_output_depends_on_noise_level_and_mel() -> None:
    torch.manual_seed(0)
    net = WaveGrad(SMALL)
    audio, mel = torch.randn(1, 40), torch.randn(1, 8, 5)
    base = net(audio, torch.tensor([0.5]), mel)
    assert not torch.allclose(base, net(audio, torch.tensor([0.9]), mel))
    assert not torch.allclose(base, net(audio, torch.tensor([0.5]), torch.randn(1, 8, 5)))


def test_the_noise_level_is_continuous() -> None:
    """Levels between two schedule points give outputs between theirs: the network reads a
    smooth function of the level, not a table of steps."""
    torch.manual_seed(0)
    net = WaveGrad(SMALL)
    audio, mel = torch.randn(1, 40), torch.randn(1, 8, 5)
    levels = torch.linspace(0.5, 0.500001, 5)
    outs = torch.stack([net(audio, level[None], mel) for level in levels])
    steps = (outs[1:] - outs[:-1]).abs().max()
    assert 0 < steps < 1e-3
    emb = noise_level_embedding(levels, 16)
    assert emb.shape == (5, 16)
    assert torch.allclose(emb[0, :8].pow(2) + emb[0, 8:].pow(2), torch.ones(8))


def test_config_round_trip_and_checks() -> None:
    assert WaveGradConfig.from_dict(SMALL.to_dict()) == SMALL
    assert WaveGradConfig().hop_length == 256
    with pytest.raises(GenlabError, match="as many"):
        WaveGradConfig(factors=(2, 2), up_channels=(8,), down_channels=(4, 4))
    with pytest.raises(GenlabError, match="unknown WaveGrad setting 'width'"):
        WaveGradConfig.from_dict({**SMALL.to_dict(), "width": 3})
    with pytest.raises(GenlabError, match="even"):
        WaveGradConfig(factors=(2,), up_channels=(8,), down_channels=(3,))
