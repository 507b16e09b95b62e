"""The variational autoencoder: a Gaussian latent grid, trained on the evidence lower bound.

Kingma & Welling, 2014, "Auto-Encoding Variational Bayes". The encoder gives a diagonal
Gaussian posterior q(z | x) over a latent grid (latent_channels x h x w); a sample
z = mean + exp(logvar / 2) * eps (the reparameterisation trick) goes through the decoder, whose
output is the mean of a Gaussian likelihood p(x | z) with one learned log-scale per image
channel (a calibrated decoder, Rybkin et al., 2021, rather than a fixed variance that would be a
hidden weight on the KL term). The prior p(z) is the standard normal. A caption, if the decoder
reads one, conditions p(x | z, c) only; q(z | x) stays unconditional.

The loss is the negative ELBO per dimension, ``(-log p(x | z) + kl_weight * KL) / D``, with
optional free bits (Kingma et al., 2016, "Improved Variational Inference with Inverse
Autoregressive Flow"): the KL of each latent channel (summed over its positions, averaged over
the batch) counts at least ``free_bits`` nats, so below that the encoder gets no push towards the
prior and the latent is not abandoned early (posterior collapse).

:func:`bits_per_dim` reports the negative ELBO of uniformly dequantised 8-bit images in bits per
dimension. It is an upper bound on the model's negative log-likelihood (the ELBO bounds the
likelihood of the continuous density, whose dequantised likelihood bounds the discrete one),
so it compares with the exact likelihoods of flows and autoregressive models only as a bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from genlab.core.errors import GenlabError
from genlab.core.registry import Kind, register
from genlab.nets.autoencoder import AutoencoderConfig, Decoder, Encoder

KIND = "vae"
LOGVAR_RANGE = (-30.0, 20.0)  # the posterior's log-variance is clamped here (exp stays finite)
BINS = 127.5  # 8-bit bins per unit of [-1, 1]


@dataclass(frozen=True)
class VAEConfig(AutoencoderConfig):
    """The encoder and decoder: ``latent_channels`` Gaussian latents per latent position."""


class VAEOutput(NamedTuple):
    """One pass through the VAE."""

    mean: Tensor  # (B, C, H, W): the likelihood's mean
    log_scale: Tensor  # (C,): the likelihood's log standard deviation per channel
    posterior_mean: Tensor  # (B, latent_channels, h, w)
    posterior_logvar: Tensor  # (B, latent_channels, h, w)


class VAE(nn.Module):
    """``forward(images, captions=None, noise=None)``: encode, sample z with ``noise`` (standard
    normal of the latent's shape; drawn from torch's global generator if None), decode."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config, 2 * config.latent_channels)
        self.decoder = Decoder(config)
        self.log_scale = nn.Parameter(torch.zeros(config.image_channels))

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        c = self.config
        return (c.latent_channels, c.latent_size, c.latent_size)

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """The posterior's mean and log-variance, each (B, latent_channels, h, w)."""
        mean, logvar = self.encoder(images).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def decode(self, z: Tensor, captions: Tensor | None = None) -> Tensor:
        """The likelihood's mean (B, C, H, W) for latents z."""
        return self.decoder(z, captions)

    def forward(
        self, images: Tensor, captions: Tensor | None = None, noise: Tensor | None = None
    ) -> VAEOutput:
        mean, logvar = self.encode(images)
        noise = torch.randn_like(mean) if noise is None else noise
        z = mean + (0.5 * logvar).exp() * noise
        return VAEOutput(self.decode(z, captions), self.log_scale, mean, logvar)


def gaussian_nll(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """-log N(x; mean, exp(log_scale)^2) summed over each row's dimensions, in nats: (B,)."""
    log_scale = log_scale.float()[:, None, None]
    z = (x.float() - mean.float()) * torch.exp(-log_scale)
    per_dim = 0.5 * math.log(2 * math.pi) + log_scale + 0.5 * z.pow(2)
    return per_dim.flatten(1).sum(1)


def gaussian_kl(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) summed over each latent channel's positions, in
    nats: (B, latent_channels)."""
    mean, logvar = mean.float(), logvar.float()
    return 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(2).sum(2)


class VAELoss:
    """The trainer's step function on ``batch = (images, captions)``: the negative ELBO in nats
    per dimension, ``(mean_rows(-log p(x | z)) + kl_weight * sum_c max(free_bits, mean_rows(
    KL_c))) / D`` with KL_c the KL of latent channel c in nats. Metrics: ``recon`` (nats/dim),
    ``kl`` (nats per image, without free bits), ``kl_term`` (the free-bits KL the loss uses,
    nats per image), ``scale`` (mean likelihood standard deviation)."""

    def __init__(self, kl_weight: float = 1.0, free_bits: float = 0.0) -> None:
        if kl_weight < 0 or free_bits < 0:
            raise GenlabError(f"kl_weight and free_bits must be >= 0, got {kl_weight}, {free_bits}")
        self.kl_weight = kl_weight
        self.free_bits = free_bits

    def __call__(
        self, model: nn.Module, batch: tuple[Tensor, Tensor | None]
    ) -> tuple[Tensor, dict]:
        images, captions = batch
        out = model(images, captions)
        dims = images[0].numel()
        nll = gaussian_nll(images, out.mean, out.log_scale).mean()
        kl = gaussian_kl(out.posterior_mean, out.posterior_logvar)
        kl_term = kl.mean(0).clamp(min=self.free_bits).sum()
        loss = (nll + self.kl_weight * kl_term) / dims
        metrics = {
            "recon": nll.detach() / dims,
            "kl": kl.sum(1).mean().detach(),
            "kl_term": kl_term.detach(),
            "scale": out.log_scale.detach().exp().mean(),
            "samples": images.shape[0],
        }
        return loss, metrics


def _randn(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> Tensor:
    """Standard normal draws made where the generator lives, then moved to ``device``."""
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


@torch.no_grad()
def sample(
    model: VAE,
    n: int,
    captions: Tensor | None,
    generator: torch.Generator,
    temperature: float = 1.0,
) -> Tensor:
    """``n`` images (n, C, H, W) in [-1, 1]: the decoder's mean at z ~ N(0, temperature^2)
    (the likelihood's pixel noise is not added). ``captions`` (n, L) or None."""
    if captions is not None and len(captions) != n:
        raise GenlabError(f"{n} samples need {n} caption rows, got {len(captions)}")
    device = next(model.parameters()).device
    z = temperature * _randn((n, *model.latent_shape), generator, device)
    return model.decode(z, captions).clamp(-1, 1)


@torch.no_grad()
def reconstruct(model: VAE, images: Tensor, captions: Tensor | None = None) -> Tensor:
    """The decoder's mean at the posterior's mean, in [-1, 1]."""
    mean, _ = model.encode(images)
    return model.decode(mean, captions).clamp(-1, 1)


@torch.no_grad()
def bits_per_dim(
    model: VAE,
    images: Tensor,
    captions: Tensor | None,
    generator: torch.Generator,
    samples: int = 1,
) -> Tensor:
    """The negative ELBO of each image in bits per dimension, (N,): an upper bound on the
    model's negative log-likelihood of the 8-bit image.

    ``images`` are exact 8-bit values in [-1, 1] (``from_uint8``). Each of ``samples`` draws
    adds uniform noise u ~ U(0, 1/127.5) per dimension (one 8-bit bin), then z = mean +
    std * eps from the posterior of the noisy image (u, then eps, from ``generator``), and
    scores -log p(y | z) + KL(q(z | y) || p(z)) (the KL in closed form); the draws are averaged.
    Nats in [-1, 1] units become bits in [0, 256) units: (nats + D log 127.5) / (D ln 2).
    """
    if samples < 1:
        raise GenlabError(f"bits_per_dim needs samples >= 1, got {samples}")
    dims = images[0].numel()
    total = torch.zeros(len(images), device=images.device)
    for _ in range(samples):
        u = torch.rand(images.shape, generator=generator, device=generator.device)
        y = images + u.to(images.device) / BINS
        mean, logvar = model.encode(y)
        z = mean + (0.5 * logvar).exp() * _randn(mean.shape, generator, mean.device)
        nll = gaussian_nll(y, model.decode(z, captions), model.log_scale)
        total += nll + gaussian_kl(mean, logvar).sum(1)
    nats = total / samples
    return (nats + dims * math.log(BINS)) / (dims * math.log(2))


register(Kind(KIND, VAEConfig, VAE))
