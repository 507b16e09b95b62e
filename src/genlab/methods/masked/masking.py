"""Which tokens to hide: in training, a uniform number of them; in decoding, the least confident.

Mask-predict (Ghazvininejad et al., 2019, section 3) trains on targets with a number of hidden
tokens drawn uniformly from 1 to the target's length, so the model learns every stage of its own
decoding, from all hidden to one hidden. Decoding hides, after iteration t of N, the
``n = T (N - t) / N`` lowest-confidence tokens (a linear schedule): with N = T, one token is
settled per iteration. Nothing here knows what a token is (a word, an image patch).
"""

from __future__ import annotations

import torch
from torch import Tensor


def training_mask(lengths: Tensor, width: int, generator: torch.Generator | None = None) -> Tensor:
    """(B, width) bool: for each row, ``k ~ U{1..length}`` positions among its first ``length``,
    chosen uniformly, are hidden. ``lengths`` (B,) must be at least 1."""
    B = lengths.shape[0]
    k = (torch.rand(B, generator=generator) * lengths).long() + 1  # uniform in 1..length
    slots = torch.arange(width)[None, :] < lengths[:, None]
    noise = torch.rand(B, width, generator=generator).masked_fill(~slots, 2.0)
    rank = noise.argsort(dim=1).argsort(dim=1)  # each position's rank among its row's draws
    return rank < k[:, None]


def linear_count(count: Tensor, t: int, iterations: int) -> Tensor:
    """How many of ``count`` (B,) decoded tokens to hide again before iteration ``t`` (1-based
    after the first pass) of ``iterations``: ``count * (N - t) // N``, mask-predict's schedule."""
    return count * (iterations - t) // iterations


def lowest(scores: Tensor, n: Tensor, among: Tensor) -> Tensor:
    """(B, T) bool: in each row, the ``n`` (B,) positions of ``among`` with the lowest scores
    (ties broken by position, so decoding is deterministic)."""
    ranked = scores.masked_fill(~among, float("inf")).argsort(dim=1, stable=True)
    rank = ranked.argsort(dim=1)
    return (rank < n[:, None]) & among
