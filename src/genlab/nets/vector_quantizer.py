"""A vector quantizer whose codebook follows exponential moving averages of its encodings.

van den Oord et al., 2017, "Neural Discrete Representation Learning" (VQ-VAE; the EMA update of
appendix A.1), as used by Razavi et al., 2019 (VQ-VAE-2). Every encoding z (one vector per latent
position) is replaced by its nearest code e_k; the codebook is no parameter but is refit after
every training batch, with decay g, n_k the number of encodings assigned to code k in the batch
and s_k their sum:

    N_k <- g N_k + (1 - g) n_k,    m_k <- g m_k + (1 - g) s_k,    e_k = m_k / N~_k

where N~_k = (N_k + eps) / (sum N + K eps) * sum N is N_k with Laplace smoothing (as in Sonnet's
``VectorQuantizerEMA``), so a code nobody uses divides by no zero. The averages start as if every
code had been assigned one encoding, itself (N_k = 1, m_k = e_k), so an unused code stays where
it is until its count has decayed below eps. N (``cluster_size``) and m (``embed_sum``) are
buffers, so checkpoints carry them and a resumed run continues the same averages. Under
torch.distributed the batch counts and sums are summed over processes first (as SyncBatchNorm
does), so every process makes the same update.

Gradients pass the quantization unchanged (the straight-through estimator: the output is
``z + sg(e - z)``); the encoder is pulled towards its codes by the commitment loss
``mean ||z - sg(e)||^2``, which the method weights (beta = 0.25 in the paper).

Dead codes (optional, ``restart_below > 0``): after each update, every code whose averaged count
N_k is below ``restart_below`` is moved onto one of the batch's encodings, the ones farthest
from their nearest code first (the worst served, in order, cycling if there are more dead codes
than encodings), and its averages restart as one encoding there (Dhariwal et al., 2020, Jukebox,
restart dead codes from random encodings; here the choice is a function of the batch alone, so
a run stays reproducible). Off by default, as in the paper.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.errors import GenlabError


class Quantized(NamedTuple):
    """What :class:`VectorQuantizer` returns for encodings (B, dim, h, w)."""

    quantized: Tensor  # (B, dim, h, w): the codes, with straight-through gradients to z
    codes: Tensor  # (B, h, w) long
    commitment: Tensor  # scalar: mean over elements of (z - sg(e))^2
    perplexity: Tensor  # scalar: exp(entropy) of the batch's code frequencies
    usage: Tensor  # scalar: fraction of the codebook used in the batch


class VectorQuantizer(nn.Module):
    """``num_codes`` codes of ``dim`` numbers, refit by EMA in training mode."""

    def __init__(
        self,
        num_codes: int,
        dim: int,
        decay: float = 0.99,
        eps: float = 1e-5,
        restart_below: float = 0.0,
    ) -> None:
        super().__init__()
        if num_codes < 2 or dim < 1:
            raise GenlabError(
                f"a codebook needs >= 2 codes of >= 1 numbers, got {num_codes} x {dim}"
            )
        if not 0.0 <= decay < 1.0 or eps <= 0 or restart_below < 0:
            raise GenlabError("the codebook needs 0 <= decay < 1, eps > 0 and restart_below >= 0")
        self.num_codes, self.dim = num_codes, dim
        self.decay, self.eps, self.restart_below = decay, eps, restart_below
        # small codes: every encoding starts nearest to the code most aligned with it
        embedding = torch.empty(num_codes, dim).uniform_(-1 / num_codes, 1 / num_codes)
        self.register_buffer("embedding", embedding)
        self.register_buffer("cluster_size", torch.ones(num_codes))
        self.register_buffer("embed_sum", embedding.clone())

    def _distances(self, flat: Tensor) -> Tensor:
        """Squared distances (N, K) from encodings (N, dim) to every code, in float32."""
        e = self.embedding
        return flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.T + e.pow(2).sum(1)

    def _flatten(self, z: Tensor) -> Tensor:
        if z.dim() != 4 or z.shape[1] != self.dim:
            raise GenlabError(f"expected encodings (B, {self.dim}, h, w), got {tuple(z.shape)}")
        return z.permute(0, 2, 3, 1).reshape(-1, self.dim).float()

    def nearest(self, z: Tensor) -> Tensor:
        """The codes (B, h, w) nearest to encodings (B, dim, h, w); no update."""
        with torch.autocast(z.device.type, enabled=False):
            codes = self._distances(self._flatten(z)).argmin(1)
        return codes.view(z.shape[0], *z.shape[2:])

    def lookup(self, codes: Tensor) -> Tensor:
        """Codes (B, h, w) to their vectors (B, dim, h, w)."""
        return self.embedding[codes].permute(0, 3, 1, 2).contiguous()

    def forward(self, z: Tensor) -> Quantized:
        with torch.autocast(z.device.type, enabled=False):
            flat = self._flatten(z)
            distances = self._distances(flat.detach())
            nearest, codes = distances.min(1)
            onehot = F.one_hot(codes, self.num_codes).float()
            quantized = self.lookup(codes.view(z.shape[0], *z.shape[2:]))
            commitment = F.mse_loss(z.float(), quantized)
            counts = onehot.sum(0)
            p = counts / counts.sum()
            perplexity = torch.exp(-torch.xlogy(p, p).sum())
            usage = (counts > 0).float().mean()
            if self.training:
                self._update(flat.detach(), onehot, nearest)
        out = z + (quantized.to(z.dtype) - z).detach()
        return Quantized(out, codes.view(z.shape[0], *z.shape[2:]), commitment, perplexity, usage)

    @torch.no_grad()
    def _update(self, flat: Tensor, onehot: Tensor, nearest: Tensor) -> None:
        """One EMA step from a batch: encodings (N, dim), their one-hot codes (N, K) and their
        squared distances to them (N,)."""
        counts, sums = onehot.sum(0), onehot.T @ flat
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        g = self.decay
        self.cluster_size.mul_(g).add_(counts, alpha=1 - g)
        self.embed_sum.mul_(g).add_(sums, alpha=1 - g)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.num_codes * self.eps) * total
        self.embedding.copy_(self.embed_sum / smoothed[:, None])
        if self.restart_below > 0:
            dead = (self.cluster_size < self.restart_below).nonzero().squeeze(1)
            if len(dead):
                order = nearest.argsort(descending=True, stable=True)
                chosen = flat[order[torch.arange(len(dead), device=flat.device) % len(order)]]
                self.embedding[dead] = chosen
                self.embed_sum[dead] = chosen
                self.cluster_size[dead] = 1.0
