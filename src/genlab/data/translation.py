"""Sentence pairs for translation and the word vocabulary both translators read.

A translation record is ``{"source": ..., "target": ...}`` (one per JSONL line, checked as it is
read, errors naming ``file:line``); TinyWorld's cipher makes the same pairs
(:mod:`genlab.data.tinyworld.translation`). Words are the tokens: the cipher language has a
closed vocabulary of whole words, so one token per word keeps a target's length (what the
mask-predict model predicts first) equal to its number of words, and a word the model never saw
is refused by name instead of being split. Ids: ``<pad>`` 0, ``<unk>`` 1, ``<mask>`` 2 (what
mask-predict hides), ``<sep>`` 3 (between source and target for a decoder-only model),
``<eos>`` 4 (ends an autoregressive target), then the training words in sorted order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from genlab.core.errors import GenlabError
from genlab.core.registry import ExtraFile
from genlab.data.records import numbered_records

PAD, UNK, MASK, SEP, EOS = "<pad>", "<unk>", "<mask>", "<sep>", "<eos>"
SPECIALS = (PAD, UNK, MASK, SEP, EOS)
VOCAB_FILE = "vocab.json"


@dataclass(frozen=True)
class Pair:
    """One sentence and its translation, as text."""

    source: str
    target: str


@dataclass
class Translation:
    """A decoded target: its ids and the mean log-prob per token of the model that wrote it."""

    ids: list[int]
    score: float


class WordVocab:
    """Whitespace-separated words to ids for a closed vocabulary (see the module docstring)."""

    def __init__(self, words: Sequence[str]) -> None:
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise GenlabError(f"a word vocabulary must start with {', '.join(SPECIALS)}")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.pad_id, self.unk_id, self.mask_id, self.sep_id, self.eos_id = range(len(SPECIALS))

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> WordVocab:
        """The vocabulary of every word in ``texts``."""
        seen = {w for text in texts for w in text.split()}
        return cls([*SPECIALS, *sorted(seen - set(SPECIALS))])

    @property
    def size(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        """The ids of ``text``'s words; a word outside the vocabulary is a one-line error."""
        ids = []
        for word in text.split():
            if word not in self.index or self.index[word] < len(SPECIALS):
                raise GenlabError(f"the word {word!r} is not in the model's vocabulary")
            ids.append(self.index[word])
        if not ids:
            raise GenlabError("nothing to translate: the text has no words")
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """The words of ``ids``, special tokens left out."""
        return " ".join(self.words[i] for i in ids if i >= len(SPECIALS))

    def to_json(self) -> str:
        return json.dumps({"words": self.words}, ensure_ascii=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> WordVocab:
        try:
            words = json.loads(Path(path).read_text(encoding="utf-8"))["words"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise GenlabError(f"{path} is not a genlab word vocabulary ({e})") from None
        return cls(words)


VOCAB = ExtraFile(VOCAB_FILE, "vocab", WordVocab.load, "it maps the model's ids to words")


def read_pairs(path: str | os.PathLike) -> list[Pair]:
    """The ``{"source", "target"}`` records of a JSONL file, each with words on both sides."""
    pairs = []
    for n, record in numbered_records(path, "translation pairs"):
        texts = [record.get(key) for key in ("source", "target")]
        if not all(isinstance(t, str) and t.split() for t in texts):
            raise GenlabError(
                f"{path}:{n} needs non-empty text fields 'source' and 'target' "
                '({"source": "...", "target": "..."})'
            )
        pairs.append(Pair(" ".join(texts[0].split()), " ".join(texts[1].split())))
    return pairs
