"""Mel-spectrogram back to audio without learning: the baseline every neural vocoder is read
against.

The mel filterbank is inverted by its pseudo-inverse (negative magnitudes clipped to zero), then
the phase the spectrogram lacks is recovered by Griffin & Lim's alternating projections (1984,
"Signal Estimation from Modified Short-Time Fourier Transform") with the momentum of Perraudin,
Balazs & Søndergaard (2013, "A Fast Griffin-Lim Algorithm"), as librosa's ``mel_to_audio`` does.
The STFT is :mod:`~genlab.data.audio.mel`'s own (centred frames, the last one dropped), so
the result is scored against the reference exactly as a vocoder's output is.
"""

from __future__ import annotations

import torch
from torch import Tensor

from genlab.data.audio.mel import MelConfig, mel_filterbank


def mel_to_magnitude(mel: Tensor, cfg: MelConfig) -> Tensor:
    """(B, n_fft // 2 + 1, frames) non-negative magnitudes whose mel projection approximates
    ``exp(mel)``, the log-mel (B, n_mels, frames)."""
    fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max)
    return (torch.linalg.pinv(fb.double()).float() @ mel.exp()).clamp(min=0)


def _stft(wav: Tensor, cfg: MelConfig, window: Tensor) -> Tensor:
    return torch.stft(wav, cfg.n_fft, cfg.hop_length, cfg.win_length, window, return_complex=True)


def griffin_lim(
    mel: Tensor,
    cfg: MelConfig,
    iterations: int = 32,
    momentum: float = 0.99,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Waveforms (B, frames * hop) for log-mels (B, n_mels, frames): magnitudes from the
    pseudo-inverse, phases by ``iterations`` of fast Griffin-Lim from random ones."""
    magnitude = mel_to_magnitude(mel, cfg)
    # the STFT of a clip of frames * hop samples has one more (centred) frame than the mel
    magnitude = torch.cat([magnitude, magnitude[..., -1:]], dim=-1)
    length = mel.shape[-1] * cfg.hop_length
    window = torch.hann_window(cfg.win_length, dtype=magnitude.dtype)
    phase = torch.rand(magnitude.shape, generator=generator) * 2 * torch.pi
    angles = torch.polar(torch.ones_like(magnitude), phase)
    previous = torch.zeros_like(angles)
    for _ in range(iterations):
        wav = torch.istft(
            magnitude * angles, cfg.n_fft, cfg.hop_length, cfg.win_length, window, length=length
        )
        rebuilt = _stft(wav, cfg, window)
        angles = rebuilt - (momentum / (1 + momentum)) * previous
        angles = angles / angles.abs().clamp(min=1e-16)
        previous = rebuilt
    wav = torch.istft(
        magnitude * angles, cfg.n_fft, cfg.hop_length, cfg.win_length, window, length=length
    )
    return wav.clamp(-1, 1)
