"""Captions as word ids: the closed-vocabulary tokenizer of a text-to-image model's captions.

genlab's built-in captions are templated ("a small red circle on the left") and use a few dozen
words, so a word-level vocabulary read from the training captions covers them with no subword
machinery, and a word the model never saw is reported instead of silently split. Ids: ``<pad>``
0, ``<cls>`` 1 (first in every caption, so an empty caption still has one token to attend to),
``<unk>`` 2, then the training words in sorted order. ``words`` is also how metrics read a
caption back into its attributes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from genlab.core.errors import GenlabError

PAD, CLS, UNK = "<pad>", "<cls>", "<unk>"
SPECIALS = (PAD, CLS, UNK)
_WORD = re.compile(r"[a-z0-9]+")


def words(caption: str) -> list[str]:
    """The lower-cased words of a caption (punctuation dropped)."""
    return _WORD.findall(caption.lower())


class CaptionTokenizer:
    """Words to ids for a closed caption vocabulary; ``max_length`` counts the ``<cls>`` token."""

    def __init__(self, vocab: Sequence[str], max_length: int) -> None:
        if tuple(vocab[: len(SPECIALS)]) != SPECIALS:
            raise GenlabError(f"a caption vocabulary must start with {', '.join(SPECIALS)}")
        if max_length < 1:
            raise GenlabError(f"caption max_length must be positive, got {max_length}")
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.max_length = max_length

    @classmethod
    def from_captions(
        cls, captions: Iterable[str], max_length: int | None = None
    ) -> CaptionTokenizer:
        """The vocabulary of ``captions``; ``max_length`` defaults to the longest one."""
        seen: set[str] = set()
        longest = 0
        for caption in captions:
            w = words(caption)
            seen.update(w)
            longest = max(longest, len(w))
        return cls([*SPECIALS, *sorted(seen)], max_length or longest + 1)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def unknown_words(self, caption: str) -> list[str]:
        """Words of ``caption`` the encoder never saw (they read as ``<unk>``)."""
        return [w for w in words(caption) if w not in self.index]

    def encode(self, captions: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Ids (B, max_length) int64 and mask (B, max_length) bool, True on real tokens."""
        ids = torch.zeros(len(captions), self.max_length, dtype=torch.long)
        for row, caption in enumerate(captions):
            tokens = [CLS, *words(caption)]
            if len(tokens) > self.max_length:
                raise GenlabError(
                    f"caption '{caption}' has {len(tokens) - 1} words; this model reads at most "
                    f"{self.max_length - 1}"
                )
            unk = self.index[UNK]
            ids[row, : len(tokens)] = torch.tensor([self.index.get(w, unk) for w in tokens])
        return ids, ids != self.index[PAD]

    def to_json(self) -> str:
        return json.dumps({"vocab": self.vocab, "max_length": self.max_length}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> CaptionTokenizer:
        try:
            data = json.loads(text)
            return cls(data["vocab"], int(data["max_length"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise GenlabError(f"not a genlab caption tokenizer file ({e})") from e
