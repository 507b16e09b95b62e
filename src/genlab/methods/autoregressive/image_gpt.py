"""Image GPT (Chen et al., 2020, "Generative Pretraining from Pixels"): a GPT over image tokens.

An image is a grid of discrete tokens (iGPT's palette pixels, ``genlab.data.images.palette``, or
a VQ-VAE's codes) read in raster order, and a GPT learns ``p(code_i | caption, codes before
i)``: the sequence is ``[caption words, BOS, codes]``, and only the codes are predicted (over
the codes alone, so the per-token probabilities are a distribution over codes and
:func:`log_likelihood` is an exact likelihood). Sampling writes one code per forward with the KV
cache; classifier-free guidance (Ho & Salimans, 2022) runs a null-caption copy of every row
beside it and extrapolates the logits.

:class:`TokenImageConfig` (the vocabulary layout, sizes and caption handling) is shared with
MaskGIT (``genlab.methods.masked.maskgit``), which reads the same tokens bidirectionally.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.errors import GenlabError, refuse_invalid
from genlab.core.registry import Kind, register
from genlab.methods.autoregressive.decoding import SamplingConfig, process_logits
from genlab.methods.diffusion.guidance import cfg_combine
from genlab.nets.gpt import GPT, GPTConfig
from genlab.nets.transformer import KVCache

KIND = "igpt"


@dataclass(frozen=True)
class TokenImageConfig:
    """A Transformer over a ``grid`` (h, w) of image tokens, after a caption of ``cond_length``
    words when ``cond_vocab`` > 0 (the caption tokenizer's vocabulary size and max_length).

    Ids: the codes ``0 .. num_codes - 1``, one special token ``num_codes`` (image GPT's BOS,
    MaskGIT's MASK), then the caption words at ``num_codes + 1 + word id``. Word 0 is
    ``<pad>``: it is read like any word, so an all-pad caption is the null caption.
    """

    num_codes: int = 512
    grid: tuple[int, int] = (16, 16)
    cond_vocab: int = 0
    cond_length: int = 0
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", tuple(self.grid))  # a list after a JSON round trip
        refuse_invalid(
            self,
            {
                "num_codes": self.num_codes >= 1,
                "grid": len(self.grid) == 2 and min(self.grid) >= 1,
                "cond_vocab": self.cond_vocab >= 0,
                "cond_length": self.cond_length >= 0,
                "dropout": 0.0 <= self.dropout < 1.0,
            },
        )
        if self.cond_vocab and self.cond_length < 1:
            raise GenlabError(
                "a captioned model (cond_vocab > 0) needs cond_length >= 1: the caption "
                "tokenizer's max_length"
            )
        self.gpt()  # the GPT's own checks (n_embd a multiple of n_head, positive sizes)

    @property
    def num_tokens(self) -> int:
        """Codes per image: h * w."""
        return self.grid[0] * self.grid[1]

    @property
    def caption_length(self) -> int:
        """Caption positions in front of the codes (0 when unconditional)."""
        return self.cond_length if self.cond_vocab else 0

    def gpt(self) -> GPTConfig:
        return GPTConfig(
            vocab_size=self.num_codes + 1 + self.cond_vocab,
            block_size=self.caption_length + self.num_tokens,
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_embd=self.n_embd,
            dropout=self.dropout,
        )

    def caption_ids(self, captions: Tensor | None, batch: int, device: torch.device) -> Tensor:
        """(batch, caption_length) ids in the model's vocabulary of caption word ids (B, L),
        right-padded to ``cond_length``; ``None`` is the null caption. Empty if unconditional."""
        L = self.caption_length
        if L == 0:
            return torch.zeros(batch, 0, dtype=torch.long, device=device)
        if captions is None:
            captions = torch.zeros(batch, L, dtype=torch.long, device=device)
        if captions.ndim != 2 or len(captions) != batch:
            raise GenlabError(
                f"captions of shape {tuple(captions.shape)} for {batch} images: give (B, L) ids"
            )
        if captions.shape[1] > L:
            raise GenlabError(
                f"captions of {captions.shape[1]} tokens but the model reads {L} (cond_length): "
                "use the caption tokenizer the model was built with"
            )
        if captions.numel() and (captions.min() < 0 or captions.max() >= self.cond_vocab):
            raise GenlabError(f"caption ids must lie in [0, {self.cond_vocab}) (cond_vocab)")
        captions = F.pad(captions.to(device), (0, L - captions.shape[1]))
        return captions + self.num_codes + 1

    def flat_codes(self, codes: Tensor, special: bool = False) -> Tensor:
        """Codes (B, h, w) as (B, h * w) in raster order, checked against the grid and the code
        range (``special`` also admits the special id, MaskGIT's MASK)."""
        if codes.ndim != 3 or tuple(codes.shape[1:]) != self.grid:
            raise GenlabError(
                f"codes of shape {tuple(codes.shape)} do not fit the model's grid {self.grid}: "
                "give (B, h, w) from the tokenizer it was trained on"
            )
        top = self.num_codes + int(special)
        if codes.numel() and (codes.min() < 0 or codes.max() >= top):
            raise GenlabError(f"codes must lie in [0, {top}) for a model of {self.num_codes}")
        return codes.reshape(len(codes), -1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TokenImageConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise GenlabError(f"unknown {cls.__name__} field '{unknown[0]}'")
        return cls(**d)


@dataclass(frozen=True)
class ImageGPTConfig(TokenImageConfig):
    """Image GPT's sizes (the special token is BOS)."""


class ImageGPT(nn.Module):
    """A GPT over ``[caption, BOS, codes]``; ``forward`` gives every code's logits."""

    def __init__(self, config: ImageGPTConfig) -> None:
        super().__init__()
        self.config = config
        self.gpt = GPT(config.gpt())

    def prompt(self, captions: Tensor | None, batch: int) -> Tensor:
        """The ids before the first code: the caption, then BOS (B, caption_length + 1)."""
        device = self.gpt.wte.weight.device
        ids = self.config.caption_ids(captions, batch, device)
        bos = torch.full((batch, 1), self.config.num_codes, dtype=torch.long, device=device)
        return torch.cat((ids, bos), dim=1)

    def forward(self, codes: Tensor, captions: Tensor | None = None) -> Tensor:
        """Logits (B, h * w, num_codes) of each code (raster order) given the caption and the
        codes before it (teacher forcing)."""
        flat = self.config.flat_codes(codes)
        ids = torch.cat((self.prompt(captions, len(codes)), flat[:, :-1]), dim=1)
        logits, _ = self.gpt(ids)
        return logits[:, self.config.caption_length :, : self.config.num_codes]

    def next_logits(self, ids: Tensor, cache: KVCache) -> Tensor:
        """Logits (B, num_codes) of the code after ``ids`` (B, T), through the KV ``cache``."""
        logits, _ = self.gpt(ids, cache=cache, last_only=True)
        return logits[:, -1, : self.config.num_codes]


class ImageGPTLoss:
    """The trainer's step on ``(codes, captions)``: cross-entropy of every code (nats)."""

    def __call__(
        self, model: nn.Module, batch: tuple[Tensor, Tensor | None]
    ) -> tuple[Tensor, dict]:
        codes, captions = batch
        logits = model(codes, captions)
        loss = F.cross_entropy(logits.float().flatten(0, 1), codes.reshape(-1))
        return loss, {"bits_per_token": loss.detach() / math.log(2), "samples": len(codes)}


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) inside, the model's own mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def choose(logits: Tensor, generator: torch.Generator, config: SamplingConfig) -> Tensor:
    """One token per row of ``logits`` (B, V): argmax at temperature 0, else a draw from the
    tempered, top-k-filtered distribution on ``generator``'s device, by the Gumbel-max trick
    (argmax of log-probs plus Gumbel noise: the same distribution as ``torch.multinomial``,
    several times faster on a CPU for MaskGIT's thousands of rows)."""
    if config.temperature == 0:
        return logits.argmax(-1)
    logp = process_logits(logits, None, config).log_softmax(-1).to(generator.device)
    u = torch.rand(logp.shape, generator=generator, device=generator.device)
    drawn = (logp - torch.log(-torch.log(u.clamp_min(1e-20)))).argmax(-1)
    return drawn.to(logits.device)


@torch.no_grad()
def sample(
    model: ImageGPT,
    n: int,
    captions: Tensor | None,
    generator: torch.Generator,
    temperature: float = 1.0,
    top_k: int | None = None,
    guidance: float = 0.0,
) -> Tensor:
    """Codes (n, h, w): one forward of one token per code, with the KV cache.

    ``guidance`` w > 0: classifier-free guidance, logits ``cond + w (cond - uncond)`` with the
    null caption as ``uncond`` (w = 0 is the plain model; diffusion's scale s is 1 + w).
    ``temperature=0`` is greedy.
    """
    config = SamplingConfig(temperature=temperature, top_k=top_k)
    c = model.config
    if guidance < 0 or (guidance and not c.cond_vocab):
        raise GenlabError(f"guidance must be >= 0 and needs a captioned model, got {guidance}")
    with evaluating(model):
        prompt = model.prompt(captions, n)
        if guidance:
            prompt = torch.cat((prompt, model.prompt(None, n)))
        rows = len(prompt)
        cache = model.gpt.new_cache(rows, max_len=prompt.shape[1] + c.num_tokens - 1)
        logits = model.next_logits(prompt, cache)
        codes = []
        for i in range(c.num_tokens):
            if guidance:
                cond, uncond = logits.float().chunk(2)
                logits = cfg_combine(uncond, cond, 1.0 + guidance)
            code = choose(logits.float(), generator, config)
            codes.append(code)
            if i + 1 < c.num_tokens:
                logits = model.next_logits(code.repeat(rows // n)[:, None], cache)
    return torch.stack(codes, dim=1).view(n, *c.grid)


@torch.no_grad()
def log_likelihood(model: ImageGPT, codes: Tensor, captions: Tensor | None = None) -> Tensor:
    """``log p(codes | caption)`` (N,) in nats: the sum of the per-code log-probs."""
    codes = codes.to(model.gpt.wte.weight.device)
    with evaluating(model):
        logp = model(codes, captions).float().log_softmax(-1)
        flat = codes.reshape(len(codes), -1)
        return logp.gather(-1, flat[..., None]).squeeze(-1).sum(1)


def bits_per_token(model: ImageGPT, codes: Tensor, captions: Tensor | None = None) -> Tensor:
    """Negative log-likelihood (N,) in bits per code."""
    return -log_likelihood(model, codes, captions) / (model.config.num_tokens * math.log(2))


register(Kind(KIND, ImageGPTConfig, ImageGPT))
