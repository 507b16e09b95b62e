"""Latent diffusion: denoise an autoencoder's latents instead of pixels, decode at the end.

Rombach et al., 2022 ("High-Resolution Image Synthesis with Latent Diffusion Models", Stable
Diffusion) split text-to-image in two: an autoencoder trained on images alone compresses each
image to a small latent grid (there a VAE with a tiny KL weight, 8x fewer pixels a side), and the
diffusion model learns the distribution of those latents given the caption. The UNet then works
on 64 positions where pixel diffusion works on 1,024 (32x32 images, 4x downsampling), so each
step costs a fraction, and the decoder restores the detail the latent does not spend capacity on.

:class:`LatentSpace` is that autoencoder, frozen: ``encode`` is the posterior mean times
``scale`` and ``decode`` divides by it. Stable Diffusion multiplies its latents by 0.18215 so
that they have about unit variance, the variance the noise schedule assumes of its data; here the
factor is measured on the training images (:func:`unit_variance_scale`), as that constant was.
The mean rather than a posterior sample is the training target: with the small KL weight such an
autoencoder is trained with, the posterior's spread is far below the data's, and the mean makes
the encoded data set a fixed tensor that is computed once. The autoencoder's weights are part of
the diffusion run (a self-contained folder of a few MB) and never train with it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from genlab.core.ema import EMA_FILE
from genlab.core.errors import GenlabError
from genlab.core.registry import load
from genlab.data.images import from_uint8
from genlab.methods.vae import vae

ENCODE_BATCH = 256  # images encoded at once when a data set goes to latents


@dataclass(frozen=True)
class LatentConfig:
    """The frozen autoencoder and the factor that gives its latents unit variance."""

    vae: vae.VAEConfig
    scale: float

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise GenlabError(f"the latent scale must be positive, got {self.scale}")
        if self.vae.cond_vocab:
            raise GenlabError(
                "a latent space's decoder must not read captions: train the autoencoder on "
                "images alone (genlab image train --method vae --no-captions)"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"vae": self.vae.to_dict(), "scale": self.scale}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LatentConfig:
        if set(d) != {"vae", "scale"}:
            raise GenlabError("a latent config has two fields, vae and scale")
        return cls(vae.VAEConfig.from_dict(d["vae"]), float(d["scale"]))


class LatentSpace(nn.Module):
    """Images (B, C, H, W) in [-1, 1] <-> latents (B, latent_channels, h, w) of unit variance."""

    def __init__(self, config: LatentConfig) -> None:
        super().__init__()
        self.config = config
        self.vae = vae.VAE(config.vae)
        self.vae.requires_grad_(False)

    @property
    def shape(self) -> tuple[int, int, int]:
        """A latent's shape: what the diffusion model generates."""
        return self.vae.latent_shape

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        return self.vae.encode(images)[0] * self.config.scale

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        return self.vae.decode(latents / self.config.scale).clamp(-1, 1)


def open_autoencoder(run: str | os.PathLike, device: str | torch.device = "cpu") -> vae.VAE:
    """The weight average of a VAE run (what it samples from), which must not read captions."""
    model = load(run, vae.KIND, device, weights=EMA_FILE).model
    if model.config.cond_vocab:  # type: ignore[union-attr]
        raise GenlabError(
            f"{run} is a caption-conditioned VAE; latent diffusion needs an autoencoder trained on "
            "images alone: genlab image train --method vae --no-captions"
        )
    return model  # type: ignore[return-value]


@torch.no_grad()
def encode_pixels(model: vae.VAE, pixels: Tensor, scale: float = 1.0) -> Tensor:
    """uint8 images (N, C, H, W) to ``scale`` times their posterior means, in batches."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat(
        [
            model.encode(from_uint8(batch).to(device))[0].cpu() * scale
            for batch in pixels.split(ENCODE_BATCH)
        ]
    )


def unit_variance_scale(latents: Tensor) -> float:
    """The factor that brings latents to unit standard deviation (Stable Diffusion's 0.18215)."""
    std = float(latents.float().std())
    if not std > 0:
        raise GenlabError("the autoencoder maps every image to the same latent: retrain it")
    return 1.0 / std
