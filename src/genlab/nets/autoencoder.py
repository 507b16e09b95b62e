"""A convolutional encoder and decoder: the two halves of the VAE and of the VQ-VAE.

The encoder maps an image (B, C, H, W) to a latent grid (B, out_channels, H / f, W / f) with
f = 2 ** (levels - 1); the decoder maps a latent grid back to an image. Both are stacks of
residual blocks with group normalisation and SiLU (as in DDPM's UNet, Ho et al., 2020, and the
autoencoders of VQGAN, Esser et al., 2021, and latent diffusion, Rombach et al., 2022), strided
convolutions down and nearest-neighbour upsampling with a convolution up. What the latent means
(a Gaussian posterior, the input of a vector quantizer) is the business of the method using them.

The decoder may read a caption (``cond_vocab > 0``): :class:`~genlab.nets.caption_bag.CaptionBag`
turns it into one vector, and every decoder block scales and shifts its normalised features by a
linear function of that vector (FiLM, Perez et al., 2018). A missing caption (``None``) is the
empty caption, the bag's learned null vector.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.errors import GenlabError
from genlab.nets.caption_bag import CaptionBag
from genlab.nets.unet_blocks import Upsample

C = TypeVar("C", bound="AutoencoderConfig")


@dataclass(frozen=True)
class AutoencoderConfig:
    """Sizes of the encoder and decoder. Level i has ``base_channels * channel_mults[i]``
    channels and ``num_res_blocks`` residual blocks; every level but the last halves the
    resolution. ``latent_channels`` is the decoder's input (the VQ-VAE's code dimension).
    The VAE's and the VQ-VAE's configs extend this one."""

    image_channels: int = 3
    image_size: int = 32
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    latent_channels: int = 4
    norm_groups: int = 8
    cond_vocab: int = 0  # caption vocabulary size; 0 = unconditional
    cond_dim: int = 64  # size of the caption vector

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mults", tuple(self.channel_mults))  # JSON gives lists
        sizes = ("image_channels", "image_size", "base_channels", "num_res_blocks")
        for name in (*sizes, "latent_channels", "norm_groups", "cond_dim"):
            if getattr(self, name) < 1:
                raise GenlabError(f"autoencoder {name} must be positive, got {getattr(self, name)}")
        if not self.channel_mults or min(self.channel_mults) < 1:
            raise GenlabError(f"channel_mults must be positive integers, got {self.channel_mults}")
        if self.cond_vocab < 0:
            raise GenlabError(
                f"cond_vocab must be 0 (unconditional) or positive, got {self.cond_vocab}"
            )
        if self.image_size % self.downsample:
            raise GenlabError(
                f"image size {self.image_size} is not a multiple of {self.downsample}, which an "
                f"autoencoder of {len(self.channel_mults)} levels needs"
            )
        for ch in self.level_channels:
            if ch % self.norm_groups:
                raise GenlabError(
                    f"{ch} channels do not split into {self.norm_groups} norm groups; pick "
                    "base_channels as a multiple of norm_groups"
                )

    @property
    def level_channels(self) -> list[int]:
        return [self.base_channels * m for m in self.channel_mults]

    @property
    def downsample(self) -> int:
        """How many image pixels one latent position covers along each side."""
        return 2 ** (len(self.channel_mults) - 1)

    @property
    def latent_size(self) -> int:
        """The latent grid's side: ``image_size / downsample``."""
        return self.image_size // self.downsample

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any]) -> C:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise GenlabError(f"unknown autoencoder setting '{unknown[0]}'")
        return cls(**d)


class ResBlock(nn.Module):
    """GroupNorm, SiLU, conv; GroupNorm (then FiLM by ``cond`` if ``cond_dim``), SiLU, conv;
    plus the input (through a 1x1 convolution when the channel count changes)."""

    def __init__(self, c_in: int, c_out: int, groups: int, cond_dim: int = 0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.film = nn.Linear(cond_dim, 2 * c_out) if cond_dim else None
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None:
            scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


def _out(c_in: int, c_out: int, groups: int) -> nn.Sequential:
    """The last layer of either half: GroupNorm, SiLU, a 3x3 convolution."""
    return nn.Sequential(
        nn.GroupNorm(groups, c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1)
    )


class Encoder(nn.Module):
    """Images (B, image_channels, H, W) to features (B, out_channels, H / f, W / f)."""

    def __init__(self, config: AutoencoderConfig, out_channels: int) -> None:
        super().__init__()
        c, chans = config, config.level_channels
        self.conv_in = nn.Conv2d(c.image_channels, chans[0], 3, padding=1)
        blocks: list[nn.Module] = []
        ch = chans[0]
        for i, level_ch in enumerate(chans):
            for _ in range(c.num_res_blocks):
                blocks.append(ResBlock(ch, level_ch, c.norm_groups))
                ch = level_ch
            if i < len(chans) - 1:
                blocks.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        blocks.append(ResBlock(ch, ch, c.norm_groups))
        self.blocks = nn.Sequential(*blocks)
        self.out = _out(ch, out_channels, c.norm_groups)

    def forward(self, images: Tensor) -> Tensor:
        return self.out(self.blocks(self.conv_in(images)))


class Decoder(nn.Module):
    """Latents (B, latent_channels, h, w) and captions (B, L) (or None) to images
    (B, image_channels, h * f, w * f), unbounded (the method decides the output's meaning)."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        c, chans = config, config.level_channels[::-1]
        self.config = config
        cond_dim = c.cond_dim if c.cond_vocab else 0
        self.caption = CaptionBag(c.cond_vocab, c.cond_dim) if c.cond_vocab else None
        self.conv_in = nn.Conv2d(c.latent_channels, chans[0], 3, padding=1)
        blocks: list[nn.Module] = [ResBlock(chans[0], chans[0], c.norm_groups, cond_dim)]
        ch = chans[0]
        for i, level_ch in enumerate(chans):
            for _ in range(c.num_res_blocks):
                blocks.append(ResBlock(ch, level_ch, c.norm_groups, cond_dim))
                ch = level_ch
            if i < len(chans) - 1:
                blocks.append(Upsample(ch))
        self.blocks = nn.ModuleList(blocks)
        self.out = _out(ch, c.image_channels, c.norm_groups)

    def forward(self, latents: Tensor, captions: Tensor | None = None) -> Tensor:
        cond = None
        if self.caption is not None:
            if captions is None:  # no caption: the learned null vector
                captions = torch.zeros(len(latents), 1, dtype=torch.long, device=latents.device)
            cond = self.caption(captions)
        h = self.conv_in(latents)
        for block in self.blocks:
            h = block(h, cond) if isinstance(block, ResBlock) else block(h)
        return self.out(h)
