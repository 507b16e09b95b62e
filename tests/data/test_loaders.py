"""Text sources and the memory-mapped token cache."""

import json
import os
import threading
import time

import numpy as np
import pytest

from genlab.core.distributed import DistInfo
from genlab.core.errors import GenlabError
from genlab.data import loaders
from genlab.data.loaders import (
    cached_token_file,
    iter_texts,
    source_fingerprint,
    write_token_file,
)


def encode_batch(texts):
    return [[ord(c) % 300 for c in t] for t in texts]


def test_file_folder_and_jsonl_sources(tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "b.md").write_text("beta")
    (sub / "c.jsonl").write_text(json.dumps({"text": "gamma"}) + "\n\n" + '{"text": "delta"}\n')
    (sub / "ignored.bin").write_bytes(b"\x00\x01")
    assert list(iter_texts(tmp_path / "a.txt")) == ["alpha"]
    assert list(iter_texts(tmp_path)) == ["alpha", "beta", "gamma", "delta"]
    assert list(iter_texts(sub / "c.jsonl")) == ["gamma", "delta"]


def test_bad_sources_give_one_line_errors(tmp_path):
    with pytest.raises(GenlabError, match="data not found"):
        list(iter_texts(tmp_path / "missing.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenlabError, match="no .txt"):
        list(iter_texts(tmp_path / "empty"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(GenlabError, match="bad.jsonl:2 is not valid JSON"):
        list(iter_texts(bad))
    other = tmp_path / "other.jsonl"
    other.write_text('{"body": "x"}\n')
    with pytest.raises(GenlabError, match="no string field 'text'.*--text-field"):
        list(iter_texts(other))
    assert list(iter_texts(other, text_field="body")) == ["x"]


def test_token_cache_is_reused_and_invalidated(tmp_path):
    data = tmp_path / "d.txt"
    data.write_text("hello world")
    calls = []

    def texts():
        calls.append(1)
        return iter_texts(data)

    def tokens():
        return cached_token_file(
            texts, source_fingerprint(data), "tok-v1", encode_batch, 300, tmp_path / "cache", [299]
        )

    first = tokens()
    assert first.dtype == np.uint16
    assert first.tolist() == [299] + encode_batch(["hello world"])[0]
    second = tokens()
    assert len(calls) == 1 and np.array_equal(first, second)  # served from the cache
    data.write_text("changed!")
    os.utime(data, ns=(1, 1))
    assert tokens().tolist() == [299] + encode_batch(["changed!"])[0]
    assert len(calls) == 2
    # a different tokenizer is a different cache entry
    cached_token_file(
        texts, source_fingerprint(data), "tok-v2", encode_batch, 300, tmp_path / "cache"
    )
    assert len(calls) == 3
    assert not list((tmp_path / "cache").glob(".*.tmp"))


def test_two_writers_of_one_cache_file_never_share_a_temporary_file(tmp_path):
    path = tmp_path / "tokens.bin"

    def texts():
        yield "aaaa"
        # another process writes the same cache file meanwhile
        write_token_file(["bb"], encode_batch, path, 300, batch_docs=1)
        yield "aaaa"

    assert write_token_file(texts(), encode_batch, path, 300, batch_docs=1) == 8
    assert np.fromfile(path, dtype=np.uint16).tolist() == [ord("a")] * 8  # whole, not mixed
    assert not list(tmp_path.glob(".*.tmp"))


def test_other_ranks_wait_for_rank_0_to_build_the_cache(tmp_path, monkeypatch):
    """Two threads stand for two torchrun ranks: rank 1 must neither read the text nor write."""
    ranks: dict[int, int] = {}
    monkeypatch.setattr(
        loaders,
        "dist_info",
        lambda: DistInfo(rank=ranks.get(threading.get_ident(), 0), world_size=2),
    )
    monkeypatch.setattr(loaders, "_POLL_S", 0.01)
    readers = []

    def texts():
        readers.append(threading.get_ident())
        return ["hello world"]

    def tokens():
        return cached_token_file(texts, "fp", "tok", encode_batch, 300, tmp_path / "cache")

    seen = {}

    def rank1():
        ranks[threading.get_ident()] = 1
        seen["rank1"] = tokens()

    waiter = threading.Thread(target=rank1, daemon=True)
    waiter.start()
    time.sleep(0.2)
    assert waiter.is_alive() and not readers  # waiting, the text untouched
    built = tokens()  # rank 0
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert readers == [threading.get_ident()]
    assert seen["rank1"].tolist() == built.tolist() == encode_batch(["hello world"])[0]
