"""The building blocks of genlab's UNet (``genlab.nets.unet``), as in DDPM (Ho et al., 2020,
"Denoising Diffusion Probabilistic Models"): residual blocks with group normalisation that add
a sinusoidal embedding of the step index, multi-head self- and cross-attention over a feature
map, and the convolutions that halve and double the resolution. Parameter names are the UNet's
state-dict keys and the names adapters find layers by: keep them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.errors import GenlabError


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding (B, dim) of step indices t (B,): [cos(t w_k), sin(t w_k)] with
    frequencies w_k = max_period^(-k / (dim/2)), as Transformer positions (Vaswani et al.)."""
    if dim % 2:
        raise GenlabError(f"the step embedding needs an even size, got {dim}")
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(exponent / half)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    """GroupNorm, SiLU, conv; add the step embedding; GroupNorm, SiLU, dropout, conv; residual."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        # the residual branch starts at zero, so a deep UNet trains stably (as in ADM)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head attention from tokens to themselves or, given ``context_dim``, to a context."""

    def __init__(self, dim: int, num_heads: int, context_dim: int | None = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        kv_dim = context_dim or dim
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(kv_dim, dim, bias=False)
        self.to_v = nn.Linear(kv_dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(
        self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None
    ) -> Tensor:
        """``x`` (B, N, dim); ``context`` (B, L, context_dim); ``mask`` (B, L), True = attend."""
        src = x if context is None else context
        B, N, C = x.shape
        H = self.num_heads

        def heads(t: Tensor) -> Tensor:
            return t.view(B, -1, H, C // H).transpose(1, 2)  # (B, H, len, C/H)

        q, k, v = heads(self.to_q(x)), heads(self.to_k(src)), heads(self.to_v(src))
        attn_mask = None if mask is None else mask[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.to_out(y.transpose(1, 2).reshape(B, N, C))


class AttentionBlock(nn.Module):
    """Self-attention over the pixels of a feature map, then cross-attention to the context."""

    def __init__(self, channels: int, num_heads: int, groups: int, context_dim: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.attn = Attention(channels, num_heads)
        if context_dim:
            self.norm_cross = nn.LayerNorm(channels)
            self.cross_attn = Attention(channels, num_heads, context_dim)

    def forward(self, x: Tensor, context: Tensor | None, context_mask: Tensor | None) -> Tensor:
        B, C, H, W = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, H*W, C)
        tokens = tokens + self.attn(self.norm(x).flatten(2).transpose(1, 2))
        if context is not None:
            tokens = tokens + self.cross_attn(self.norm_cross(tokens), context, context_mask)
        return tokens.transpose(1, 2).reshape(B, C, H, W)


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution of the encoder or decoder: residual blocks, each optionally followed by
    attention, then a change of resolution (``downsample`` or ``upsample``) unless outermost."""

    def __init__(
        self,
        resnets: list[ResBlock],
        attentions: list[AttentionBlock] | None,
        downsample: Downsample | None = None,
        upsample: Upsample | None = None,
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(attentions) if attentions else None
        self.downsample = downsample
        self.upsample = upsample
