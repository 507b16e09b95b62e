"""A DCGAN generator and a projection discriminator, held together as one module.

The generator is DCGAN's (Radford et al., 2016, "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks"): the latent z (concatenated with the caption's
vector from :class:`~genlab.nets.caption_bag.CaptionBag`, as in conditional GANs, Mirza &
Osindero, 2014) is projected to a 4x4 map, each transposed convolution doubles the resolution
and halves the channels, with normalisation and ReLU, and a last one draws the image through
tanh. BatchNorm is the paper's choice; GroupNorm (the default) normalises each image alone, so a
sample does not depend on the others of its batch and an average of the weights (EMA) needs no
recomputed statistics.

The discriminator mirrors it with strided convolutions and LeakyReLU and no normalisation, so
every image's score depends on that image only, as the R1 penalty on its gradient assumes;
spectral normalisation (Miyato et al., 2018) of its layers is optional. A caption enters by
projection (Miyato & Koyama, 2018, "cGANs with Projection Discriminator"): the logit is
``linear(phi(x)) + <embed(caption), phi(x)>`` with ``phi(x)`` the flattened 4x4 features.

:class:`GAN` holds both, and its ``forward(z, captions, real)`` generates and scores in one call
so that a training step calls the (DDP-wrapped) model itself. Losses and sampling live in
``genlab.methods.gan``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from genlab.core.errors import GenlabError
from genlab.nets.caption_bag import CaptionBag

LEAK = 0.2  # slope of the discriminator's leaky ReLUs (DCGAN)
INIT_STD = 0.02  # DCGAN: every weight from N(0, 0.02)
NORMS = ("group", "batch")
OUTPUTS = ("tanh", "linear")
SIZES = (8, 16, 32, 64)


@dataclass(frozen=True)
class GANConfig:
    """Image shape, latent size and widths. ``base_channels`` is the width next to the image;
    each halving of the resolution doubles it (DCGAN at 64x64: 64, 128, 256, 512 at 4x4)."""

    image_channels: int = 3
    image_size: int = 32
    z_dim: int = 64
    base_channels: int = 32
    cond_vocab: int = 0  # caption vocabulary size; 0: unconditional
    cond_dim: int = 32  # the caption vector concatenated to z
    norm: str = "group"  # the generator's: group | batch (DCGAN's)
    spectral_norm: bool = False  # spectral normalisation of the discriminator's layers
    output: str = "tanh"  # the generator's last activation: tanh (DCGAN) | linear (clamped later)

    def __post_init__(self) -> None:
        if self.image_size not in SIZES:
            raise GenlabError(
                f"a GAN draws images of {', '.join(map(str, SIZES))} pixels, not {self.image_size}"
            )
        if self.norm not in NORMS:
            raise GenlabError(f"unknown GAN norm '{self.norm}': use {' or '.join(NORMS)}")
        if self.output not in OUTPUTS:
            raise GenlabError(f"unknown GAN output '{self.output}': use {' or '.join(OUTPUTS)}")
        sizes = (self.image_channels, self.z_dim, self.base_channels, self.cond_dim)
        if min(sizes) < 1 or self.cond_vocab < 0:
            raise GenlabError("GAN sizes must be positive (cond_vocab may be 0: unconditional)")

    def channels(self) -> list[int]:
        """The width at 4x4, 8x8, ..., up to half the image size."""
        doublings = int(math.log2(self.image_size)) - 2
        return [self.base_channels * self.image_size // (8 * 2**i) for i in range(doublings)]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GANConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise GenlabError(f"unknown GAN setting '{unknown[0]}'")
        return cls(**d)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(math.gcd(channels, 32), channels)


def _dcgan_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, INIT_STD)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.normal_(module.weight, 1.0, INIT_STD)
        nn.init.zeros_(module.bias)


def _null_captions(captions: Tensor | None, n: int, device: torch.device) -> Tensor:
    """``captions``, or ``n`` rows of padding ("no caption") when there are none."""
    return torch.zeros(n, 1, dtype=torch.long, device=device) if captions is None else captions


class Generator(nn.Module):
    """``forward(z (B, z_dim), captions (B, L) | None) -> images (B, C, H, W)``, in [-1, 1]
    through tanh. On images that are mostly exact white (+1) tanh saturates and the generator
    gets almost no gradient where it must draw (the image-families GAN collapsed so); a linear
    output avoids it and sampling clamps to [-1, 1] (StyleGAN's generator is linear too)."""

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        self.config = c = config
        widths = c.channels()
        self.captions = CaptionBag(c.cond_vocab, c.cond_dim) if c.cond_vocab else None
        z_in = c.z_dim + (c.cond_dim if c.cond_vocab else 0)
        self.project = nn.Sequential(
            nn.Linear(z_in, widths[0] * 16, bias=False),
            nn.Unflatten(1, (widths[0], 4, 4)),
            _norm(c.norm, widths[0]),
            nn.ReLU(),
        )
        ups: list[nn.Module] = []
        for c_in, c_out in zip(widths, widths[1:], strict=False):
            ups += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), _norm(c.norm, c_out)]
            ups.append(nn.ReLU())
        self.ups = nn.Sequential(*ups)
        self.to_image = nn.ConvTranspose2d(widths[-1], c.image_channels, 4, 2, 1)
        self.apply(_dcgan_init)

    def forward(self, z: Tensor, captions: Tensor | None = None) -> Tensor:
        if self.captions is not None:
            captions = _null_captions(captions, z.shape[0], z.device)
            z = torch.cat([z, self.captions(captions).to(z.dtype)], dim=1)
        x = self.to_image(self.ups(self.project(z)))
        return torch.tanh(x) if self.config.output == "tanh" else x


class Discriminator(nn.Module):
    """``forward(images (B, C, H, W), captions (B, L) | None) -> logits (B,)``: high for real."""

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        self.config = c = config
        widths = c.channels()[::-1]  # half the image size down to 4x4
        layers: list[nn.Module] = []
        for c_in, c_out in zip((c.image_channels, *widths), widths, strict=False):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(LEAK)]
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.out = nn.Linear(widths[-1] * 16, 1)
        self.captions = CaptionBag(c.cond_vocab, widths[-1] * 16) if c.cond_vocab else None
        self.apply(_dcgan_init)
        if c.spectral_norm:
            for layer in [*self.features, self.out]:
                if isinstance(layer, (nn.Conv2d, nn.Linear)):
                    spectral_norm(layer)

    def forward(self, images: Tensor, captions: Tensor | None = None) -> Tensor:
        phi = self.features(images)
        logits = self.out(phi)[:, 0]
        if self.captions is not None:
            captions = _null_captions(captions, images.shape[0], images.device)
            logits = logits + (self.captions(captions).to(phi.dtype) * phi).sum(1)
        return logits


class GANOutput(NamedTuple):
    """One pass of :class:`GAN`: the generated images and the discriminator's logits."""

    fake: Tensor  # (B, C, H, W)
    fake_logits: Tensor  # (B,)
    real_logits: Tensor | None  # (B,) when real images were given


class GAN(nn.Module):
    """The ``generator`` and the ``discriminator`` (one optimizer each, by these names)."""

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        self.config = config
        self.generator = Generator(config)
        self.discriminator = Discriminator(config)

    def forward(
        self,
        z: Tensor,
        captions: Tensor | None = None,
        real: Tensor | None = None,
        instance_noise: float = 0.0,
    ) -> GANOutput:
        """Generate from ``z`` and score the fakes, and ``real`` images if given, under the same
        captions, in one discriminator pass (rows are scored independently). The discriminator
        sees its images plus Gaussian noise of std ``instance_noise`` (drawn from torch's global
        generator; 0: none)."""
        fake = self.generator(z, captions)
        both = fake if real is None else torch.cat([fake, real.to(fake.dtype)])
        if instance_noise:
            both = both + instance_noise * torch.randn_like(both)
        if captions is not None and real is not None:
            captions = torch.cat([captions, captions])
        logits = self.discriminator(both, captions)
        if real is None:
            return GANOutput(fake, logits, None)
        return GANOutput(fake, logits[: len(fake)], logits[len(fake) :])
