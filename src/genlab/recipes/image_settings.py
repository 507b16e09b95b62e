"""The settings of the image families besides diffusion (``genlab image train --method ...``).

One dataclass, a field of the image recipe's config, so that ``genlab image train`` generates
every family's options from one place; each family reads its own fields and ignores the rest.
The sizes default to networks that train in minutes on a laptop CPU at 32x32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class FamilySettings:
    """VAE, VQ-VAE, flow, GAN, image GPT and MaskGIT settings (each family reads its own)."""

    width: int = 32  # conv nets: base channels; token models: the transformer's width
    depth: int = 4  # token models: transformer layers; flow: steps per scale
    latent_channels: int = 4  # vae: channels of the latent grid; vq: the code vectors' size
    downsample: int = 4  # vae, vq: the latent grid is the image side / this (a power of 2)
    kl_weight: float = 1.0  # vae: the KL term's weight (1: the ELBO)
    free_bits: float = 0.0  # vae: nats per latent channel the KL is not pushed below
    captions: bool = True  # vae: the decoder reads the caption (false: for latent diffusion)
    num_codes: int = 256  # vq: codebook size
    commitment: float = 0.25  # vq: weight of the commitment loss
    gan_loss: Literal["hinge", "non-saturating"] = "hinge"  # gan: the adversarial loss
    r1_gamma: float = 1.0  # gan: R1 penalty weight on real images (0: off)
    z_dim: int = 64  # gan: noise size
    gan_output: Literal["tanh", "linear"] = "tanh"  # gan: the generator's last activation
    instance_noise: float = 0.0  # gan: std of Gaussian noise on every image D sees (0: off)
    tokenizer: str = "palette"  # igpt, maskgit: "palette" (pixel colours) or a vq run folder
    palette_colors: int = 16  # igpt, maskgit with the palette: colours
    palette_grid: int = 16  # igpt, maskgit with the palette: the token grid's side
    net: dict[str, Any] = field(default_factory=dict)  # overrides of the family's net config
