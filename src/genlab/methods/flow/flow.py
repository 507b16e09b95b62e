"""Glow by maximum likelihood: the exact log-density of dequantised images, and sampling.

Kingma & Dhariwal, 2018, "Glow: Generative Flow with Invertible 1x1 Convolutions". The flow
:class:`~genlab.nets.flow.Glow` maps an image x to latents z with a standard normal prior, so
``log p(x) = log N(z; 0, I) + log|det dz/dx|`` exactly (the change of variables). Pixels are
discrete, so training fits uniformly dequantised ones: each 8-bit value k, in [-1, 1] as
``k / 127.5 - 1``, gets noise uniform over its bin (width ``1 / 127.5``); the continuous
density's negative log-likelihood then bounds the discrete one (Theis et al., 2016). Counting it
in [0, 256) units and bits per dimension, ``bpd = (nll + D log 127.5) / (D ln 2)``, as RealNVP
(Dinh et al., 2017) and Glow report it; the loss is that number. Samples invert the flow from
noise of reduced ``temperature`` (Glow, section 5: 0.7 gives the cleanest images).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from genlab.core.errors import GenlabError
from genlab.core.registry import Kind, register
from genlab.nets.flow import FlowConfig, Glow

KIND = "flow"
BIN = 1 / 127.5  # one 8-bit level in [-1, 1] units


def dequantize(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """8-bit images in [-1, 1] plus noise uniform over each value's bin, ``[x, x + BIN)``
    (from ``generator``, else the global one; a CPU generator fixes it on any device)."""
    device = generator.device if generator is not None else images.device
    noise = torch.rand(images.shape, generator=generator, device=device)
    return images + BIN * noise.to(images.device, images.dtype)


def log_prob(model: nn.Module, x: Tensor, captions: Tensor | None) -> Tensor:
    """(B,) exact log-density of continuous images x in [-1, 1] units: the standard normal
    log-density of every latent plus the flow's log-determinant."""
    zs, logdet = model(x, captions)
    log_normal = sum(-0.5 * (z.pow(2) + math.log(2 * math.pi)).flatten(1).sum(1) for z in zs)
    return log_normal + logdet


def to_bits_per_dim(log_density: Tensor, dims: int) -> Tensor:
    """Log-densities in [-1, 1] units of D-number images -> bits per dimension in 8-bit units."""
    return (-log_density + dims * math.log(127.5)) / (dims * math.log(2))


class FlowLoss:
    """The trainer's step function: the mean bits per dimension of the dequantised batch
    (``batch = (images, captions)``), also reported as the metric ``bpd``."""

    def __call__(
        self, model: nn.Module, batch: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, dict[str, float | Tensor]]:
        images, captions = batch
        bpd = to_bits_per_dim(log_prob(model, dequantize(images), captions), images[0].numel())
        loss = bpd.mean()
        return loss, {"bpd": loss.detach()}


@torch.no_grad()
def bits_per_dim(
    model: Glow, images: Tensor, captions: Tensor | None, generator: torch.Generator
) -> Tensor:
    """(N,) bits per dimension of each 8-bit image (in [-1, 1]) under one dequantisation drawn
    from ``generator`` (its expectation bounds the discrete code length from above)."""
    device = next(model.parameters()).device
    x = dequantize(images.to(device), generator)
    captions = captions.to(device) if captions is not None else None
    return to_bits_per_dim(log_prob(model, x, captions), model.config.dims)


@torch.no_grad()
def sample(
    model: Glow,
    n: int,
    captions: Tensor | None,
    generator: torch.Generator,
    temperature: float = 0.7,
) -> Tensor:
    """(n, C, H, W) images in [-1, 1]: the flow inverted from latents ``temperature * N(0, I)``
    drawn from ``generator``. Half a bin comes off, so rounding to 8 bits reads the bin each
    continuous value fell in. A conditional flow reads ``captions=None`` as "no caption"."""
    if temperature < 0:
        raise GenlabError(f"the sampling temperature must be >= 0, got {temperature}")
    device = next(model.parameters()).device
    zs = [
        temperature * torch.randn((n, *shape), generator=generator, device=generator.device)
        for shape in model.z_shapes()
    ]
    captions = captions.to(device) if captions is not None else None
    x = model.inverse([z.to(device) for z in zs], captions)
    return (x - BIN / 2).clamp(-1, 1)


register(Kind(KIND, FlowConfig, Glow))
