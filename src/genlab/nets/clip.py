"""A small CLIP: an image tower and a caption tower that embed into one space.

CLIP (Radford et al., 2021, "Learning Transferable Visual Models From Natural Language
Supervision") embeds an image and a caption each into a unit vector of a shared space, so that
their cosine says how well the caption describes the image; the CLIP score of a text-to-image
model is that cosine (``genlab.metrics.clip_score``). The real CLIP reads 224-pixel photographs
with a ViT and 77 BPE tokens with a causal Transformer; genlab's built-in images are 32-pixel
coloured shapes with captions of a few dozen words, so here the image tower is FeatureNet's
convolutions (three stages, the last map flattened rather than pooled so the embedding keeps where
things are, which the captions' positions and relations are about), the text tower genlab's
caption :class:`~genlab.nets.text_encoder.TextEncoder`, mean-pooled over the real tokens or read
at the last one (CLIP's end token). Each tower ends in a bias-free linear projection to
``embed_dim`` (CLIP's ``visual_projection`` / ``text_projection``), and the embeddings are
L2-normalised. The learned temperature is CLIP's: ``logit_scale`` starts at log(1 / 0.07) and the
scale it gives is clamped at 100. The loss lives in ``genlab.methods.contrastive``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.errors import GenlabError
from genlab.nets.text_encoder import TextEncoder, TextEncoderConfig

POOLS = ("mean", "last")
INIT_TEMPERATURE = 0.07  # CLIP's initial softmax temperature
MAX_LOGIT_SCALE = 100.0  # CLIP clips the learned scale here "to prevent training instability"


@dataclass(frozen=True)
class CLIPConfig:
    """The two towers and the shared space they project into."""

    text: TextEncoderConfig
    image_channels: int = 3
    image_size: int = 32
    width: int = 32  # channels of the first convolution stage (then 2x, 4x)
    image_dim: int = 128  # the image tower's feature width before the projection
    embed_dim: int = 64  # the shared space
    pool: str = "mean"  # mean (over real tokens) | last (the last real token, CLIP's end token)

    def __post_init__(self) -> None:
        if self.image_size < 8 or self.image_size % 8:
            raise GenlabError(
                f"the CLIP image tower needs a multiple of 8 pixels, got {self.image_size}"
            )
        if self.width < 8 or self.width % 8:
            raise GenlabError(
                f"the CLIP image tower's width must be a multiple of 8, got {self.width}"
            )
        if min(self.image_channels, self.image_dim, self.embed_dim) < 1:
            raise GenlabError(f"CLIP sizes must be positive: {self}")
        if self.pool not in POOLS:
            raise GenlabError(
                f"CLIP text pooling must be one of {', '.join(POOLS)}, got '{self.pool}'"
            )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"text": self.text.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CLIPConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown or "text" not in d:
            raise GenlabError(
                "not a genlab CLIP config (expected text, image_size, embed_dim, ...)"
            )
        return cls(**{**d, "text": TextEncoderConfig.from_dict(d["text"])})


class ImageTower(nn.Module):
    """Three stages of two 3x3 convolutions (the second of stride 2), the last map flattened to
    ``image_dim`` features: FeatureNet's shape, trained here against captions."""

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        w, layers, ch = config.width, [], config.image_channels
        for out in (w, 2 * w, 4 * w):
            layers += [nn.Conv2d(ch, out, 3, padding=1), nn.GroupNorm(8, out), nn.SiLU()]
            layers += [nn.Conv2d(out, out, 3, stride=2, padding=1), nn.GroupNorm(8, out), nn.SiLU()]
            ch = out
        self.convs = nn.Sequential(*layers)
        side = config.image_size // 8
        self.embed = nn.Linear(4 * w * side * side, config.image_dim)

    def forward(self, images: Tensor) -> Tensor:
        return F.silu(self.embed(self.convs(images).flatten(1)))


class CLIP(nn.Module):
    """``encode_image(images)`` and ``encode_text(ids, mask)`` give unit vectors (B, embed_dim);
    ``model(images, ids, mask)`` gives CLIP's ``logits_per_image`` (B_images, B_captions)."""

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = ImageTower(config)
        self.text_encoder = TextEncoder(config.text)
        self.visual_projection = nn.Linear(config.image_dim, config.embed_dim, bias=False)
        self.text_projection = nn.Linear(config.text.dim, config.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / INIT_TEMPERATURE)))

    def _fit(self, images: Tensor) -> Tensor:
        c = self.config
        if images.shape[1] != c.image_channels:
            if images.shape[1] == 1 and c.image_channels == 3:
                images = images.expand(-1, 3, -1, -1)
            else:
                raise GenlabError(
                    f"this CLIP reads {c.image_channels}-channel images, got {images.shape[1]}"
                )
        if images.shape[-2:] != (c.image_size, c.image_size):
            images = F.interpolate(
                images, size=(c.image_size, c.image_size), mode="bilinear", antialias=True
            )
        return images

    def encode_image(self, images: Tensor) -> Tensor:
        """Images (B, C, H, W) in [-1, 1] (other sizes are resized, grey ones made RGB) to unit
        vectors (B, embed_dim)."""
        features = self.image_encoder(self._fit(images.float()))
        return F.normalize(self.visual_projection(features), dim=-1)

    def encode_text(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Caption ids and mask (B, L) from a ``CaptionTokenizer`` to unit vectors (B, embed_dim)."""
        mask = mask.to(torch.bool)
        hidden = self.text_encoder(ids, mask)
        if self.config.pool == "mean":
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        else:
            last = (mask.long().sum(1) - 1).clamp(min=0)
            pooled = hidden[torch.arange(len(ids), device=ids.device), last]
        return F.normalize(self.text_projection(pooled), dim=-1)

    def scale(self) -> Tensor:
        """The softmax's inverse temperature, exp(logit_scale) clamped at 100."""
        return self.logit_scale.clamp(max=math.log(MAX_LOGIT_SCALE)).exp()

    def forward(self, images: Tensor, ids: Tensor, mask: Tensor) -> Tensor:
        """Scaled cosines ``logits_per_image`` (B_images, B_captions); transpose for captions."""
        image_emb = self.encode_image(images)
        text_emb = self.encode_text(ids, mask)
        return self.scale() * image_emb @ text_emb.t()
