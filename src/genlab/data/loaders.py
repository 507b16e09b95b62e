"""Reading a user's text and turning it into a memory-mapped array of token ids.

Language-model pretraining reads the corpus as one long stream of tokens and samples windows
from it (as GPT-2 and nanoGPT do), so the text is tokenized once into a flat ``uint16``/``uint32``
file that ``numpy.memmap`` opens without loading it. The file is cached under a key made from the
source (paths, sizes, modification times) and the tokenizer, so a second run on the same data
starts at once, and a changed file or tokenizer is re-tokenized. Under torchrun rank 0 alone
tokenizes a cold cache; the other ranks wait for the finished file, then all open it.

Sources: a text file, a folder of ``.txt``/``.md``/``.jsonl`` files, a JSONL file with a text
field, or ``hf:NAME[:SPLIT]`` through the ``datasets`` library when it is installed (its own
cache applies; genlab never downloads anything else).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from genlab.core.distributed import dist_info
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_json, fsync_dir, read_json
from genlab.data.records import iter_jsonl

TEXT_SUFFIXES = (".txt", ".md", ".text")
JSONL_SUFFIXES = (".jsonl", ".json")
_POLL_S = 0.2  # how often a waiting rank looks for rank 0's finished cache


def source_files(source: str | os.PathLike) -> list[Path]:
    """The files behind a path: itself, or every text/JSONL file under a folder, sorted."""
    path = Path(source)
    if not path.exists():
        raise GenlabError(f"data not found: {path} (give a text file, a folder or a .jsonl)")
    if path.is_file():
        return [path]
    files = sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES + JSONL_SUFFIXES
    )
    if not files:
        raise GenlabError(f"no .txt, .md or .jsonl files under {path}")
    return files


def _jsonl_texts(path: Path, text_field: str) -> Iterator[str]:
    for n, record in iter_jsonl(path):
        if not isinstance(record.get(text_field), str):
            raise GenlabError(
                f"{path}:{n} has no string field '{text_field}'; choose it with --text-field"
            )
        yield record[text_field]


def _hf_texts(spec: str, text_field: str) -> Iterator[str]:
    name, _, split = spec.partition(":")
    try:
        import datasets
    except ImportError as e:
        raise GenlabError("hf: data needs the 'datasets' package: pip install datasets") from e
    try:
        ds = datasets.load_dataset(name, split=split or "train")
    except Exception as e:  # datasets raises many types; the user needs the message
        raise GenlabError(f"could not load Hugging Face dataset '{name}': {e}") from e
    if text_field not in ds.column_names:
        raise GenlabError(
            f"dataset '{name}' has no column '{text_field}' (it has {', '.join(ds.column_names)});"
            " choose one with --text-field"
        )
    for record in ds:
        yield record[text_field]


def iter_texts(source: str | os.PathLike, text_field: str = "text") -> Iterator[str]:
    """Yield the documents of ``source`` (one per file, or one per JSONL record)."""
    spec = str(source)
    if spec.startswith("hf:"):
        yield from _hf_texts(spec[3:], text_field)
        return
    for path in source_files(spec):
        if path.suffix in JSONL_SUFFIXES:
            yield from _jsonl_texts(path, text_field)
        else:
            try:  # utf-8-sig: a byte-order mark at the start is dropped, not trained on
                yield path.read_text(encoding="utf-8-sig")
            except UnicodeDecodeError as e:
                raise GenlabError(
                    f"{path} is not UTF-8 text (byte offset {e.start}); save it as UTF-8"
                ) from e


def source_fingerprint(source: str | os.PathLike) -> str:
    """A string that changes when the data changes: names, sizes and mtimes of the files."""
    spec = str(source)
    if spec.startswith("hf:"):
        return spec
    parts = []
    for p in source_files(spec):
        st = p.stat()
        parts.append(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts)


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def write_token_file(
    texts: Iterable[str],
    encode_batch: Callable[[list[str]], list[list[int]]],
    path: str | os.PathLike,
    vocab_size: int,
    doc_prefix: list[int] | None = None,
    batch_docs: int = 256,
) -> int:
    """Tokenize ``texts`` into a flat binary file of ids (each document after ``doc_prefix``).

    Written to a temporary name of this process's own and renamed, so an interrupted run leaves
    no half file and two processes writing the same cache never write into one file.
    Returns the number of tokens.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(vocab_size)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    prefix = list(doc_prefix or [])
    total = 0
    try:
        with tmp.open("xb") as f:
            batch: list[str] = []

            def flush() -> int:
                ids = [prefix + doc for doc in encode_batch(batch)]
                flat = np.fromiter((t for doc in ids for t in doc), dtype=dtype)
                f.write(flat.tobytes())
                batch.clear()
                return flat.size

            for text in texts:
                batch.append(text)
                if len(batch) >= batch_docs:
                    total += flush()
            if batch:
                total += flush()
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return total


def _cache_complete(bin_path: Path, meta_path: Path, dtype: np.dtype) -> bool:
    """Whether the metadata (written last) is there and counts the tokens the file holds."""
    if not (bin_path.is_file() and meta_path.is_file()):
        return False
    try:
        meta = read_json(meta_path, what="token cache metadata")
    except GenlabError:  # a truncated metadata file: the cache is rebuilt
        return False
    return (
        isinstance(meta, dict) and meta.get("tokens") == bin_path.stat().st_size // dtype.itemsize
    )


def _wait_for_rank0(bin_path: Path, meta_path: Path, dtype: np.dtype, rank: int) -> None:
    """Wait until rank 0 has written the cache.

    A file wait, not a process-group barrier: the recipes tokenize before the trainer opens the
    group, and a barrier's timeout (NCCL's watchdog: minutes) would end the waiting ranks while
    rank 0 tokenizes a large corpus. If rank 0 fails, torchrun stops the waiting ranks.
    """
    print(f"rank {rank}: waiting for rank 0 to tokenize the data into {bin_path}", file=sys.stderr)
    while not _cache_complete(bin_path, meta_path, dtype):
        time.sleep(_POLL_S)


def cached_token_file(
    texts: Callable[[], Iterable[str]],
    fingerprint: str,
    tokenizer_json: str,
    encode_batch: Callable[[list[str]], list[list[int]]],
    vocab_size: int,
    cache_dir: str | os.PathLike,
    doc_prefix: list[int] | None = None,
) -> np.memmap:
    """Tokens of ``texts()``, tokenized once and memory-mapped from ``cache_dir``.

    The cache key hashes the data fingerprint, the tokenizer and the document prefix; a
    matching file is reused without reading the text again. Under torchrun (the ``RANK`` and
    ``WORLD_SIZE`` it sets; no process group is needed) rank 0 builds a missing cache while the
    other ranks wait for it, so the ranks never tokenize the same data into one file.
    """
    key = hashlib.sha256(
        "\0".join([fingerprint, tokenizer_json, repr(doc_prefix)]).encode()
    ).hexdigest()[:16]
    cache_dir = Path(cache_dir)
    bin_path = cache_dir / f"tokens-{key}.bin"
    meta_path = cache_dir / f"tokens-{key}.json"
    dtype = token_dtype(vocab_size)
    if not _cache_complete(bin_path, meta_path, dtype):
        info = dist_info()
        if info.is_main:
            n = write_token_file(texts(), encode_batch, bin_path, vocab_size, doc_prefix)
            if n == 0:
                raise GenlabError("the data holds no text to train on")
            atomic_write_json(meta_path, {"tokens": n, "dtype": dtype.name, "key": key})
        else:
            _wait_for_rank0(bin_path, meta_path, dtype, info.rank)
    return np.memmap(bin_path, dtype=dtype, mode="r")
