"""Shared fixtures of the data tests: a small trained tokenizer and the corpus it learns from."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from genlab.data.tokenizer import Tokenizer

SENTENCE = "the cat sat on a mat and the dog ran far away . , ! ? def return ( ) : = 42 1234"
EXTRA_WORDS = ["猫", "喜欢", "吃", "鱼", "naïve", "café", "Ünïcödé", "🎉", "👩\u200d💻", "\t"]


def _make_corpus(n_lines: int, seed: int = 0) -> list[str]:
    """Lines of fixed words and made-up syllable words: enough distinct pairs for 400 ids."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "ve", "zu", "ba", "do"]
    made_up = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(300)]
    words = SENTENCE.split() + EXTRA_WORDS + made_up
    return [" ".join(rng.choices(words, k=rng.randint(3, 25))) + "\n" for _ in range(n_lines)]


@pytest.fixture(scope="session")
def make_corpus() -> Callable[..., list[str]]:
    """``make_corpus(n_lines, seed=0)``: lines of fixed and made-up words (enough pairs for 400
    ids)."""
    return _make_corpus


@pytest.fixture(scope="session")
def tok() -> Tokenizer:
    """A byte-level BPE of 400 ids trained on ``make_corpus(2000)``."""
    return Tokenizer.train(_make_corpus(2000), vocab_size=400)
