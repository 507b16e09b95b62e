"""Audio metrics: the log-spectral distance and the log-mel L1 are 0 for identical clips, the LSD
of a clip at twice the amplitude is 20 log10(2) dB and grows with noise, and STOI is pystoi's."""

from __future__ import annotations

import math

import pystoi
import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.data.audio.mel import MelConfig
from genlab.data.audio.synth import synth_clips, synth_speech
from genlab.metrics.audio import log_spectral_distance, mel_l1, stoi

CFG = MelConfig()


def noise(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_identical_clips_are_at_zero_and_shapes_are_per_clip() -> None:
    x = 0.3 * noise(3, 256 * 16)
    assert log_spectral_distance(x, x, CFG).shape == (3,)
    assert torch.equal(log_spectral_distance(x, x, CFG), torch.zeros(3))
    assert torch.equal(mel_l1(x, x, CFG), torch.zeros(3))
    assert log_spectral_distance(x[0], x[1], CFG).shape == mel_l1(x[0], x[1], CFG).shape == (1,)


def test_twice_the_amplitude_is_six_decibels() -> None:
    x = 0.3 * noise(2, 256 * 16)
    lsd = log_spectral_distance(x, 2 * x, CFG)
    torch.testing.assert_close(lsd, torch.full((2,), 20 * math.log10(2)), atol=1e-3, rtol=0)
    assert mel_l1(x, 2 * x, CFG) == pytest.approx(math.log(2), abs=1e-3)  # above the log floor


def test_distances_grow_with_added_noise() -> None:
    x = synth_clips(2, 1.0, 0)[:, : 256 * 62]
    levels = [0.003, 0.03, 0.3]
    noisy = [x + level * noise(*x.shape, seed=1) for level in levels]
    lsd = torch.stack([log_spectral_distance(x, y, CFG) for y in noisy])
    mel = torch.stack([mel_l1(x, y, CFG) for y in noisy])
    assert (lsd.diff(dim=0) > 0).all() and (mel.diff(dim=0) > 0).all()


def test_mismatched_shapes_are_one_line_errors() -> None:
    for metric in (log_spectral_distance, mel_l1):
        with pytest.raises(GenlabError, match="same shape"):
            metric(noise(2, 2560), noise(2, 2304), CFG)
    with pytest.raises(GenlabError, match="same shape"):
        stoi(noise(1, 16000), noise(16000), 16000)


def test_stoi_is_pystoi_near_one_for_the_clip_and_low_for_noise() -> None:
    x = synth_clips(2, 1.0, 3)
    other = 0.3 * noise(2, 16000, seed=4)
    same, unrelated = stoi(x, x, 16000), stoi(x, other, 16000)
    assert same.shape == unrelated.shape == (2,)
    assert (same > 0.99).all() and (unrelated < 0.5).all()
    noisy = x[0] + 0.05 * other[0]
    direct = pystoi.stoi(x[0].double().numpy(), noisy.double().numpy(), 16000)
    assert stoi(x[0], noisy, 16000).item() == pytest.approx(direct, abs=1e-9)


def test_stoi_is_nan_where_pystoi_cannot_score() -> None:
    """Under pystoi's 384 ms of non-silent speech it returns 1e-5 with a warning: NaN here."""
    x = torch.from_numpy(synth_speech(1.0, 2))
    short = torch.cat([x[:3000], torch.zeros(13000)])
    scores = stoi(torch.stack([x, short]), torch.stack([x, short]), 16000)
    assert scores[0] > 0.99 and torch.isnan(scores[1])
