"""A caption as one vector: the mean of its word embeddings, for networks conditioned by a vector.

Convolutional generators (a VAE's decoder, a GAN's generator, a flow's coupling networks) take
their condition as one vector added to or concatenated with their features, as conditional GANs
do with a class embedding (Mirza & Osindero, 2014). genlab's captions are a few words from a
closed vocabulary (``genlab.data.captions``), so a bag of learned word embeddings carries every
attribute and still composes words never seen together. A caption of padding only (``<pad>``
everywhere) is "no caption": it maps to a learned null vector, which classifier-free guidance
(Ho & Salimans, 2022) trains by dropping captions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CaptionBag(nn.Module):
    """Caption ids (B, L), 0 = padding, to vectors (B, dim)."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.null = nn.Parameter(torch.zeros(dim))

    def forward(self, ids: Tensor) -> Tensor:
        real = (ids != 0).unsqueeze(-1).to(self.embed.weight.dtype)
        count = real.sum(1)
        mean = (self.embed(ids) * real).sum(1) / count.clamp(min=1)
        return torch.where(count > 0, mean, self.null)
