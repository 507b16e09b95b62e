"""A small caption encoder trained jointly with the image model.

A text-conditioned diffusion model reads its caption through cross-attention to a sequence of
embeddings (Rombach et al., 2022, "High-Resolution Image Synthesis with Latent Diffusion
Models"). Large models take those embeddings from a big frozen encoder (CLIP, T5); Imagen
(Saharia et al., 2022) showed that the encoder's quality matters most. genlab's built-in
captions have a vocabulary of a few dozen words (ids from ``genlab.data.captions``), so a
two-layer Transformer encoder learned with the UNet from scratch is enough and trains in minutes
on a CPU. The diffusion model takes *any* module called as ``encoder(ids, mask) -> (B, L, D)``:
a later issue plugs in a genlab GPT or a pretrained sentence encoder without touching the UNet.

Layer names follow genlab's GPT (``blocks.{i}.attn.qkv|proj``, ``blocks.{i}.mlp.fc|proj``) so
adapters find them by the same patterns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.errors import GenlabError


@dataclass(frozen=True)
class TextEncoderConfig:
    vocab_size: int
    max_length: int
    dim: int = 64
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: int = 4

    def __post_init__(self) -> None:
        if min(self.vocab_size, self.max_length, self.dim, self.num_layers, self.num_heads) < 1:
            raise GenlabError(f"text encoder sizes must be positive: {self}")
        if self.dim % self.num_heads:
            raise GenlabError(
                f"text encoder dim {self.dim} does not split into {self.num_heads} heads"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TextEncoderConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise GenlabError(f"unknown text encoder config field '{unknown[0]}'")
        return cls(**d)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        B, L, C = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.num_heads, C // self.num_heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        return self.proj(y.transpose(1, 2).reshape(B, L, C))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, hidden)
        self.proj = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    """Pre-norm Transformer encoder block: bidirectional attention over the real tokens."""

    def __init__(self, cfg: TextEncoderConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.dim)
        self.attn = SelfAttention(cfg.dim, cfg.num_heads)
        self.ln_2 = nn.LayerNorm(cfg.dim)
        self.mlp = MLP(cfg.dim, cfg.mlp_ratio * cfg.dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class TextEncoder(nn.Module):
    """Token ids (B, L) and mask (B, L) to embeddings (B, L, dim): the caption as a sequence."""

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.dim)
        self.pos_emb = nn.Embedding(config.max_length, config.dim)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.ln_f = nn.LayerNorm(config.dim)
        nn.init.normal_(self.tok_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)

    @property
    def dim(self) -> int:
        return self.config.dim

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        length = ids.shape[1]
        if length > self.config.max_length:
            raise GenlabError(
                f"{length} caption tokens; the encoder reads at most {self.config.max_length}"
            )
        mask = mask.to(torch.bool)
        x = self.tok_emb(ids) + self.pos_emb(torch.arange(length, device=ids.device))
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_f(x)
