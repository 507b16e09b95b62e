"""A soft watermark in sampling and its z-test (Kirchenbauer et al., 2023, "A Watermark for Large
Language Models").

Before each token is chosen, a key and the previous token (a context of h=1) split the vocabulary
into a green share ``gamma`` and a red rest, and ``delta`` is added to the green logits. Text
written that way holds more green tokens than the ``gamma * T`` that text written without the
key holds; the one-proportion z-test on the green count detects it from the tokens and the key
alone, without the model.

Green is a property of the pair (previous token, token): a keyed 32-bit integer hash of the pair
below ``gamma * 2**32``. The paper seeds a permutation of the vocabulary per context instead,
which makes the green count exactly ``gamma * V``; a hash per pair has the same expected share,
runs as a few integer operations on the whole (B, V) grid, and does not depend on the vocabulary
size, so a decoder that sees the model's (padded) vocabulary and a server that sees the
tokenizer's colour every token alike. The hash uses int64 arithmetic that never overflows and a
key hashed by SHA-256 (Python's ``hash()`` changes between processes), so the same key colours
the same tokens on every platform and device.

Entropy gating (Lee et al., 2023, "Who Wrote this Code? Watermarking for Code Generation",
SWEET): with ``entropy_threshold > 0`` the bias is added only where the model's next-token
entropy is at least the threshold, and the detector scores only those positions. A confident
step (a short answer's decisive token, often) is left alone, so the answers keep more of their
quality; the detector needs the model to recompute each position's entropy
(:func:`continuation_entropies`), where the plain z-test needs only the tokens and the key.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.methods.autoregressive.padding import pad_right
from genlab.methods.autoregressive.scoring import token_logprobs
from genlab.nets.gpt import GPT, IGNORE_INDEX

MASK32 = 0xFFFFFFFF
MIX = 0x45D9F3B  # < 2**27: a 32-bit value times it stays below 2**59, inside int64


def mix32(x: Tensor) -> Tensor:
    """A 32-bit integer hash (xor-shift-multiply finaliser) of int64 values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = (x * MIX) & MASK32
    x = x ^ (x >> 16)
    x = (x * MIX) & MASK32
    return x ^ (x >> 16)


@dataclass(frozen=True)
class WatermarkScore:
    """The z-test of one text: ``green`` of ``scored`` (previous token, token) pairs were green;
    ``p_value`` is one-sided (the chance of a z this high in text written without the key)."""

    z: float
    p_value: float
    green: int
    scored: int


class Watermark:
    """A keyed green list per previous token; ``wm(prev, logits)`` is the logits-bias hook that
    ``generate(..., logits_bias=wm)`` and the serving engine call, ``wm.score(tokens)`` the
    detector. ``entropy_threshold`` (nats) gates both: 0 biases and scores every step."""

    def __init__(
        self, key: str, gamma: float = 0.25, delta: float = 2.0, entropy_threshold: float = 0.0
    ) -> None:
        if not isinstance(key, str) or not key:
            raise GenlabError("the watermark key must be a non-empty string")
        if not 0.0 < gamma < 1.0:
            raise GenlabError(f"watermark gamma (the green share) must lie in (0, 1), got {gamma}")
        if not (math.isfinite(delta) and delta >= 0.0):
            raise GenlabError(f"watermark delta must be a finite number >= 0, got {delta}")
        if not (math.isfinite(entropy_threshold) and entropy_threshold >= 0.0):
            raise GenlabError(
                f"watermark entropy threshold must be a finite number >= 0 (nats), got "
                f"{entropy_threshold}"
            )
        self.gamma = float(gamma)
        self.delta = float(delta)
        self.entropy_threshold = float(entropy_threshold)
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        self._context_key = int.from_bytes(digest[:4], "little")
        self._token_key = int.from_bytes(digest[4:8], "little")
        self._threshold = round(self.gamma * 2**32)

    def is_green(self, prev: Tensor, tokens: Tensor) -> Tensor:
        """Whether each ``tokens`` id is green after the ``prev`` id (shapes broadcast)."""
        context = mix32((prev.long() & MASK32) ^ self._context_key)
        token = mix32((tokens.long() & MASK32) ^ self._token_key)
        return mix32(context ^ token) < self._threshold

    def green(self, prev: Tensor, vocab_size: int) -> Tensor:
        """The green list (B, V) after each row's previous token ``prev`` (B,)."""
        ids = torch.arange(vocab_size, device=prev.device)
        return self.is_green(prev[:, None], ids[None, :])

    def __call__(self, prev: Tensor, logits: Tensor) -> Tensor:
        """``logits`` (B, V) with ``delta`` added to the green tokens after ``prev`` (B,), in
        the rows whose next-token entropy reaches the threshold (every row at threshold 0)."""
        bias = self.delta * self.green(prev, logits.size(-1)).to(logits.dtype)
        if self.entropy_threshold > 0.0:
            p = torch.softmax(logits.float(), dim=-1)
            entropy = torch.special.entr(p).sum(-1)  # entr(0) = 0: masked logits are safe
            bias = bias * (entropy >= self.entropy_threshold)[:, None].to(logits.dtype)
        return logits + bias

    def score(
        self,
        tokens: Sequence[int],
        prompt_last: int | None = None,
        *,
        ignore_repeated: bool = True,
        entropies: Sequence[float] | None = None,
    ) -> WatermarkScore:
        """The one-proportion z-test ``z = (g - gamma T) / sqrt(T gamma (1 - gamma))`` over the
        (previous token, token) pairs of ``tokens``; the first token is scored too when
        ``prompt_last`` (the token before it) is given.

        ``ignore_repeated`` (the default) counts each pair once: a repeated pair has the same
        colour every time, so counting it again adds no evidence but breaks the test's
        independent trials, and templated text (TinyWorld's "The answer is ...") written without
        the key would then reach high |z| and break the false-positive rate the test promises.
        The paper notes the same for repeated n-grams. Text with no pair scores z = 0, p = 1.

        ``entropies`` (one per token of ``tokens``: the model's next-token entropy at the step
        that chose it, :func:`continuation_entropies`) is required with an entropy threshold:
        only pairs whose token was chosen at an entropy at or above it are scored.
        """
        seq = [int(t) for t in tokens]
        if any(t < 0 for t in seq) or (prompt_last is not None and prompt_last < 0):
            raise GenlabError("token ids must be >= 0 to be scored for a watermark")
        if entropies is not None and len(entropies) != len(seq):
            raise GenlabError(
                f"give one entropy per token: {len(entropies)} entropies for {len(seq)} tokens"
            )
        if self.entropy_threshold > 0.0 and entropies is None:
            raise GenlabError(
                "an entropy-gated watermark needs each token's entropy to be scored: pass "
                "entropies (continuation_entropies with the model)"
            )
        keep = [True] * len(seq)
        if entropies is not None:
            keep = [float(e) >= self.entropy_threshold for e in entropies]
        if prompt_last is not None:
            seq.insert(0, int(prompt_last))
            keep.insert(0, False)
        pairs = [p for p, k in zip(zip(seq[:-1], seq[1:], strict=True), keep[1:], strict=True) if k]
        if ignore_repeated:
            pairs = list(dict.fromkeys(pairs))
        scored = len(pairs)
        if scored == 0:
            return WatermarkScore(z=0.0, p_value=1.0, green=0, scored=0)
        pair = torch.tensor(pairs, dtype=torch.long)
        green = int(self.is_green(pair[:, 0], pair[:, 1]).sum())
        g = self.gamma
        z = (green - g * scored) / math.sqrt(scored * g * (1.0 - g))
        return WatermarkScore(
            z=z, p_value=0.5 * math.erfc(z / math.sqrt(2.0)), green=green, scored=scored
        )


@torch.inference_mode()
def continuation_entropies(
    model: GPT,
    prompts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    batch_size: int = 64,
) -> list[list[float]]:
    """The model's next-token entropy (nats) before each token of each continuation, given its
    prompt: what an entropy-gated watermark compared with its threshold while writing it."""
    if len(prompts) != len(continuations):
        raise GenlabError(f"{len(prompts)} prompts for {len(continuations)} continuations")
    block = model.config.block_size
    for p, c in zip(prompts, continuations, strict=True):
        if not p:
            raise GenlabError("each continuation needs a prompt of at least one token (<|bos|>)")
        if len(p) + len(c) - 1 > block:
            raise GenlabError(
                f"a prompt and continuation of {len(p) + len(c)} tokens exceed the model's "
                f"window of {block + 1}: shorten the text"
            )
    device = model.wte.weight.device
    pairs = list(zip(prompts, continuations, strict=True))
    out: list[list[float]] = []
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        # the last token is never an input: the entropy before it is read one position earlier
        ids = pad_right([[*p, *c][: max(len(p), len(p) + len(c) - 1)] for p, c in batch], 0)
        ids = ids.to(device)
        entropy = token_logprobs(model, ids, torch.full_like(ids, IGNORE_INDEX), entropy=True)
        assert entropy.entropy is not None
        out += [entropy.entropy[i, len(p) - 1 : len(p) - 1 + len(c)].tolist()
                for i, (p, c) in enumerate(batch)]  # fmt: skip
    return out


def gated_entropies(
    model: GPT, wm: Watermark, prompts: Sequence[Sequence[int]], texts: Sequence[Sequence[int]]
) -> list[list[float] | None]:
    """What ``wm.score(..., entropies=)`` needs for each continuation: its next-token entropies
    under ``model`` where ``wm`` is gated, else ``None`` (no forward pass). They depend on the
    text only, so one call serves every key and counting that scores the same texts."""
    if wm.entropy_threshold > 0:
        return list(continuation_entropies(model, prompts, texts))
    return [None] * len(texts)
