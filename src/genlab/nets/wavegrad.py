"""WaveGrad's network: a mel-spectrogram upsampled to a waveform, modulated by the noisy audio.

Chen et al., 2021, "WaveGrad: Estimating Gradients for Waveform Generation" (figures 3-5). Two
paths meet at every resolution. The upsampling path turns the mel frames into one value per
audio sample through ``UBlock``s (each multiplies the length by its factor; the factors multiply
to the hop length). The downsampling path reads the noisy waveform y_n through ``DBlock``s, and
at each resolution a ``FiLM`` module turns those features and the noise level into a scale and
a shift that modulate the matching ``UBlock`` (feature-wise linear modulation, Perez et al.,
2018). The noise level is the continuous ``sqrt(abar)``, not a step index, so one network
serves any number of refinement steps. The output is the network's estimate of the noise in
y_n; this module knows nothing of schedules or training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.errors import GenlabError

LEAK = 0.2  # slope of every leaky ReLU, as in the paper's implementation


@dataclass(frozen=True)
class WaveGradConfig:
    """Sizes of the two paths. ``factors`` upsample the mel frames, first to last, and multiply
    to the hop length; ``up_channels`` are the UBlocks' outputs and ``down_channels`` the
    downsampling path's features from the waveform's resolution up (one per UBlock, read in
    reverse). The paper's base model (hop 300): factors (5, 5, 3, 2, 2), mel 768, up (512, 512,
    256, 128, 128), down (32, 128, 128, 256, 512)."""

    n_mels: int = 80
    factors: tuple[int, ...] = (4, 4, 4, 2, 2)
    mel_channels: int = 128
    up_channels: tuple[int, ...] = (128, 128, 64, 32, 32)
    down_channels: tuple[int, ...] = (16, 32, 64, 64, 128)
    noise_scale: float = 5000.0  # the noise level is embedded as sinusoids of scale * level

    def __post_init__(self) -> None:
        n = len(self.factors)
        if n == 0 or len(self.up_channels) != n or len(self.down_channels) != n:
            raise GenlabError(
                f"WaveGrad needs as many up_channels and down_channels as factors ({n}); got "
                f"{len(self.up_channels)} and {len(self.down_channels)}"
            )
        sizes = (self.n_mels, self.mel_channels, *self.factors)
        if min(sizes + self.up_channels + self.down_channels) < 1:
            raise GenlabError("WaveGrad sizes and factors must be positive")
        if any(c % 2 for c in self.down_channels):
            raise GenlabError("down_channels must be even (half sines, half cosines of the level)")

    @property
    def hop_length(self) -> int:
        """Audio samples per mel frame: the product of the upsampling factors."""
        return math.prod(self.factors)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WaveGradConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise GenlabError(f"unknown WaveGrad setting '{unknown[0]}'")
        tuples = ("factors", "up_channels", "down_channels")
        return cls(**{k: tuple(v) if k in tuples else v for k, v in d.items()})


def noise_level_embedding(level: Tensor, dim: int, scale: float = 5000.0) -> Tensor:
    """(B,) noise levels in [0, 1] -> (B, dim) sinusoids of ``scale * level``, the Transformer's
    position encoding read at a continuous position (WaveGrad, section 3.2)."""
    half = dim // 2
    freqs = torch.exp(-math.log(1e4) * torch.arange(half, device=level.device) / half)
    angle = scale * level.float()[:, None] * freqs[None, :]
    return torch.cat([angle.sin(), angle.cos()], dim=1)


def _conv(c_in: int, c_out: int, dilation: int = 1) -> nn.Conv1d:
    """A length-preserving convolution of width 3."""
    return nn.Conv1d(c_in, c_out, 3, padding=dilation, dilation=dilation)


class FiLM(nn.Module):
    """Scale and shift for one UBlock from the waveform features and the noise level."""

    def __init__(self, c_in: int, c_out: int, noise_scale: float) -> None:
        super().__init__()
        self.noise_scale = noise_scale
        self.input = _conv(c_in, c_in)
        self.shift = _conv(c_in, c_out)
        self.scale = _conv(c_in, c_out)

    def forward(self, x: Tensor, level: Tensor) -> tuple[Tensor, Tensor]:
        h = F.leaky_relu(self.input(x), LEAK)
        h = h + noise_level_embedding(level, h.shape[1], self.noise_scale)[:, :, None]
        return self.shift(h), self.scale(h)


class UBlock(nn.Module):
    """Upsample by ``factor`` (nearest), four dilated convolutions, FiLM before three of them,
    two residual connections (WaveGrad, figure 3)."""

    def __init__(self, c_in: int, c_out: int, factor: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.factor = factor
        self.residual = nn.Conv1d(c_in, c_out, 1)
        self.convs = nn.ModuleList(
            [_conv(c_in, c_out, dilations[0])] + [_conv(c_out, c_out, d) for d in dilations[1:]]
        )

    def forward(self, x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
        up = F.interpolate(x, scale_factor=self.factor, mode="nearest")
        h = self.convs[0](F.interpolate(F.leaky_relu(x, LEAK), scale_factor=self.factor))
        h = self.convs[1](F.leaky_relu(scale * h + shift, LEAK))
        x = h + self.residual(up)
        h = self.convs[2](F.leaky_relu(scale * x + shift, LEAK))
        h = self.convs[3](F.leaky_relu(scale * h + shift, LEAK))
        return x + h


class DBlock(nn.Module):
    """Downsample by ``factor`` (a strided convolution), three dilated convolutions, a
    residual connection (WaveGrad, figure 4)."""

    def __init__(self, c_in: int, c_out: int, factor: int) -> None:
        super().__init__()
        self.residual = nn.Conv1d(c_in, c_out, 1)
        self.down = nn.Conv1d(c_in, c_in, factor, stride=factor)
        self.convs = nn.ModuleList(
            [_conv(c_in, c_out, 1), _conv(c_out, c_out, 2), _conv(c_out, c_out, 4)]
        )
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        residual = self.residual(F.avg_pool1d(x, self.factor))
        h = self.down(x)
        for conv in self.convs:
            h = conv(F.leaky_relu(h, LEAK))
        return h + residual


class WaveGrad(nn.Module):
    """Noise estimate for a noisy waveform given its mel-spectrogram and its noise level:
    ``forward(audio (B, L), level (B,), mel (B, n_mels, L / hop)) -> (B, L)``."""

    def __init__(self, config: WaveGradConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        n = len(c.factors)
        self.mel_in = _conv(c.n_mels, c.mel_channels)
        ins = (c.mel_channels, *c.up_channels[:-1])
        self.ups = nn.ModuleList(
            UBlock(c_in, c_out, f, (1, 2, 1, 2) if i < 2 else (1, 2, 4, 8))
            for i, (c_in, c_out, f) in enumerate(zip(ins, c.up_channels, c.factors, strict=True))
        )
        # the downsampling path, from the waveform's resolution to the first UBlock's
        self.audio_in = nn.Conv1d(1, c.down_channels[0], 5, padding=2)
        down_factors = c.factors[::-1][:-1]
        self.downs = nn.ModuleList(
            DBlock(c.down_channels[i], c.down_channels[i + 1], down_factors[i])
            for i in range(n - 1)
        )
        # FiLM i modulates UBlock i with the features at its output's resolution
        self.films = nn.ModuleList(
            FiLM(c.down_channels[n - 1 - i], c.up_channels[i], c.noise_scale) for i in range(n)
        )
        self.out = _conv(c.up_channels[-1], 1)

    def forward(self, audio: Tensor, level: Tensor, mel: Tensor) -> Tensor:
        c = self.config
        if audio.shape[-1] != mel.shape[-1] * c.hop_length:
            raise GenlabError(
                f"{audio.shape[-1]} audio samples for {mel.shape[-1]} mel frames: the "
                f"network needs {c.hop_length} samples (its hop length) per frame"
            )
        level = level.expand(audio.shape[0]) if level.ndim == 0 else level
        h = self.audio_in(audio[:, None, :])
        features = [h]
        for down in self.downs:
            h = down(h)
            features.append(h)
        x = self.mel_in(mel)
        for up, film, feature in zip(self.ups, self.films, reversed(features), strict=True):
            x = up(x, *film(feature, level))
        return self.out(F.leaky_relu(x, LEAK))[:, 0, :]
