"""GPT: a decoder-only Transformer language model.

Implements the architecture of GPT-2 (Radford et al., 2019, "Language Models are Unsupervised
Multitask Learners"): pre-LayerNorm blocks of multi-head self-attention and a GELU MLP, learned
position embeddings and an output layer tied to the token embedding. Rotary position embeddings
(Su et al., 2021, "RoFormer") are an option. Attention goes through PyTorch's
``scaled_dot_product_attention`` so that fused kernels are used where the device has them.

The model is a plain ``nn.Module`` that knows nothing of training. Besides the usual
``forward(idx, targets)``, it decodes incrementally with a ``KVCache`` (keys and values of past
positions are stored, so each new token costs one position of compute), and it accepts a padding
mask and explicit positions so that a batch of prompts of different lengths can be left-padded
and decoded together. Attention masking is a parameter (``causal=False`` gives the bidirectional
encoder that mask-predict needs).

Layer names are stable and meaningful, because adapters (LoRA) find layers by name:
``blocks.{i}.attn.qkv``, ``blocks.{i}.attn.proj``, ``blocks.{i}.mlp.fc``, ``blocks.{i}.mlp.proj``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.errors import GenlabError
from genlab.nets.transformer import Block, KVCache, Rotary, dropout

IGNORE_INDEX = -100  # a target the loss skips (prompt tokens, padding): PyTorch's convention


@dataclass(frozen=True)
class GPTConfig:
    """The few numbers that define a GPT; scaling sweeps vary ``n_layer`` and ``n_embd``."""

    vocab_size: int = 512
    block_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False
    pos: str = "learned"  # "learned" (GPT-2) or "rope" (rotary)
    tie_weights: bool = True
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise GenlabError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; pick n_embd as a "
                "multiple of n_head"
            )
        if self.pos not in ("learned", "rope"):
            raise GenlabError(f"unknown positional encoding '{self.pos}': use learned or rope")
        if self.pos == "rope" and (self.n_embd // self.n_head) % 2:
            raise GenlabError("rotary embeddings need an even head size (n_embd / n_head)")
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise GenlabError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GenlabError(f"unknown GPT config field '{unknown[0]}'; is this a GPT checkpoint?")
        return cls(**d)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GPTConfig:
        """A named size (see ``PRESETS``) with any field overridden."""
        if name not in PRESETS:
            raise GenlabError(f"unknown GPT preset '{name}'; choose one of {', '.join(PRESETS)}")
        return replace(PRESETS[name], **overrides)


# From seconds on a laptop CPU up to GPT-2 (124M) and GPT-2 medium (350M).
PRESETS: dict[str, GPTConfig] = {
    "tiny": GPTConfig(vocab_size=512, block_size=128, n_layer=2, n_head=2, n_embd=64),
    "mini": GPTConfig(vocab_size=1024, block_size=256, n_layer=4, n_head=4, n_embd=128),
    "small": GPTConfig(vocab_size=2048, block_size=256, n_layer=6, n_head=6, n_embd=384),
    "base": GPTConfig(vocab_size=8192, block_size=512, n_layer=8, n_head=8, n_embd=512),
    "gpt2": GPTConfig(
        vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, bias=True
    ),
    "gpt2-medium": GPTConfig(
        vocab_size=50257, block_size=1024, n_layer=24, n_head=16, n_embd=1024, bias=True
    ),
}


class GPT(nn.Module):
    """Decoder-only Transformer: token ids in, next-token logits out.

    ``lm_head=False`` builds the trunk without its unembedding (a reward model's backbone, as in
    InstructGPT): :meth:`hidden_states` is then its output.
    """

    def __init__(self, config: GPTConfig, lm_head: bool = True) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = (
            nn.Embedding(config.block_size, config.n_embd) if config.pos == "learned" else None
        )
        self.rotary = (
            Rotary(config.head_dim, config.block_size, config.rope_theta)
            if config.pos == "rope"
            else None
        )
        self.drop = dropout(config.dropout)
        # Optional learned embeddings placed before every sequence (soft prompts, Lester et al.,
        # 2021): a module returning (B, P, C); genlab.adapt sets it. Callers keep their own view
        # of positions, masks and cache lengths: the P extra leading positions are handled here.
        self.prefix: nn.Module | None = None
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False) if lm_head else None
        if config.tie_weights and self.lm_head is not None:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layer) so depth does not blow
        # up the residual stream at initialisation.
        for name, p in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without position embeddings (as in Kaplan et al.).

        The token embedding stays counted: with tied weights it is also the output layer.
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.wpe is not None:
            n -= self.wpe.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None, training: bool = True) -> float:
        """Matmul FLOPs per token: 6N + 12·L·d·T for training, a third of it for a forward.

        N counts the non-embedding parameters (``num_params()``), and 12·L·d·T the attention
        scores and weighted sums over a context of T (PaLM, Chowdhery et al. 2022, appendix B).
        """
        T = self.config.block_size if seq_len is None else seq_len
        c = self.config
        train = 6 * self.num_params() + 12 * c.n_layer * c.n_embd * T
        return float(train if training else train / 3)

    def resize_vocab(self, vocab_size: int) -> None:
        """Grow or shrink the vocabulary (e.g. chat tokens added to GPT-2's 50257).

        New rows start at the mean embedding, so a new token begins as an average token rather
        than as noise that dominates the softmax.
        """
        old = self.wte.weight.data
        n = min(vocab_size, old.shape[0])
        wte = nn.Embedding(vocab_size, old.shape[1], device=old.device, dtype=old.dtype)
        wte.weight.data[:n] = old[:n]
        wte.weight.data[n:] = old.mean(0)
        self.wte = wte
        if self.lm_head is not None and self.config.tie_weights:
            self.lm_head = nn.Linear(old.shape[1], vocab_size, bias=False)
            self.lm_head.weight = self.wte.weight
        elif self.lm_head is not None:
            head = self.lm_head.weight.data
            self.lm_head = nn.Linear(old.shape[1], vocab_size, bias=False)
            self.lm_head.to(device=head.device, dtype=head.dtype)
            self.lm_head.weight.data[:n] = head[:n]
            self.lm_head.weight.data[n:] = head.mean(0)
        self.config = replace(self.config, vocab_size=vocab_size)

    @property
    def prefix_length(self) -> int:
        """How many prefix (soft-prompt) positions precede every sequence."""
        return 0 if self.prefix is None else self.prefix.length  # type: ignore[return-value]

    def new_cache(
        self, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None
    ) -> KVCache:
        """An empty KV cache on the model's device for ``batch_size`` sequences."""
        c = self.config
        w = self.wte.weight
        return KVCache(
            c.n_layer,
            batch_size,
            c.n_head,
            min(c.block_size, (max_len or c.block_size) + self.prefix_length),
            c.head_dim,
            device=w.device,
            dtype=dtype or w.dtype,
        )

    def forward(
        self,
        idx: Tensor,
        targets: Tensor | None = None,
        *,
        attention_mask: Tensor | None = None,
        positions: Tensor | None = None,
        cache: KVCache | None = None,
        causal: bool = True,
        last_only: bool = False,
        segment_ids: Tensor | None = None,
        return_hidden: bool = False,
    ) -> tuple[Tensor, ...]:
        """Logits for every position of ``idx`` (B, T) and, given ``targets``, the mean loss:
        ``(logits, loss)``, plus the final hidden states (B, T, C) with ``return_hidden``.

        - ``targets`` (B, T): next-token ids; positions set to ``IGNORE_INDEX`` (-100) are ignored (loss masks).
        - ``last_only`` computes logits for the last position only (prefill for generation).
        - the other arguments are :meth:`hidden_states`'.
        """
        if self.lm_head is None:
            raise GenlabError("this GPT has no unembedding (lm_head=False): use hidden_states")
        x = self.hidden_states(
            idx,
            attention_mask=attention_mask,
            positions=positions,
            cache=cache,
            causal=causal,
            segment_ids=segment_ids,
        )
        loss = None
        if targets is not None:
            logits = self.lm_head(x)
            loss = F.cross_entropy(
                logits.float().view(-1, logits.size(-1)),
                targets.reshape(-1),
                ignore_index=IGNORE_INDEX,
            )
        else:
            logits = self.lm_head(x[:, -1:, :] if last_only else x)
        return (logits, loss, x) if return_hidden else (logits, loss)

    def hidden_states(
        self,
        idx: Tensor,
        *,
        attention_mask: Tensor | None = None,
        positions: Tensor | None = None,
        cache: KVCache | None = None,
        causal: bool = True,
        segment_ids: Tensor | None = None,
    ) -> Tensor:
        """The final (normalised) hidden states (B, T, C) of ``idx`` (B, T): what the
        unembedding reads, and what value and reward heads read.

        - ``attention_mask`` (B, S): 1 for real tokens, 0 for padding, over all key positions
          (those in ``cache`` followed by ``idx``; S = cache length + T), as in transformers.
        - ``positions`` (B, T): position ids; by default they follow the cache. With left
          padding pass ``positions_from_mask(attention_mask)`` so that each prompt starts at
          position 0.
        - ``cache``: a ``KVCache``; the new keys/values are stored and its length advanced.
        - ``causal=False`` lets every position attend to every other (mask-predict).
        - ``segment_ids`` (B, T): packed sequences; a token attends only to tokens of its own
          segment, so short examples packed into one row never see each other. Pass
          ``positions`` that restart at 0 in each segment (``segment_positions``).
        """
        B, T = idx.shape
        past = cache.length if cache is not None else 0
        x = self.wte(idx)
        P = self.prefix_length
        if P:
            if segment_ids is not None:
                raise GenlabError("a soft prompt cannot go before packed sequences (segment_ids)")
            if attention_mask is not None:
                attention_mask = torch.cat((attention_mask.new_ones(B, P), attention_mask), dim=1)
            if positions is not None:
                positions = positions + P
            if past == 0:  # the prompt goes in front once; a cache holds it afterwards
                x = torch.cat((self.prefix(B).to(x.dtype), x), dim=1)
                if positions is not None:
                    head = torch.arange(P, device=idx.device).expand(B, P)
                    positions = torch.cat((head, positions), dim=1)
                T = T + P
        if past + T > self.config.block_size:
            raise GenlabError(
                f"sequence of {past + T} tokens exceeds the model's context of "
                f"{self.config.block_size}; shorten the input"
            )
        if positions is None and self.wpe is not None:
            x = x + self.wpe.weight[past : past + T]  # what wpe(arange) gives, in one slice
        elif positions is None:
            positions = torch.arange(past, past + T, device=idx.device).expand(B, T)
        elif self.wpe is not None:
            x = x + self.wpe(positions)
        if self.training:
            x = self.drop(x)

        mask, is_causal = self._attention_mask(B, T, past, attention_mask, causal, idx.device)
        if segment_ids is not None:
            if cache is not None:
                raise GenlabError("segment_ids (packing) is for training, not cached decoding")
            same = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]
            base = torch.ones(T, T, dtype=torch.bool, device=idx.device)
            base = base.tril() if causal else base
            mask, is_causal = same & (base if mask is None else mask), False
        for i, block in enumerate(self.blocks):
            x = block(
                x,
                mask=mask,
                is_causal=is_causal,
                rotary=self.rotary,
                positions=positions,
                cache=cache,
                layer=i,
            )
        if cache is not None:
            cache.length = past + T
        if P and past == 0:
            x = x[:, P:]  # the prompt's own outputs predict nothing
        x = self.ln_f(x)
        return x

    @staticmethod
    def _attention_mask(
        B: int,
        T: int,
        past: int,
        attention_mask: Tensor | None,
        causal: bool,
        device: torch.device,
    ) -> tuple[Tensor | None, bool]:
        """The boolean mask (True = attend) for SDPA, or ``None`` with ``is_causal`` when the
        plain causal pattern suffices (the fast path of fused kernels)."""
        S = past + T
        if attention_mask is None:
            if not causal or T == 1:
                return None, False  # one new query may see all the past
            if past == 0:
                return None, True
        keep = torch.ones(B, S, dtype=torch.bool, device=device)
        if attention_mask is not None:
            if attention_mask.shape != (B, S):
                raise GenlabError(
                    f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(B, S)} "
                    "(cached positions + new positions)"
                )
            if T == 1:
                # one new query, the last key: the padding mask is the whole mask (the query
                # keeps itself, as below), without building the (T, S) patterns per token
                mask = attention_mask.to(torch.bool, copy=True)
                mask.narrow(1, S - 1, 1).fill_(True)
                return mask[:, None, None, :], False
            keep = attention_mask.to(torch.bool)
        mask = keep[:, None, None, :].expand(B, 1, T, S)
        if causal:
            q_pos = torch.arange(past, S, device=device)[:, None]
            k_pos = torch.arange(S, device=device)[None, :]
            mask = mask & (k_pos <= q_pos)
        # Every query keeps itself, so padded queries never see an all-masked row (NaN).
        eye = torch.zeros(T, S, dtype=torch.bool, device=device)
        eye[torch.arange(T), torch.arange(past, S)] = True
        return mask | eye, False


def positions_from_mask(attention_mask: Tensor) -> Tensor:
    """Position ids of left-padded rows: each row's first real token is position 0."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def segment_positions(segment_ids: Tensor) -> Tensor:
    """Position ids that restart at 0 where ``segment_ids`` (B, T) changes (for packing)."""
    B, T = segment_ids.shape
    idx = torch.arange(T, device=segment_ids.device).expand(B, T)
    starts = torch.ones_like(segment_ids, dtype=torch.bool)
    starts[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    first = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values
    return idx - first
