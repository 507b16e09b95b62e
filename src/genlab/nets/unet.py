"""A conditional UNet: the denoising network of a diffusion model.

The architecture is the UNet of Ronneberger et al., 2015 ("U-Net: Convolutional Networks for
Biomedical Image Segmentation"), an encoder that halves the resolution level by level and a
decoder that doubles it back, each decoder level reading the encoder's features at the same
resolution through skip connections. Ho et al., 2020 (DDPM) made it the denoiser of diffusion
models with the pieces kept here: residual blocks with group normalisation, a sinusoidal
embedding of the step index (as Transformer positions) added inside every residual block, and
self-attention at the low resolutions, where the feature maps are small enough for it.

Conditioning, for classifier-free guidance (Ho & Salimans, 2022, "Classifier-Free Diffusion
Guidance"):

- a class label: a learned embedding added to the step embedding (``num_classes > 0``); one extra
  row is the learned null class;
- a sequence of text embeddings (B, L, D_ctx) with an optional mask (B, L): every attention
  block also cross-attends from the pixels to the sequence (``context_dim > 0``), as in latent
  diffusion (Rombach et al., 2022); the null condition is the zeroed sequence. The sequence's
  mean over its tokens is also added to the step embedding (``pool_context``), as Imagen
  (Saharia et al., 2022) adds its pooled text embedding and GLIDE (Nichol et al., 2021) its
  last token's, so every residual block at every resolution sees the whole caption; with
  cross-attention alone a small model learns the words one at a time (in our 32x32 shapes runs
  it drew the right colour and place long before the right kind of shape).

Convolutions and attention without positions are translation-equivariant: from pure noise they
cannot put "a circle on the left" on the left, except through the faint cue of zero padding.
Two coordinate channels concatenated to the input (``coord_channels``; Liu et al., 2018, "An
Intriguing Failing of Convolutional Neural Networks and the CoordConv Solution") give every
layer absolute position; without them our 32x32 model drew shapes of the right kind and colour
at a random place unless nearly all the loss weight sat on the noisiest steps.

An image condition of the same size, ``cond_image`` (B, ``cond_channels``, H, W), is concatenated
to the input too: a super-resolution model reads the low-resolution image upsampled to its own
size this way (Saharia et al., 2022, "Image Super-Resolution via Iterative Refinement", SR3; the
upsamplers of Ho et al., 2021, "Cascaded Diffusion Models", and of Imagen). ``extra_embedding``
(B, ``time_embed_dim``) is added to the step embedding, as Imagen adds the embedding of its
upsamplers' noise-augmentation level; the module that makes it belongs to the model that owns the
UNet (``genlab.methods.diffusion.upsampler``). Neither is dropped by ``drop_cond``: guidance
weighs the caption or class, never the image being upsampled.

``forward(..., drop_cond=mask)`` replaces the condition of the masked rows by the null one, which
is how training drops the condition (see ``genlab.methods.diffusion.guidance``) and how a guided sampler
runs the conditional and unconditional predictions in one batch. A missing condition
(``class_labels=None``, ``context=None``) is the null condition.

Layer names are stable because adapters (LoRA) find layers by name: attention projections are
``{down,up}.{i}.attentions.{j}.attn.to_q|to_k|to_v|to_out`` (self-attention),
``... .cross_attn.to_q|to_k|to_v|to_out`` (cross-attention) and ``mid.attention.attn.to_q`` etc.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.errors import GenlabError
from genlab.nets.unet_blocks import (
    AttentionBlock,
    Downsample,
    Level,
    ResBlock,
    Upsample,
    timestep_embedding,
)


@dataclass(frozen=True)
class UNetConfig:
    """The numbers that define a UNet; the image size is free (a multiple of 2^(levels-1))."""

    image_channels: int = 3
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 1
    attn_levels: tuple[int, ...] = (1,)  # levels (0 = full resolution) with attention
    num_heads: int = 4
    norm_groups: int = 8
    dropout: float = 0.0
    num_classes: int = 0  # > 0: class-conditional, with a learned null class
    context_dim: int = 0  # > 0: cross-attention to a (B, L, context_dim) sequence
    pool_context: bool = True  # also add the context's mean to the step embedding
    coord_channels: bool = True  # give the first conv each pixel's (x, y) (CoordConv)
    cond_channels: int = 0  # > 0: channels of an image condition concatenated to the input

    def __post_init__(self) -> None:
        # JSON turns tuples into lists; keep the config hashable and comparable
        object.__setattr__(self, "channel_mults", tuple(self.channel_mults))
        object.__setattr__(self, "attn_levels", tuple(self.attn_levels))
        for name in ("image_channels", "base_channels", "num_res_blocks", "num_heads"):
            if getattr(self, name) < 1:
                raise GenlabError(f"UNet {name} must be positive, got {getattr(self, name)}")
        if not self.channel_mults or min(self.channel_mults) < 1:
            raise GenlabError(f"channel_mults must be positive integers, got {self.channel_mults}")
        for level in self.attn_levels:
            if not 0 <= level < len(self.channel_mults):
                raise GenlabError(
                    f"attention level {level} does not exist: the UNet has levels 0.."
                    f"{len(self.channel_mults) - 1}"
                )
        for ch in self.level_channels:
            if ch % self.norm_groups:
                raise GenlabError(
                    f"{ch} channels do not split into {self.norm_groups} norm groups; pick "
                    "base_channels as a multiple of norm_groups"
                )
            if ch % self.num_heads:
                raise GenlabError(f"{ch} channels do not split into {self.num_heads} heads")
        if self.num_classes < 0 or self.context_dim < 0 or self.cond_channels < 0:
            raise GenlabError(
                "num_classes, context_dim and cond_channels must be 0 (off) or positive"
            )

    @property
    def level_channels(self) -> list[int]:
        return [self.base_channels * m for m in self.channel_mults]

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.base_channels

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNetConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GenlabError(
                f"unknown UNet config field '{unknown[0]}'; is this a UNet checkpoint?"
            )
        # a saved config without these fields predates them: its network had neither
        return cls(**{"pool_context": False, "coord_channels": False, **d})

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> UNetConfig:
        """A named size (see ``PRESETS``) with any field overridden (e.g. ``num_classes``)."""
        if name not in PRESETS:
            raise GenlabError(f"unknown UNet preset '{name}'; choose one of {', '.join(PRESETS)}")
        return replace(PRESETS[name], **overrides)


# From seconds on a laptop CPU at 16x16 up to the layout of DDPM's CIFAR-10 model (32x32).
PRESETS: dict[str, UNetConfig] = {
    "tiny": UNetConfig(base_channels=32, channel_mults=(1, 2), num_res_blocks=1, attn_levels=(1,)),
    "small": UNetConfig(
        base_channels=64,
        channel_mults=(1, 2, 2),
        num_res_blocks=2,
        attn_levels=(1, 2),
        norm_groups=32,
    ),
    "base": UNetConfig(
        base_channels=128,
        channel_mults=(1, 2, 2, 2),
        num_res_blocks=2,
        attn_levels=(1,),
        norm_groups=32,
        dropout=0.1,
    ),
}


def _coordinates(x: Tensor) -> Tensor:
    """Two channels (B, 2, H, W) holding each pixel's column and row, scaled to [-1, 1]."""
    B, _, H, W = x.shape
    rows = torch.linspace(-1.0, 1.0, H, device=x.device, dtype=x.dtype)
    cols = torch.linspace(-1.0, 1.0, W, device=x.device, dtype=x.dtype)
    grid = torch.stack(torch.meshgrid(cols, rows, indexing="xy"))  # (2, H, W): x then y
    return grid.expand(B, -1, -1, -1)


def _masked_mean(context: Tensor, mask: Tensor | None) -> Tensor:
    """The mean (B, D) of a context (B, L, D) over its real tokens (``mask`` True)."""
    if mask is None:
        return context.mean(dim=1)
    weights = mask.to(context.dtype)[:, :, None]
    return (context * weights).sum(dim=1) / weights.sum(dim=1)


class Mid(nn.Module):
    def __init__(self, ch: int, cfg: UNetConfig) -> None:
        super().__init__()
        emb = cfg.time_embed_dim
        self.res1 = ResBlock(ch, ch, emb, cfg.norm_groups, cfg.dropout)
        self.attention = AttentionBlock(ch, cfg.num_heads, cfg.norm_groups, cfg.context_dim)
        self.res2 = ResBlock(ch, ch, emb, cfg.norm_groups, cfg.dropout)

    def forward(self, h: Tensor, emb: Tensor, ctx: Tensor | None, mask: Tensor | None) -> Tensor:
        return self.res2(self.attention(self.res1(h, emb), ctx, mask), emb)


class UNet(nn.Module):
    """Noisy image and step index in, a prediction of the same shape out (noise, x0 or v)."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        emb = c.time_embed_dim
        self.time_mlp = nn.Sequential(
            nn.Linear(c.base_channels, emb), nn.SiLU(), nn.Linear(emb, emb)
        )
        # the last row is the learned null class
        self.class_embed = nn.Embedding(c.num_classes + 1, emb) if c.num_classes else None
        # the pooled caption reaches every residual block, not only the attention levels
        pool = c.context_dim and c.pool_context
        self.context_embed = nn.Linear(c.context_dim, emb) if pool else None
        extra = c.cond_channels + (2 if c.coord_channels else 0)
        self.conv_in = nn.Conv2d(c.image_channels + extra, c.base_channels, 3, padding=1)

        def res(i: int, o: int) -> ResBlock:
            return ResBlock(i, o, emb, c.norm_groups, c.dropout)

        def attn(ch: int) -> AttentionBlock:
            return AttentionBlock(ch, c.num_heads, c.norm_groups, c.context_dim)

        n_levels = len(c.channel_mults)
        skips = [c.base_channels]
        ch = c.base_channels
        self.down = nn.ModuleList()
        for i, out in enumerate(c.level_channels):
            resnets = []
            for _ in range(c.num_res_blocks):
                resnets.append(res(ch, out))
                ch = out
                skips.append(ch)
            attentions = [attn(ch) for _ in resnets] if i in c.attn_levels else None
            downsample = Downsample(ch) if i < n_levels - 1 else None
            if downsample is not None:
                skips.append(ch)
            self.down.append(Level(resnets, attentions, downsample=downsample))

        self.mid = Mid(ch, c)

        self.up = nn.ModuleList()  # up[0] is the deepest level
        for i in reversed(range(n_levels)):
            out = c.level_channels[i]
            resnets = []
            for _ in range(c.num_res_blocks + 1):
                resnets.append(res(ch + skips.pop(), out))
                ch = out
            attentions = [attn(ch) for _ in resnets] if i in c.attn_levels else None
            upsample = Upsample(ch) if i > 0 else None
            self.up.append(Level(resnets, attentions, upsample=upsample))

        self.norm_out = nn.GroupNorm(c.norm_groups, ch)
        self.conv_out = nn.Conv2d(ch, c.image_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _condition(
        self,
        B: int,
        like: Tensor,
        class_labels: Tensor | None,
        context: Tensor | None,
        context_mask: Tensor | None,
        drop_cond: Tensor | None,
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """Class labels, context and mask with the null condition filled in where missing or
        dropped. The null context is one zero vector; a zeroed sequence of any length gives
        the same attention output (uniform weights over zero values), so both are the same."""
        c = self.config
        keep = None if drop_cond is None else ~drop_cond.to(device=like.device, dtype=torch.bool)
        if class_labels is not None and not c.num_classes:
            raise GenlabError("class labels given to a UNet without classes (num_classes=0)")
        if context is not None and not c.context_dim:
            raise GenlabError("a context given to a UNet without cross-attention (context_dim=0)")
        labels = None
        if c.num_classes:
            null = torch.full((B,), c.num_classes, dtype=torch.long, device=like.device)
            if class_labels is None:
                labels = null
            else:
                labels = class_labels.to(like.device).long()
                if labels.shape != (B,) or labels.min() < 0 or labels.max() >= c.num_classes:
                    raise GenlabError(
                        f"class_labels must be {B} integers in [0, {c.num_classes}), got "
                        f"shape {tuple(labels.shape)}"
                    )
            if keep is not None:
                labels = torch.where(keep, labels, null)
        if not c.context_dim:
            return labels, None, None
        if context is None:
            return labels, like.new_zeros(B, 1, c.context_dim), None
        if context.ndim != 3 or context.shape[0] != B or context.shape[2] != c.context_dim:
            raise GenlabError(
                f"context has shape {tuple(context.shape)}, expected ({B}, L, {c.context_dim})"
            )
        context = context.to(like.dtype)
        if context_mask is not None:
            context_mask = context_mask.to(device=like.device, dtype=torch.bool)
        if keep is not None:
            context = context * keep[:, None, None].to(context.dtype)
            if context_mask is not None:
                context_mask = context_mask | ~keep[:, None]
        if context_mask is not None and not bool(context_mask.any(dim=1).all()):
            raise GenlabError("a context_mask row masks every position; keep at least one token")
        return labels, context, context_mask

    def _with_cond_image(self, x: Tensor, cond_image: Tensor | None) -> Tensor:
        """``x`` with the image condition concatenated on channels (checked against the config)."""
        n = self.config.cond_channels
        if cond_image is None:
            if n:
                raise GenlabError(f"this UNet reads a {n}-channel cond_image; pass one")
            return x
        if not n:
            raise GenlabError("a cond_image given to a UNet without one (cond_channels=0)")
        expected = (x.shape[0], n, *x.shape[2:])
        if tuple(cond_image.shape) != expected:
            raise GenlabError(
                f"cond_image has shape {tuple(cond_image.shape)}, expected {expected}"
            )
        return torch.cat([x, cond_image.to(x.dtype)], dim=1)

    def forward(
        self,
        x: Tensor,
        t: Tensor | int,
        class_labels: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        drop_cond: Tensor | None = None,
        cond_image: Tensor | None = None,
        extra_embedding: Tensor | None = None,
    ) -> Tensor:
        """Predict from ``x`` (B, C, H, W) at steps ``t`` (B,) or a single step.

        - ``class_labels`` (B,) ints in [0, num_classes); None is the null class.
        - ``context`` (B, L, context_dim) and ``context_mask`` (B, L), True = a real token.
        - ``drop_cond`` (B,) bool: rows that get the null condition (classifier-free guidance).
        - ``cond_image`` (B, cond_channels, H, W): concatenated to ``x`` (needed iff
          ``cond_channels > 0``); ``extra_embedding`` (B, time_embed_dim): added to the step's.
        """
        B, _, H, W = x.shape
        factor = 2 ** (len(self.config.channel_mults) - 1)
        if H % factor or W % factor:
            raise GenlabError(
                f"image size {H}x{W} is not a multiple of {factor}, which this UNet's "
                f"{len(self.config.channel_mults)} levels need"
            )
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(B) if t.ndim == 0 else t
        if t.shape != (B,):
            raise GenlabError(f"t must be one step or {B} steps, got shape {tuple(t.shape)}")
        emb = self.time_mlp(timestep_embedding(t, self.config.base_channels).to(x.dtype))
        labels, ctx, mask = self._condition(B, x, class_labels, context, context_mask, drop_cond)
        if labels is not None:
            emb = emb + self.class_embed(labels)
        if self.context_embed is not None:
            emb = emb + self.context_embed(_masked_mean(ctx, mask))
        if extra_embedding is not None:
            if extra_embedding.shape != emb.shape:
                raise GenlabError(
                    f"extra_embedding has shape {tuple(extra_embedding.shape)}, expected "
                    f"{tuple(emb.shape)} (batch, time_embed_dim)"
                )
            emb = emb + extra_embedding.to(emb.dtype)

        x = self._with_cond_image(x, cond_image)
        if self.config.coord_channels:
            x = torch.cat([x, _coordinates(x)], dim=1)
        h = self.conv_in(x)
        skips = [h]
        for level in self.down:
            for j, resnet in enumerate(level.resnets):
                h = resnet(h, emb)
                if level.attentions is not None:
                    h = level.attentions[j](h, ctx, mask)
                skips.append(h)
            if level.downsample is not None:
                h = level.downsample(h)
                skips.append(h)
        h = self.mid(h, emb, ctx, mask)
        for level in self.up:
            for j, resnet in enumerate(level.resnets):
                h = resnet(torch.cat([h, skips.pop()], dim=1), emb)
                if level.attentions is not None:
                    h = level.attentions[j](h, ctx, mask)
            if level.upsample is not None:
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
