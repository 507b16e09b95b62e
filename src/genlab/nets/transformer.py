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
    advances it. Rows can be dropped (``keep``) when sequences in a batch finish. ``k`` and ``v``
    (layer, B, H, max_len, D) may be replaced by a view of another cache's rows (serving does);
    each layer reads its own view of them, so a decoding step does not index the whole cache.
    A ``dtype`` narrower than the model's (bfloat16 for a float32 model) halves the cache's
    memory and what attention reads per token, which is most of a batched decoding step; the
    queries are cast to it and the output back (vLLM's ``kv_cache_dtype``), at the cost of
    rounding the keys and values.
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
    def k(self) -> Tensor:
        return self._k

    @k.setter
    def k(self, k: Tensor) -> None:
        self._k, self._layer_k = k, _layers(k)

    @property
    def v(self) -> Tensor:
        return self._v

    @v.setter
    def v(self, v: Tensor) -> None:
        self._v, self._layer_v = v, _layers(v)

    @property
    def max_len(self) -> int:
        return self._k.shape[3]

    @property
    def batch_size(self) -> int:
        return self._k.shape[1]

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``k, v`` (B, H, T, D) after the cached positions; return all keys and values."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.max_len:
            raise GenlabError(
                f"KV cache full: {end} positions needed but it holds {self.max_len}; "
                "generate fewer tokens or use a shorter prompt"
            )
        keys, values = self._layer_k[layer], self._layer_v[layer]
        keys.narrow(2, start, end - start).copy_(k)
        values.narrow(2, start, end - start).copy_(v)
        return keys.narrow(2, 0, end), values.narrow(2, 0, end)

    def keep(self, rows: Tensor) -> None:
        """Keep only the batch rows in ``rows`` (indices), e.g. when others stop generating."""
        self.k = self._k[:, rows]
        self.v = self._v[:, rows]


def dropout(p: float) -> nn.Module:
    """``nn.Dropout(p)``, or ``nn.Identity`` at ``p = 0``. Neither has weights, so the state
    dict is the same. Callers skip the call in eval mode: an idle dropout module still costs
    some 10 us a call, several times per decoded token."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


def _layers(cache: Tensor) -> list[Tensor]:
    """One view per layer (``select``, not ``unbind``: autograd lets single views be written)."""
    return [cache.select(0, i) for i in range(cache.shape[0])]


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
        self.resid_dropout = dropout(config.dropout)

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
        qkv = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, H, T, D)
        if rotary is not None:
            q, k = rotary(q, positions), rotary(k, positions)
        if cache is not None:
            k, v = cache.update(layer, k, v)
            q = q.to(k.dtype)  # a narrower cache (bfloat16) sets attention's dtype
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
        )
        y = y.transpose(1, 2).reshape(B, T, C)
        y = self.proj(y if cache is None else y.to(x.dtype))
        return self.resid_dropout(y) if self.training else y


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        # GPT-2 uses the tanh approximation of GELU; keeping it makes GPT-2 weights load exactly.
        y = self.proj(F.gelu(self.fc(x), approximate="tanh"))
        return self.dropout(y) if self.training else y


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
