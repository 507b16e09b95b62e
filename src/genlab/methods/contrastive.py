"""Contrastive image-caption learning: CLIP's symmetric InfoNCE loss, its trainer step and its
run folders.

CLIP (Radford et al., 2021) learns from a batch of N matching (image, caption) pairs by scoring
all N x N combinations: the scaled cosines ``logits[i, j]`` of image ``i`` and caption ``j`` are
read as N-way classifications, each image over the captions (rows) and each caption over the
images (columns), with the matching pair as the label, and the loss is the mean of the two
cross-entropies (InfoNCE, van den Oord et al., 2018; the paper's Figure 3 pseudocode). Every other
caption of the batch is a negative, so a larger batch is a harder task. The network is
``genlab.nets.clip.CLIP``; a trained one is opened with :func:`load_clip_model` (or, with its
captions, ``genlab.metrics.clip_score.load_clip``).

Under gradient accumulation or several processes each micro-batch is its own set of negatives
(the real CLIP gathers embeddings over all workers); the loss is then that of the smaller batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.core.distributed import unwrap
from genlab.core.errors import GenlabError
from genlab.core.registry import ExtraFile, Kind, Loaded, load, register
from genlab.data.captions import CaptionTokenizer
from genlab.data.images import from_uint8
from genlab.nets.clip import CLIP, CLIPConfig


def clip_loss(logits_per_image: Tensor) -> Tensor:
    """Symmetric InfoNCE over a (N, N) matrix of scaled similarities whose diagonal holds the
    matching pairs: (CE(rows, diagonal) + CE(columns, diagonal)) / 2."""
    if logits_per_image.ndim != 2 or logits_per_image.shape[0] != logits_per_image.shape[1]:
        raise GenlabError(
            f"the contrastive loss needs a square similarity matrix, got {tuple(logits_per_image.shape)}"
        )
    logits = logits_per_image.float()
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def retrieval_accuracy(logits_per_image: Tensor) -> tuple[Tensor, Tensor]:
    """Top-1 retrieval within the batch: the share of images whose best caption is their own
    (image -> text), and of captions whose best image is their own (text -> image)."""
    labels = torch.arange(len(logits_per_image), device=logits_per_image.device)
    i2t = (logits_per_image.argmax(1) == labels).float().mean()
    t2i = (logits_per_image.argmax(0) == labels).float().mean()
    return i2t, t2i


@dataclass(frozen=True)
class ContrastiveStep:
    """The trainer step: a batch ``(pixels uint8 (B, C, H, W), ids (B, L), mask (B, L))`` of
    matching pairs to :func:`clip_loss`. Images get Gaussian noise of a sigma drawn up to
    ``noise`` per image, so the model reads generated images, rarely as clean as rendered ones,
    as it reads real ones (as the feature net does)."""

    noise: float = 0.1

    def __call__(
        self, model: torch.nn.Module, batch: tuple[Tensor, Tensor, Tensor]
    ) -> tuple[Tensor, dict]:
        pixels, ids, mask = batch
        images = from_uint8(pixels)
        if self.noise > 0:
            sigma = torch.rand(images.shape[0], 1, 1, 1, device=images.device) * self.noise
            images = images + sigma * torch.randn_like(images)
        logits = model(images, ids, mask)
        i2t, t2i = retrieval_accuracy(logits.detach())
        metrics: dict[str, Any] = {
            "samples": images.shape[0],
            "acc_i2t": i2t,
            "acc_t2i": t2i,
            "logit_scale": unwrap(model).scale().detach(),  # type: ignore[operator]
        }
        return clip_loss(logits), metrics


# ---------------------------------------------------------------------------------------------
# Run folders

KIND = "clip"
CAPTION_TOKENIZER_FILE = "caption_tokenizer.json"


def _read_caption_tokenizer(path: Path) -> CaptionTokenizer:
    return CaptionTokenizer.from_json(path.read_text())


def _check_vocabulary(loaded: Loaded) -> None:
    tokenizer, config = loaded.files["tokenizer"], loaded.config
    if tokenizer.vocab_size != config.text.vocab_size:
        raise GenlabError(
            f"{loaded.path}: the caption tokenizer has {tokenizer.vocab_size} words but the "
            f"CLIP {config.text.vocab_size}"
        )


CAPTIONS = ExtraFile(
    CAPTION_TOKENIZER_FILE, "tokenizer", _read_caption_tokenizer, "it is needed to read captions"
)
register(Kind(KIND, CLIPConfig, CLIP, (CAPTIONS,), _check_vocabulary))


def load_clip_model(
    folder: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[CLIP, CaptionTokenizer]:
    """Open a CLIP run folder (eval mode): the network and its caption tokenizer."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GenlabError(
            f"no CLIP in {folder}: train one with 'genlab metrics train-clip --out {folder}'"
        )
    loaded = load(folder, KIND, device)
    return loaded.model, loaded.files["tokenizer"]  # type: ignore[return-value]
