"""The pieces a GPT stacks: causal self-attention with a KV cache, the MLP, the block, and
rotary position embeddings (Su et al., 2021, "RoFormer").

Pre-LayerNorm blocks as in GPT-2 (Radford et al., 2019); attention goes through PyTorch's
``scaled_dot_product_attention`` so that fused kernels are used where the device has them. The
layer names (``attn.qkv``, ``attn.proj``, ``mlp.fc``, ``mlp.proj``) are stable: adapters find
layers by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.errors import GenlabError

if TYPE_CHECKING:
    from genlab.nets.gpt import GPTConfig


class KVCache:
    """Keys and values of every layer for positions already seen, preallocated to ``max_len``.

    ``length`` is the number of positions stored; ``GPT.forward`` writes the new positions and
    advances it. Rows can be dropped (``keep``) when sequences in a batch finish.
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_head: int,
        max_len: int,
        head_dim: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (n_layer, batch_size, n_head, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``k, v`` (B, H, T, D) after the cached positions; return all keys and values."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.max_len:
            raise GenlabError(
                f"KV cache full: {end} positions needed but it holds {self.max_len}; "
                "generate fewer tokens or use a shorter prompt"
            )
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def keep(self, rows: Tensor) -> None:
        """Keep only the batch rows in ``rows`` (indices), e.g. when others stop generating."""
        self.k = self.k[:, rows]
        self.v = self.v[:, rows]


class Rotary(nn.Module):
    """Rotary position embedding: rotates query/key channel pairs by position-dependent angles."""

    def __init__(self, head_dim: int, max_len: int, theta: float) -> None:
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
        angles = torch.outer(torch.arange(max_len).float(), inv_freq)  # (max_len, head_dim/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        """Rotate ``x`` (B, H, T, D) at ``positions`` (B, T), in the rotate-half convention."""
        cos = self.cos[positions].unsqueeze(1).to(x.dtype)  # (B, 1, T, D/2)
        sin = self.sin[positions].unsqueeze(1).to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class SelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.head_dim
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None,
        is_causal: bool,
        rotary: Rotary | None,
        positions: Tensor,
        cache: KVCache | None,
        layer: int,
    ) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        if rotary is not None:
            q, k = rotary(q, positions), rotary(k, positions)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        # GPT-2 uses the tanh approximation of GELU; keeping it makes GPT-2 weights load exactly.
        return self.dropout(self.proj(F.gelu(self.fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, **attn_kwargs: Any) -> Tensor:
        x = x + self.attn(self.ln_1(x), **attn_kwargs)
        return x + self.mlp(self.ln_2(x))
