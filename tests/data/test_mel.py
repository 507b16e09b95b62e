"""Log-mel spectrograms: the filterbank and the STFT equal librosa's, a clip of k hops gives k
frames, and bad configs and clip lengths are one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.data.audio.mel import MelConfig, log_mel, mel_filterbank, stft_magnitude
from references import require

librosa = require("librosa")


@pytest.mark.parametrize(
    ("sample_rate", "n_fft", "n_mels", "f_min", "f_max"),
    [(16000, 1024, 80, 0.0, None), (22050, 2048, 128, 40.0, 8000.0)],
)
def test_filterbank_equals_librosa(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float | None
) -> None:
    ours = mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max)
    theirs = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max)
    assert ours.dtype == torch.float32 and ours.shape == (n_mels, n_fft // 2 + 1)
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("win_length", [1024, 800])
def test_stft_magnitude_equals_librosa_without_the_last_frame(win_length: int) -> None:
    cfg = MelConfig(win_length=win_length)
    x = np.random.default_rng(0).standard_normal(cfg.hop_length * 12).astype(np.float32)
    ours = stft_magnitude(torch.from_numpy(x), cfg)
    theirs = np.abs(
        librosa.stft(
            x,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            win_length=win_length,
            window="hann",
            center=True,
            pad_mode="reflect",
        )
    )[:, :-1]
    assert ours.shape == (1, *theirs.shape) == (1, cfg.n_fft // 2 + 1, 12)
    np.testing.assert_allclose(ours[0].numpy(), theirs, rtol=0, atol=1e-4)


def test_a_clip_of_k_hops_gives_k_frames() -> None:
    cfg = MelConfig(hop_length=200, win_length=800, n_fft=800)
    batch = torch.randn(3, 200 * 7)
    assert stft_magnitude(batch, cfg).shape == (3, 401, 7)
    mel = log_mel(batch, cfg)
    assert mel.shape == (3, cfg.n_mels, 7) and mel.dtype == torch.float32
    assert log_mel(batch[0], cfg).shape == (1, cfg.n_mels, 7)
    silent = log_mel(torch.zeros(1, 200 * 7), cfg)  # clamped at the floor, not -inf
    assert torch.allclose(silent, torch.full_like(silent, np.log(cfg.log_floor)))


def test_log_mel_is_the_log_of_the_filtered_magnitude() -> None:
    cfg = MelConfig()
    x = torch.randn(2, cfg.hop_length * 8)
    fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels)
    expected = torch.log(torch.clamp(fb @ stft_magnitude(x, cfg), min=cfg.log_floor))
    torch.testing.assert_close(log_mel(x, cfg), expected)


@pytest.mark.parametrize("length", [256 * 10 + 1, 0])
def test_a_length_that_is_not_a_multiple_of_the_hop_is_rejected(length: int) -> None:
    with pytest.raises(GenlabError, match="multiple of the hop") as e:
        log_mel(torch.randn(length), MelConfig())
    assert "\n" not in str(e.value)


def test_config_round_trip_and_unknown_fields() -> None:
    cfg = MelConfig(sample_rate=22050, hop_length=275, n_mels=64, f_min=20.0, f_max=8000.0)
    assert MelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(GenlabError, match="unknown mel config field 'hop'"):
        MelConfig.from_dict({"hop": 256})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hop_length": 0}, "hop_length must be positive"),
        ({"n_mels": -1}, "n_mels must be positive"),
        ({"win_length": 2048}, "longer than n_fft"),
        ({"f_max": 9000.0}, "f_max <= sample_rate / 2"),
        ({"f_min": 4000.0, "f_max": 3000.0}, "f_min < f_max"),
        ({"log_floor": 0.0}, "log_floor must be positive"),
    ],
)
def test_bad_configs_are_rejected(changes: dict, message: str) -> None:
    with pytest.raises(GenlabError, match=message):
        MelConfig(**changes)


def test_spectrogram_figure_is_a_png_with_a_column_per_clip(tmp_path: Path) -> None:
    from PIL import Image

    from genlab.data.audio.figures import save_spectrograms

    cfg = MelConfig()
    clips = {"reference": torch.randn(256 * 20), "vocoded": 0.5 * torch.randn(256 * 20)}
    one = save_spectrograms(tmp_path / "one.png", {"reference": clips["reference"]}, cfg)
    two = save_spectrograms(tmp_path / "figs" / "two.png", clips, cfg, title="step 100")
    assert one == tmp_path / "one.png"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["figs", "one.png", "two.png"]
    with Image.open(one) as a, Image.open(two) as b:
        assert a.format == b.format == "PNG" and b.width > a.width
    with pytest.raises(GenlabError, match="one waveform"):
        save_spectrograms(tmp_path / "bad.png", {"batch": torch.randn(2, 2560)}, cfg)
