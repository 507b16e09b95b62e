"""Log-mel spectrograms: what a vocoder such as WaveGrad is conditioned on.

WaveGrad (Chen et al., 2021) turns an 80-band log-mel spectrogram back into a waveform, upsampling
each frame to ``hop_length`` samples; so a clip of ``k * hop_length`` samples must give exactly
``k`` frames. The mel filterbank is Slaney's (Auditory Toolbox, 1998): linear below 1 kHz,
logarithmic above, each triangle normalised to unit area. It equals librosa's default
``librosa.filters.mel``, the filterbank of most published vocoders, computed here in numpy so the
library needs no librosa.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genlab.core.errors import GenlabError


@dataclass(frozen=True)
class MelConfig:
    """How a waveform becomes a log-mel spectrogram (the defaults suit 16 kHz speech)."""

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 256  # samples per frame: the vocoder's upsampling factor
    win_length: int = 1024
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None  # None: sample_rate / 2
    log_floor: float = 1e-5  # log-mel = log(clamp(mel, log_floor)): silence stays finite

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels"):
            if getattr(self, name) < 1:
                raise GenlabError(f"mel {name} must be positive, got {getattr(self, name)}")
        if self.win_length > self.n_fft:
            raise GenlabError(
                f"mel win_length {self.win_length} is longer than n_fft {self.n_fft}; "
                "the window must fit in the FFT"
            )
        if not 0 <= self.f_min < self.top_frequency <= self.sample_rate / 2:
            raise GenlabError(
                f"mel frequencies need 0 <= f_min < f_max <= sample_rate / 2 = "
                f"{self.sample_rate / 2:g}, got f_min={self.f_min:g}, f_max={self.f_max}"
            )
        if self.log_floor <= 0:
            raise GenlabError(f"mel log_floor must be positive, got {self.log_floor}")

    @property
    def top_frequency(self) -> float:
        """``f_max``, or the Nyquist frequency when it is None."""
        return self.sample_rate / 2 if self.f_max is None else self.f_max

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MelConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise GenlabError(f"unknown mel config field '{unknown[0]}'")
        return cls(**d)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: one mel per 200/3 Hz up to 1 kHz (15 mels), then 27 mels per factor of
    6.4 in frequency (logarithmic)."""
    linear = hz / (200 / 3)
    logarithmic = 15 + np.log(np.maximum(hz, 1e-10) / 1000) / (math.log(6.4) / 27)
    return np.where(hz >= 1000, logarithmic, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    linear = mel * (200 / 3)
    logarithmic = 1000 * np.exp((math.log(6.4) / 27) * (mel - 15))
    return np.where(mel >= 15, logarithmic, linear)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> Tensor:
    """(n_mels, n_fft // 2 + 1) float32 triangles, equally spaced on Slaney's mel scale between
    ``f_min`` and ``f_max`` (default ``sample_rate / 2``), each scaled to unit area (Slaney norm).
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    bins = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    edges = _mel_to_hz(
        np.linspace(_hz_to_mel(np.float64(f_min)), _hz_to_mel(np.float64(f_max)), n_mels + 2)
    )
    widths = np.diff(edges)
    ramps = edges[:, None] - bins[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


def stft_magnitude(wav: Tensor, cfg: MelConfig) -> Tensor:
    """|STFT| (B, n_fft // 2 + 1, L // hop_length) of waveforms (L,) or (B, L).

    A periodic Hann window of ``win_length``, frames centred on multiples of the hop with
    reflect padding, and the last frame (centred on sample L) dropped, so that frame i covers the
    hop of samples the vocoder makes from it.
    """
    if wav.dim() not in (1, 2):
        raise GenlabError(
            f"expected a waveform (L,) or a batch (B, L), got shape {tuple(wav.shape)}"
        )
    wav = wav if wav.is_floating_point() else wav.float()
    length = wav.shape[-1]
    if length == 0 or length % cfg.hop_length:
        raise GenlabError(
            f"a clip of {length} samples is not a positive multiple of the hop "
            f"({cfg.hop_length}); cut clips to a multiple of the hop before the spectrogram"
        )
    if length <= cfg.n_fft // 2:
        raise GenlabError(
            f"a clip of {length} samples is too short for n_fft={cfg.n_fft}: reflect padding "
            f"needs more than {cfg.n_fft // 2} samples"
        )
    window = torch.hann_window(cfg.win_length, dtype=wav.dtype, device=wav.device)
    spec = torch.stft(
        wav.reshape(-1, length),
        cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    return spec.abs()[..., :-1]


@functools.lru_cache(maxsize=8)
def _cached_filterbank(cfg: MelConfig, device: torch.device) -> Tensor:
    fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max)
    return fb.to(device)


def log_mel(wav: Tensor, cfg: MelConfig) -> Tensor:
    """(B, n_mels, L // hop_length) natural-log mel spectrogram of waveforms (L,) or (B, L): the
    same function makes the vocoder's training input and its test-time conditioning."""
    magnitude = stft_magnitude(wav, cfg)
    fb = _cached_filterbank(cfg, magnitude.device).to(magnitude.dtype)
    return torch.log(torch.clamp(fb @ magnitude, min=cfg.log_floor))
