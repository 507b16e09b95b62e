"""A trained detector of generated text: logistic regression over hashed token n-grams.

The baseline the zero-shot detectors are measured against (as in Solaiman et al., 2019, "Release
Strategies and the Social Impacts of Language Models", whose TF-IDF logistic regression over
uni- and bigrams detected GPT-2 text): it needs labelled examples of both sides but not the
model. Each text's unigram and bigram counts are hashed into ``n_features`` buckets,
log-scaled (``log(1 + count)``), weighted by the inverse document frequency learnt from the
training texts and L2-normalised; the weights are the L2-penalised logistic fit, found by
full-batch L-BFGS (the loss is convex, so the fit is that of scikit-learn's
``LogisticRegression``). The detector is a registry kind, so ``genlab.load`` opens its folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.errors import GenlabError
from genlab.core.registry import Kind, load, register, save
from genlab.research.watermark import MASK32, mix32

KIND = "ngram-detector"
BIGRAM_SALT = 0x9E3779B9  # keeps bigram buckets apart from unigram ones


@dataclass
class NgramDetectorConfig:
    n_features: int = 4096  # hash buckets for unigrams and bigrams together
    bigrams: bool = True
    l2: float = 1e-3  # penalty (l2 / 2) * |w|^2 added to the mean log-loss (the bias is free)
    max_iter: int = 200  # L-BFGS iterations

    def __post_init__(self) -> None:
        if self.n_features < 1:
            raise GenlabError(f"n_features must be >= 1, got {self.n_features}")
        if self.l2 < 0:
            raise GenlabError(f"l2 must be >= 0, got {self.l2}")
        if self.max_iter < 1:
            raise GenlabError(f"max_iter must be >= 1, got {self.max_iter}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NgramDetectorConfig:
        return cls(**d)


class NgramDetector(nn.Module):
    """``score(token_lists)``: the logit that each text was generated (positive: machine)."""

    def __init__(self, config: NgramDetectorConfig) -> None:
        super().__init__()
        self.config = config
        self.linear = nn.Linear(config.n_features, 1)
        self.register_buffer("idf", torch.ones(config.n_features))

    def counts(self, token_lists: Sequence[Sequence[int]]) -> Tensor:
        """Hashed uni- and bigram counts (N, n_features)."""
        n = self.config.n_features
        rows, buckets = [], []
        for i, tokens in enumerate(token_lists):
            ids = torch.tensor([int(t) for t in tokens], dtype=torch.long)
            if ids.numel() and int(ids.min()) < 0:
                raise GenlabError("token ids must be >= 0 for the n-gram detector")
            keys = mix32(ids & MASK32)
            if self.config.bigrams and ids.numel() > 1:
                keys = torch.cat([keys, mix32(keys[:-1] ^ BIGRAM_SALT ^ (ids[1:] & MASK32))])
            buckets.append(keys % n)
            rows.append(torch.full_like(keys, i))
        flat = torch.cat(rows) * n + torch.cat(buckets) if rows else torch.zeros(0)
        return torch.bincount(flat.long(), minlength=len(token_lists) * n).view(-1, n).float()

    def features(self, token_lists: Sequence[Sequence[int]]) -> Tensor:
        """Log-scaled, idf-weighted, L2-normalised counts (N, n_features)."""
        x = torch.log1p(self.counts(token_lists)).to(self.idf.device) * self.idf
        return F.normalize(x, dim=-1)

    def forward(self, features: Tensor) -> Tensor:
        return self.linear(features).squeeze(-1)

    @torch.no_grad()
    def score(self, token_lists: Sequence[Sequence[int]]) -> Tensor:
        """The machine logit of each text (N,)."""
        return self(self.features(token_lists)).cpu()


register(Kind(KIND, NgramDetectorConfig, NgramDetector))


def train_ngram_detector(
    human: list[list[int]],
    machine: list[list[int]],
    cfg: NgramDetectorConfig | None = None,
    seed: int = 0,
) -> NgramDetector:
    """Fit the detector on token lists written by people (label 0) and by a model (label 1).

    The seed draws the starting weights; the loss is convex, so every seed reaches the same fit.
    """
    if not human or not machine:
        raise GenlabError("training the n-gram detector needs human and machine texts, both")
    cfg = cfg or NgramDetectorConfig()
    model = NgramDetector(cfg)
    texts = [*human, *machine]
    df = (model.counts(texts) > 0).float().sum(0)
    model.idf.copy_(torch.log((1 + len(texts)) / (1 + df)) + 1)  # scikit-learn's smooth idf
    x = model.features(texts)
    y = torch.cat([torch.zeros(len(human)), torch.ones(len(machine))])
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.linear.weight.normal_(0.0, 0.01, generator=gen)
        model.linear.bias.zero_()
    opt = torch.optim.LBFGS(
        model.linear.parameters(),
        lr=1.0,
        max_iter=cfg.max_iter,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        loss = loss + 0.5 * cfg.l2 * model.linear.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return model.eval()


def save_ngram_detector(folder: str | os.PathLike, model: NgramDetector) -> Path:
    """Write the detector as a registry folder (``genlab.load`` opens it)."""
    return save(folder, model, KIND, model.config)


def load_ngram_detector(
    folder: str | os.PathLike, device: str | torch.device = "cpu"
) -> NgramDetector:
    """Open a folder written by :func:`save_ngram_detector`."""
    return load(folder, KIND, device).model  # type: ignore[return-value]
