"""CLIP score: how well images match their captions, as torchmetrics computes it.

CLIPScore (Hessel et al., 2021, "CLIPScore: A Reference-free Evaluation Metric for Image
Captioning") reads an image and its caption with CLIP (Radford et al., 2021) and reports their
cosine. genlab follows torchmetrics' ``CLIPScore`` / ``clip_score`` exactly, since that is the
figure text-to-image papers and libraries print: each pair scores ``100 * cos(E_image, E_caption)``
and the metric is ``max(mean over pairs, 0)``. Note that torchmetrics clamps the *mean* at 0,
where Hessel et al. clamp each pair (``w * max(cos, 0)``, w = 2.5): the two agree whenever no pair
has a negative cosine; :func:`pair_scores` gives the unclamped per-pair figures for either.

Any model with ``encode_image(images)`` and ``encode_text(captions)`` is scored the same way:
genlab's own small CLIP (:func:`load_clip`, trained on the shapes scenes by ``genlab metrics
train-clip``; its figures are "CLIP score with genlab's shapes CLIP", not comparable with
OpenAI's) or a Hugging Face ``transformers.CLIPModel`` with its processor (:class:`HFCLIP`, read
from a local folder; nothing is downloaded). Images are genlab's: float (B, C, H, W) in [-1, 1],
or uint8 pixels 0..255.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.data.captions import CaptionTokenizer
from genlab.data.images import from_uint8, to_uint8
from genlab.methods.contrastive import KIND, load_clip_model
from genlab.nets.clip import CLIP


class ImageTextEncoder(Protocol):
    """What the CLIP score reads: embeddings (B, D) of images and of captions in one space
    (they need not be normalised)."""

    def encode_image(self, images: Tensor) -> Tensor:
        """Images (B, C, H, W) float in [-1, 1] to embeddings (B, D)."""
        ...

    def encode_text(self, captions: Sequence[str]) -> Tensor:
        """Captions to embeddings (B, D)."""
        ...


class CaptionedCLIP:
    """genlab's :class:`~genlab.nets.clip.CLIP` with its caption tokenizer: captions in, unit
    vectors out."""

    def __init__(self, net: CLIP, tokenizer: CaptionTokenizer) -> None:
        if tokenizer.vocab_size != net.config.text.vocab_size:
            raise GenlabError(
                f"the caption tokenizer has {tokenizer.vocab_size} words but the CLIP "
                f"{net.config.text.vocab_size}"
            )
        self.net, self.tokenizer = net, tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.no_grad()
    def encode_image(self, images: Tensor) -> Tensor:
        return self.net.encode_image(images.to(self.device))

    @torch.no_grad()
    def encode_text(self, captions: Sequence[str]) -> Tensor:
        unknown = sorted({w for c in captions for w in self.tokenizer.unknown_words(c)})
        if unknown:
            raise GenlabError(
                f"this CLIP never read the words {', '.join(unknown[:5])}: score captions of its "
                f"own data (it knows {', '.join(self.tokenizer.vocab[3:])})"
            )
        ids, mask = self.tokenizer.encode(list(captions))
        return self.net.encode_text(ids.to(self.device), mask.to(self.device))


def load_clip(folder: str | os.PathLike, device: str | torch.device = "cpu") -> CaptionedCLIP:
    """Open a CLIP folder written by ``genlab metrics train-clip`` (eval mode)."""
    net, tokenizer = load_clip_model(folder, device)
    return CaptionedCLIP(net, tokenizer)


def open_clip(folder: str | os.PathLike, device: str | torch.device = "cpu") -> ImageTextEncoder:
    """A genlab CLIP folder (:func:`load_clip`) or a Hugging Face CLIP folder written by
    ``save_pretrained`` (:class:`HFCLIP`), told apart by their ``config.json``."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise GenlabError(
            f"no CLIP in {folder}: train one with 'genlab metrics train-clip --out {folder}', or "
            "pass a Hugging Face CLIP folder"
        )
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError) as e:
        raise GenlabError(f"{path} is not readable JSON ({e})") from e
    if meta.get("kind") == KIND:
        return load_clip(folder, device)
    if meta.get("model_type") == "clip":
        return HFCLIP.from_pretrained(folder, device)
    raise GenlabError(f"{folder} holds neither a genlab CLIP nor a Hugging Face CLIP")


def _projected(output: Any) -> Tensor:
    """transformers < 5 returns the projected features, 5 an output whose ``pooler_output`` they
    are."""
    return output if isinstance(output, Tensor) else output.pooler_output


class HFCLIP:
    """A ``transformers.CLIPModel`` and its ``CLIPProcessor``, read as torchmetrics reads them:
    images go to the processor as uint8 pixels (resize, centre crop, CLIP's normalisation),
    captions are padded to the batch's longest and cut at the model's
    ``max_position_embeddings``."""

    def __init__(self, model: Any, processor: Any) -> None:
        self.model, self.processor = model.eval(), processor

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> HFCLIP:
        """A local folder written by ``save_pretrained`` (model and processor); never downloads."""
        try:
            from transformers import CLIPModel, CLIPProcessor
        except ImportError as e:
            raise GenlabError(
                f"reading a Hugging Face CLIP needs transformers ({e}): pip install transformers"
            ) from e
        try:
            model = CLIPModel.from_pretrained(path, local_files_only=True)
            processor = CLIPProcessor.from_pretrained(path, local_files_only=True)
        except OSError as e:
            raise GenlabError(f"{path} is not a saved Hugging Face CLIP folder ({e})") from e
        return cls(model.to(device), processor)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode_image(self, images: Tensor) -> Tensor:
        pixels = to_uint8(images).cpu()
        processed = self.processor(images=list(pixels), return_tensors="pt", padding=True)
        return _projected(self.model.get_image_features(processed["pixel_values"].to(self.device)))

    @torch.no_grad()
    def encode_text(self, captions: Sequence[str]) -> Tensor:
        processed = self.processor(text=list(captions), return_tensors="pt", padding=True)
        ids, mask = processed["input_ids"], processed["attention_mask"]
        limit = getattr(
            getattr(self.model.config, "text_config", None), "max_position_embeddings", None
        )
        if limit is not None:
            ids, mask = ids[..., :limit], mask[..., :limit]
        return _projected(self.model.get_text_features(ids.to(self.device), mask.to(self.device)))


def _float_images(images: Tensor) -> Tensor:
    if images.ndim != 4:
        raise GenlabError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    return from_uint8(images) if images.dtype == torch.uint8 else images.float()


@torch.no_grad()
def pair_scores(
    model: ImageTextEncoder, images: Tensor, captions: Sequence[str], batch_size: int = 256
) -> Tensor:
    """``100 * cos(E_image, E_caption)`` of each (image, caption) pair, unclamped, (N,)."""
    if len(images) != len(captions):
        raise GenlabError(
            f"{len(images)} images but {len(captions)} captions: pass one caption per image"
        )
    if len(captions) == 0:
        raise GenlabError("no images to score")
    if batch_size < 1:
        raise GenlabError(f"batch_size must be positive, got {batch_size}")
    images = _float_images(images)
    out = []
    for start in range(0, len(captions), batch_size):
        image_emb = model.encode_image(images[start : start + batch_size]).float()
        text_emb = model.encode_text(list(captions[start : start + batch_size])).float()
        image_emb = image_emb / image_emb.norm(p=2, dim=-1, keepdim=True)
        text_emb = text_emb / text_emb.norm(p=2, dim=-1, keepdim=True)
        out.append((100 * (image_emb * text_emb).sum(-1)).cpu())
    return torch.cat(out)


def clip_score(
    model: ImageTextEncoder, images: Tensor, captions: Sequence[str], batch_size: int = 256
) -> float:
    """torchmetrics' CLIP score: ``max(mean of 100 * cos(E_image, E_caption), 0)`` over the
    pairs (image ``i`` with caption ``i``); between 0 and 100, higher is better."""
    return max(float(pair_scores(model, images, captions, batch_size).mean()), 0.0)
