"""The VQ-VAE: images to a grid of discrete codes and back, the tokenizer of image token models.

van den Oord et al., 2017, "Neural Discrete Representation Learning". The encoder's features go
through a 1x1 convolution to the code dimension (``latent_channels``; VQGAN's
``quant_conv``, Esser et al., 2021), each position is replaced by its nearest code of an EMA
codebook (:class:`~genlab.nets.vector_quantizer.VectorQuantizer`), and the decoder rebuilds the
image. The loss is the reconstruction's mean squared error plus beta times the commitment loss;
the codebook learns from its moving averages, not from gradients. (With a fixed-variance
Gaussian likelihood and a uniform prior over the codes, whose KL is the constant log K, this is
the ELBO up to scale and constants.) The paper then fits an autoregressive prior over the codes,
which is what image GPT and MaskGIT do with :func:`encode` and :func:`decode` here
(``model.config.num_codes`` tokens on a ``model.grid`` of positions). A tokenizer is normally
unconditional (``cond_vocab = 0``): a caption-conditioned decoder decodes codes without a caption
through its null vector, which it learns only if training drops captions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.errors import GenlabError
from genlab.core.registry import Kind, register
from genlab.nets.autoencoder import AutoencoderConfig, Decoder, Encoder
from genlab.nets.vector_quantizer import VectorQuantizer

KIND = "vq"


@dataclass(frozen=True)
class VQConfig(AutoencoderConfig):
    """The encoder and decoder (codes of ``latent_channels`` numbers) and the codebook:
    ``num_codes`` codes, EMA ``decay`` and smoothing ``eps``, dead codes restarted below an
    averaged count of ``restart_below`` (0 = never; see ``VectorQuantizer``)."""

    num_codes: int = 512
    decay: float = 0.99
    eps: float = 1e-5
    restart_below: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_codes < 2:
            raise GenlabError(f"a codebook needs at least 2 codes, got num_codes={self.num_codes}")
        if not 0.0 <= self.decay < 1.0 or self.eps <= 0 or self.restart_below < 0:
            raise GenlabError("the codebook needs 0 <= decay < 1, eps > 0 and restart_below >= 0")


class VQOutput(NamedTuple):
    """One pass through the VQ-VAE."""

    recon: Tensor  # (B, C, H, W), unbounded
    codes: Tensor  # (B, h, w) long
    commitment: Tensor  # scalar
    perplexity: Tensor  # scalar: of the batch's code frequencies
    usage: Tensor  # scalar: fraction of the codebook the batch used


class VQVAE(nn.Module):
    """``forward(images, captions=None)`` encodes, quantizes (refitting the codebook in
    training mode) and decodes."""

    def __init__(self, config: VQConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.latent_channels
        self.encoder = Encoder(config, dim)
        self.pre_quant = nn.Conv2d(dim, dim, 1)
        self.quantizer = VectorQuantizer(
            config.num_codes, dim, config.decay, config.eps, config.restart_below
        )
        self.decoder = Decoder(config)

    @property
    def grid(self) -> tuple[int, int]:
        """The code grid (h, w) of one image."""
        return (self.config.latent_size, self.config.latent_size)

    def encode(self, images: Tensor) -> Tensor:
        """Codes (B, h, w), long; the codebook is not refit."""
        return self.quantizer.nearest(self.pre_quant(self.encoder(images)))

    def decode(self, codes: Tensor, captions: Tensor | None = None) -> Tensor:
        """The decoder's output (B, C, H, W), unbounded, for codes (B, h, w)."""
        return self.decoder(self.quantizer.lookup(codes), captions)

    def forward(self, images: Tensor, captions: Tensor | None = None) -> VQOutput:
        q = self.quantizer(self.pre_quant(self.encoder(images)))
        recon = self.decoder(q.quantized, captions)
        return VQOutput(recon, q.codes, q.commitment, q.perplexity, q.usage)


class VQLoss:
    """The trainer's step function on ``batch = (images, captions)``: mean squared error of the
    reconstruction plus ``commitment`` (beta) times the commitment loss. Metrics: ``recon``,
    ``commitment``, ``perplexity`` and ``usage`` (of the batch's codes)."""

    def __init__(self, commitment: float = 0.25) -> None:
        if commitment < 0:
            raise GenlabError(f"the commitment weight must be >= 0, got {commitment}")
        self.commitment = commitment

    def __call__(
        self, model: nn.Module, batch: tuple[Tensor, Tensor | None]
    ) -> tuple[Tensor, dict]:
        images, captions = batch
        out = model(images, captions)
        recon = F.mse_loss(out.recon.float(), images.float())
        loss = recon + self.commitment * out.commitment
        metrics = {
            "recon": recon.detach(),
            "commitment": out.commitment.detach(),
            "perplexity": out.perplexity,
            "usage": out.usage,
            "samples": images.shape[0],
        }
        return loss, metrics


@torch.no_grad()
def encode(model: VQVAE, images: Tensor) -> Tensor:
    """Images (B, C, H, W) in [-1, 1] to codes (B, h, w), long, in [0, num_codes)."""
    return model.encode(images)


@torch.no_grad()
def decode(model: VQVAE, codes: Tensor, captions: Tensor | None = None) -> Tensor:
    """Codes (B, h, w) to images (B, C, H, W) in [-1, 1]."""
    if codes.dim() != 3 or tuple(codes.shape[1:]) != model.grid:
        raise GenlabError(
            f"expected codes (B, {model.grid[0]}, {model.grid[1]}), got {tuple(codes.shape)}"
        )
    if codes.numel() and not 0 <= int(codes.min()) <= int(codes.max()) < model.config.num_codes:
        raise GenlabError(f"codes must lie in [0, {model.config.num_codes}), the codebook's size")
    return model.decode(codes, captions).clamp(-1, 1)


@torch.no_grad()
def codebook_usage(model: VQVAE, images: Tensor, batch_size: int = 256) -> dict[str, float]:
    """How the codebook serves ``images``: ``usage`` (fraction of the codes used at least once)
    and ``perplexity`` (exp of the entropy of the code frequencies; num_codes at most)."""
    counts = torch.zeros(model.config.num_codes, dtype=torch.long)
    for start in range(0, len(images), batch_size):
        codes = model.encode(images[start : start + batch_size]).flatten().cpu()
        counts += torch.bincount(codes, minlength=model.config.num_codes)
    p = counts.double() / counts.sum().clamp(min=1)
    perplexity = torch.exp(-torch.xlogy(p, p).sum())
    return {"usage": float((counts > 0).double().mean()), "perplexity": float(perplexity)}


register(Kind(KIND, VQConfig, VQVAE))
