"""The conditional masked language model (CMLM) of mask-predict (Ghazvininejad et al., 2019,
"Mask-Predict: Parallel Decoding of Conditional Masked Language Models").

An encoder-decoder Transformer, as in the paper, rather than one bidirectional Transformer over
[source; target]: in a single stack the source would attend to the target, so the length (read
from the source) would see how many target slots there are, and every mask-predict iteration
would re-encode the source. Here the encoder runs once per sentence and its [LEN] token (an extra
id past the vocabulary, in front of the source, like BERT's [CLS]) predicts the target length as
a class in ``0..max_target``; the decoder attends bidirectionally over the partly masked target
and cross-attends to the encoder. The encoder is genlab's GPT with ``causal=False`` and no
unembedding; the decoder's blocks add cross-attention to the GPT's self-attention and MLP, whose
layer names they keep (``decoder.blocks.{i}.attn.qkv``, ``...cross.q``), so adapters find them.

A network only: ``forward`` returns logits. The loss on masked tokens and the length, and
mask-predict itself, are in :mod:`genlab.methods.masked`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.errors import GenlabError
from genlab.nets.gpt import GPT, GPTConfig
from genlab.nets.transformer import MLP, SelfAttention, dropout


@dataclass(frozen=True)
class CMLMConfig:
    """Sizes of the encoder and the decoder (``n_layer`` each) over one shared vocabulary."""

    vocab_size: int = 64
    max_source: int = 64  # source tokens the encoder reads ([LEN] not counted)
    max_target: int = 64  # longest target; lengths 0..max_target are the length classes
    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_source", "max_target", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise GenlabError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise GenlabError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")

    def gpt(self, vocab_size: int, block_size: int) -> GPTConfig:
        return GPTConfig(
            vocab_size=vocab_size,
            block_size=block_size,
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_embd=self.n_embd,
            dropout=self.dropout,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CMLMConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise GenlabError(f"unknown CMLM config field '{unknown[0]}'; is this a CMLM run?")
        return cls(**d)


class CrossAttention(nn.Module):
    """Queries from the target, keys and values from the encoder's output (Vaswani et al.)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.q = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.kv = nn.Linear(config.n_embd, 2 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x: Tensor, memory: Tensor, memory_mask: Tensor) -> Tensor:
        B, T, C = x.shape
        H, D = self.n_head, C // self.n_head
        q = self.q(x).view(B, T, H, D).transpose(1, 2)
        k, v = self.kv(memory).view(B, -1, 2, H, D).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=memory_mask.bool()[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class DecoderBlock(nn.Module):
    """Pre-LayerNorm: bidirectional self-attention, cross-attention to the source, MLP."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)
        self.cross = CrossAttention(config)
        self.ln_3 = nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, mask: Tensor, memory: Tensor, memory_mask: Tensor) -> Tensor:
        x = x + self.attn(
            self.ln_1(x),
            mask=mask,
            is_causal=False,
            rotary=None,
            positions=None,
            cache=None,
            layer=0,
        )
        x = x + self.cross(self.ln_2(x), memory, memory_mask)
        return x + self.mlp(self.ln_3(x))


class Decoder(nn.Module):
    """Target tokens (some of them ``<mask>``) and the encoded source to logits over words."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = dropout(config.dropout)
        self.blocks = nn.ModuleList(DecoderBlock(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(
        self, target: Tensor, target_mask: Tensor, memory: Tensor, memory_mask: Tensor
    ) -> Tensor:
        T = target.shape[1]
        x = self.wte(target) + self.wpe.weight[:T]
        if self.training:
            x = self.drop(x)
        # every real slot sees every real slot; a padding query keeps itself (no empty row)
        eye = torch.eye(T, dtype=torch.bool, device=target.device)
        mask = target_mask.bool()[:, None, None, :] | eye
        for block in self.blocks:
            x = block(x, mask, memory, memory_mask)
        return self.lm_head(self.ln_f(x))


class CMLM(nn.Module):
    """``model(source, source_mask, target, target_mask) -> (token_logits, length_logits)``:
    (B, T, V) word logits at every target slot and (B, max_target + 1) length logits.

    Sources and targets are right-padded id tensors with masks (1 real, 0 padding).
    """

    def __init__(self, config: CMLMConfig) -> None:
        super().__init__()
        self.config = config
        self.len_id = config.vocab_size  # the [LEN] token: one id past the shared vocabulary
        self.encoder = GPT(config.gpt(config.vocab_size + 1, config.max_source + 1), lm_head=False)
        self.length_head = nn.Linear(config.n_embd, config.max_target + 1)
        self.decoder = Decoder(config.gpt(config.vocab_size, config.max_target))
        self.decoder.apply(GPT._init_weights)
        nn.init.normal_(self.length_head.weight, std=0.02)
        nn.init.zeros_(self.length_head.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def encode(self, source: Tensor, source_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(memory, memory_mask, length_logits)``: the encoded [LEN] + source, its mask, and
        the length classes read from [LEN]. Mask-predict encodes once and decodes N times."""
        if source.shape[1] > self.config.max_source:
            raise GenlabError(
                f"a source of {source.shape[1]} tokens; the model reads at most "
                f"{self.config.max_source}"
            )
        B = source.shape[0]
        ids = torch.cat((source.new_full((B, 1), self.len_id), source), dim=1)
        mask = torch.cat((source_mask.new_ones(B, 1), source_mask), dim=1)
        memory = self.encoder.hidden_states(ids, attention_mask=mask, causal=False)
        return memory, mask, self.length_head(memory[:, 0])

    def decode(
        self, memory: Tensor, memory_mask: Tensor, target: Tensor, target_mask: Tensor
    ) -> Tensor:
        """Word logits (B, T, V) at every slot of ``target`` given the encoded source."""
        if target.shape[1] > self.config.max_target:
            raise GenlabError(
                f"a target of {target.shape[1]} tokens; the model writes at most "
                f"{self.config.max_target}"
            )
        return self.decoder(target, target_mask, memory, memory_mask)

    def forward(
        self, source: Tensor, source_mask: Tensor, target: Tensor, target_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        memory, memory_mask, length_logits = self.encode(source, source_mask)
        return self.decode(memory, memory_mask, target, target_mask), length_logits
