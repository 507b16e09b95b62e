"""Glow's network: an invertible map from images to Gaussian noise with a cheap log-determinant.

Kingma & Dhariwal, 2018, "Glow: Generative Flow with Invertible 1x1 Convolutions", built on
RealNVP (Dinh et al., 2017, "Density estimation using Real NVP"). Each level ``squeeze``s the
image (every 2x2 patch becomes 4 channels) and runs ``steps_per_scale`` steps of flow:
``ActNorm`` (a per-channel affine map whose first training batch sets it to give zero mean and
unit variance), ``InvConv1x1`` (a learned channel mixing, LU-decomposed so its log-determinant
is a sum of logs) and ``AffineCoupling`` (half the channels, through a small conv net, scale
and shift the other half). After every level but the last, half the channels leave as one of
the latents ``z``. Every map is exactly invertible, and ``forward`` returns the latents with the
log-determinant of the whole Jacobian; the likelihood and the loss are the method's
(``genlab.methods.flow.flow``). The coupling nets may read a caption vector
(:class:`~genlab.nets.caption_bag.CaptionBag`), which makes the flow conditional.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.distributed import all_reduce_sum
from genlab.core.errors import GenlabError, refuse_invalid
from genlab.nets.caption_bag import CaptionBag


@dataclass(frozen=True)
class FlowConfig:
    """Sizes of a Glow: ``num_scales`` levels (the image size must halve that often) of
    ``steps_per_scale`` steps whose coupling nets have ``hidden_channels``. Glow's CIFAR-10
    model: 3 levels of 32 steps, 512 hidden channels."""

    image_channels: int = 3
    image_size: int = 32
    num_scales: int = 3
    steps_per_scale: int = 8
    hidden_channels: int = 128
    cond_vocab: int = 0  # caption vocabulary size; 0 = unconditional
    cond_dim: int = 64  # the caption vector the coupling nets read

    def __post_init__(self) -> None:
        positive = ("image_channels", "image_size", "num_scales", "steps_per_scale")
        checks = {name: getattr(self, name) >= 1 for name in positive}
        checks["hidden_channels"] = self.hidden_channels >= 1
        checks["cond_vocab"] = self.cond_vocab >= 0
        checks["cond_dim"] = self.cond_dim >= 1
        refuse_invalid(self, checks, "flow setting")
        factor = 2**self.num_scales
        if self.image_size % factor:
            raise GenlabError(
                f"a flow of {self.num_scales} scales halves the image {self.num_scales} times: "
                f"image size {self.image_size} must be a multiple of {factor}"
            )

    @property
    def dims(self) -> int:
        """Numbers per image: the D of bits per dimension."""
        return self.image_channels * self.image_size**2

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FlowConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise GenlabError(f"unknown flow setting '{unknown[0]}'")
        return cls(**d)


def squeeze(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2x2 patch of a channel becomes 4 channels."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, 4 * c, h // 2, w // 2)


def unsqueeze(x: Tensor) -> Tensor:
    """The inverse of :func:`squeeze`: (B, 4C, H, W) -> (B, C, 2H, 2W)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c // 4, 2 * h, 2 * w)


class ActNorm(nn.Module):
    """``y = (x + bias) * exp(log_scale)`` per channel. The first batch seen in training mode
    sets bias and scale so that its output has zero mean and unit variance per channel (over all
    processes when distributed); the ``initialized`` buffer goes into checkpoints, so a loaded
    or resumed model is never initialised again."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set bias and scale from the batch ``x`` (B, C, H, W)."""
        count = torch.full_like(x[0, :, 0, 0], x.numel() / x.shape[1])
        stats = torch.stack([x.sum((0, 2, 3)), x.pow(2).sum((0, 2, 3)), count])
        total, squares, count = all_reduce_sum(stats)
        mean = total / count
        std = (squares / count - mean.pow(2)).clamp(min=0).sqrt()
        self.bias.copy_(-mean.view_as(self.bias))
        self.log_scale.copy_(-torch.log(std + 1e-6).view_as(self.log_scale))
        self.initialized.fill_(True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not self.initialized:
            self.initialize(x)
        logdet = x.shape[2] * x.shape[3] * self.log_scale.sum()
        return (x + self.bias) * self.log_scale.exp(), logdet.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return y * (-self.log_scale).exp() - self.bias


class InvConv1x1(nn.Module):
    """An invertible 1x1 convolution ``W = P L (U + diag(sign * exp(log_s)))`` (Glow, section
    3.2): P a fixed permutation, L unit lower and U strictly upper triangular, so
    ``log|det W| = sum(log_s)``. It starts as a random rotation."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        rotation = torch.linalg.qr(torch.randn(channels, channels))[0]
        perm, lower, upper = torch.linalg.lu(rotation)
        diag = upper.diagonal()
        self.register_buffer("perm", perm)
        self.register_buffer("sign", diag.sign())
        self.lower = nn.Parameter(lower.tril(-1))
        self.upper = nn.Parameter(upper.triu(1))
        self.log_s = nn.Parameter(diag.abs().log())

    def weight(self) -> Tensor:
        """The (C, C) matrix W."""
        eye = torch.eye(len(self.log_s), dtype=self.log_s.dtype, device=self.log_s.device)
        lower = self.lower.tril(-1) + eye
        upper = self.upper.triu(1) + torch.diag(self.sign * self.log_s.exp())
        return self.perm @ lower @ upper

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = x.shape[2] * x.shape[3] * self.log_s.sum()
        return F.conv2d(x, self.weight()[:, :, None, None]), logdet.expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return F.conv2d(y, torch.linalg.inv(self.weight())[:, :, None, None])


class AffineCoupling(nn.Module):
    """The second half of the channels is scaled and shifted by functions of the first half
    (and of the caption vector): ``y_b = x_b * exp(log_scale) + shift`` with
    ``log_scale = tanh(.)`` in (-1, 1) for stability. The net's last layer starts at zero, so
    the coupling starts as the identity (Glow, section 3.3)."""

    def __init__(self, channels: int, hidden: int, cond_dim: int = 0) -> None:
        super().__init__()
        self.half = channels // 2
        self.conv_in = nn.Conv2d(self.half, hidden, 3, padding=1)
        self.cond = nn.Linear(cond_dim, hidden) if cond_dim else None
        self.conv_mid = nn.Conv2d(hidden, hidden, 1)
        self.conv_out = nn.Conv2d(hidden, 2 * (channels - self.half), 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def scale_shift(self, xa: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(log_scale, shift)`` for the second half, from the first half ``xa``."""
        h = self.conv_in(xa)
        if self.cond is not None:
            h = h + self.cond(cond)[:, :, None, None]
        h = self.conv_mid(F.relu(h))
        raw, shift = self.conv_out(F.relu(h)).chunk(2, dim=1)
        return torch.tanh(raw), shift

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        xa, xb = x[:, : self.half], x[:, self.half :]
        log_scale, shift = self.scale_shift(xa, cond)
        y = torch.cat([xa, xb * log_scale.exp() + shift], dim=1)
        return y, log_scale.flatten(1).sum(1)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> Tensor:
        ya, yb = y[:, : self.half], y[:, self.half :]
        log_scale, shift = self.scale_shift(ya, cond)
        return torch.cat([ya, (yb - shift) * (-log_scale).exp()], dim=1)


class FlowStep(nn.Module):
    """One step of flow: actnorm, invertible 1x1 convolution, affine coupling."""

    def __init__(self, channels: int, hidden: int, cond_dim: int = 0) -> None:
        super().__init__()
        self.actnorm = ActNorm(channels)
        self.invconv = InvConv1x1(channels)
        self.coupling = AffineCoupling(channels, hidden, cond_dim)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, a = self.actnorm(x)
        x, b = self.invconv(x)
        x, c = self.coupling(x, cond)
        return x, a + b + c

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> Tensor:
        y = self.coupling.inverse(y, cond)
        return self.actnorm.inverse(self.invconv.inverse(y))


class Glow(nn.Module):
    """The multi-scale flow: ``forward(x (B, C, H, W), captions (B, L) | None) -> (zs,
    logdet (B,))`` with one latent per level (shapes :meth:`z_shapes`) and ``inverse(zs,
    captions) -> x``. It runs in the weights' precision even under autocast: an exact
    likelihood needs an exact inverse. A conditional flow reads missing captions as "no
    caption" (the learned null vector)."""

    def __init__(self, config: FlowConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.caption_bag = CaptionBag(c.cond_vocab, c.cond_dim) if c.cond_vocab else None
        cond_dim = c.cond_dim if c.cond_vocab else 0
        self.levels = nn.ModuleList()
        channels = c.image_channels
        for level in range(c.num_scales):
            channels *= 4
            steps = [
                FlowStep(channels, c.hidden_channels, cond_dim) for _ in range(c.steps_per_scale)
            ]
            self.levels.append(nn.ModuleList(steps))
            if level < c.num_scales - 1:
                channels //= 2  # the other half leaves as this level's latent

    def z_shapes(self) -> list[tuple[int, int, int]]:
        """The (C, H, W) of each level's latent, first level first."""
        c = self.config
        shapes = []
        channels, size = c.image_channels, c.image_size
        for level in range(c.num_scales):
            channels, size = 4 * channels, size // 2
            if level < c.num_scales - 1:
                channels //= 2
                shapes.append((channels, size, size))
        return [*shapes, (channels, size, size)]

    def condition(self, captions: Tensor | None, batch: int, device: torch.device) -> Tensor | None:
        """The caption vectors (B, cond_dim), or None for an unconditional flow."""
        if self.caption_bag is None:
            return None
        if captions is None:
            captions = torch.zeros(batch, 1, dtype=torch.long, device=device)
        if captions.shape[0] != batch:
            raise GenlabError(f"{captions.shape[0]} captions for {batch} images: give one each")
        return self.caption_bag(captions)

    def forward(self, x: Tensor, captions: Tensor | None = None) -> tuple[list[Tensor], Tensor]:
        c = self.config
        expected = (c.image_channels, c.image_size, c.image_size)
        if tuple(x.shape[1:]) != expected:
            raise GenlabError(
                f"this flow models images of shape {expected}, got {tuple(x.shape[1:])}"
            )
        with torch.autocast(x.device.type, enabled=False):
            cond = self.condition(captions, x.shape[0], x.device)
            logdet = x.new_zeros(x.shape[0])
            zs = []
            h = x
            for level, steps in enumerate(self.levels):
                h = squeeze(h)
                for step in steps:
                    h, step_logdet = step(h, cond)
                    logdet = logdet + step_logdet
                if level < len(self.levels) - 1:
                    h, z = h.chunk(2, dim=1)
                    zs.append(z)
            return [*zs, h], logdet

    def inverse(self, zs: list[Tensor], captions: Tensor | None = None) -> Tensor:
        if len(zs) != len(self.levels):
            raise GenlabError(f"this flow has {len(self.levels)} latents per image, got {len(zs)}")
        h = zs[-1]
        with torch.autocast(h.device.type, enabled=False):
            cond = self.condition(captions, h.shape[0], h.device)
            for level in reversed(range(len(self.levels))):
                if level < len(self.levels) - 1:
                    h = torch.cat([h, zs[level]], dim=1)
                for step in reversed(self.levels[level]):
                    h = step.inverse(h, cond)
                h = unsqueeze(h)
            return h
