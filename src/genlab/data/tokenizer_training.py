"""Learning a byte-level BPE vocabulary from texts or from files and folders of text.

Byte-pair encoding (Sennrich et al., 2016, "Neural Machine Translation of Rare Words with Subword
Units") repeatedly merges the most frequent adjacent pair of symbols into a new token; over the
256 byte values (GPT-2, Radford et al., 2019) every text stays encodable. Hugging Face
``tokenizers`` does the counting and merging in Rust; this module decides what to read (texts or
files) and with which settings. ``Tokenizer.train`` calls it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from genlab.core.errors import GenlabError


def text_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (their ``.txt`` files, recursively, sorted) into a file list."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.txt") if p.is_file())
            if not found:
                raise GenlabError(f"no .txt files in folder {path}: add some or name the files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise GenlabError(f"data file not found: {path}")
    if not files:
        raise GenlabError("no data files given: name text files or folders of .txt files")
    return files


def _training_files(data: Any) -> list[Path] | None:
    """The files to train on when ``data`` names files or folders; None when it holds texts.

    A single string or path, or a sequence with any ``Path`` in it, names files. A sequence of
    strings names files only when every string is an existing path; otherwise it holds texts.
    """
    if isinstance(data, str) and ("\n" in data or not os.path.exists(data)):
        raise GenlabError(
            f"data file not found: {data[:80]!r} (a single string is read as a path; "
            "pass a list of strings to train on texts)"
        )
    if isinstance(data, (str, os.PathLike)):
        return text_files([data])
    if not isinstance(data, Sequence) or not data:
        return None
    if any(isinstance(x, os.PathLike) for x in data):
        return text_files(data)
    if all(isinstance(x, str) and os.path.exists(x) for x in data):
        return text_files(data)
    return None


def _batches(texts: Iterable[Any], size: int = 1024) -> Iterator[list[str]]:
    """Group texts so the Rust trainer takes them a batch at a time (much faster than one by one)."""
    batch: list[str] = []
    for text in texts:
        if not isinstance(text, str):
            raise GenlabError(f"training texts must be strings, got {type(text).__name__}")
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def train_byte_level_bpe(
    texts: Iterable[str] | Sequence[str | Path] | str | Path,
    vocab_size: int,
    min_frequency: int,
    special_tokens: Sequence[str],
) -> HFTokenizer:
    """A byte-level BPE learned from ``texts`` (strings, or files and folders of .txt) whose
    vocabulary holds the 256 bytes, ``special_tokens`` (in order, as special tokens) and merges,
    ``vocab_size`` ids in all at most (never fewer than the bytes and the special tokens)."""
    floor = 256 + len(special_tokens)
    if vocab_size < 256:
        raise GenlabError(f"vocab_size must be at least 256 (the byte alphabet), got {vocab_size}")
    if min_frequency < 0:
        raise GenlabError(f"min_frequency must be >= 0, got {min_frequency}")
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size, floor),
        min_frequency=min_frequency,
        special_tokens=[AddedToken(s, special=True, normalized=False) for s in special_tokens],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    files = _training_files(texts)
    if files is None:
        hf.train_from_iterator(_batches(texts), trainer)
    else:
        try:
            hf.train([str(f) for f in files], trainer)
        except Exception as e:  # the Rust reader raises a bare Exception
            raise GenlabError(f"cannot read training files ({e}); they must be UTF-8 text") from e
    return hf
