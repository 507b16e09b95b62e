"""Search: BM25 finds a planted fact, the saved index reloads to identical results and is never
unpickled, documents are split and read with clear errors, and the tool's text is numbered."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genlab.core.errors import GenlabError
from genlab.data.tinyworld.world import World
from genlab.tools.base import call_tool
from genlab.tools.retrieval import (
    MAX_PASSAGE,
    MAX_SHOWN,
    PASSAGES_FILE,
    Passage,
    Retriever,
    read_passages,
    search_tool,
    split_passages,
    words,
)

PLANTED = "The lighthouse keeper of Quellmar paints the lamp vermilion every spring."


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of TinyWorld documents with one planted fact, in .txt, .md and .jsonl files."""
    folder = tmp_path_factory.mktemp("documents")
    corpus = list(World(seed=1, size=16).corpus(n_docs=60))
    (folder / "notes").mkdir()
    for i, doc in enumerate(corpus[:40]):
        (folder / "notes" / f"doc{i:02d}.txt").write_text(doc, encoding="utf-8")
    (folder / "planted.md").write_text(f"# Harbours\n\n{corpus[40]}\n\n{PLANTED}\n", "utf-8")
    rows = [json.dumps({"text": doc, "id": i}) for i, doc in enumerate(corpus[41:])]
    (folder / "more.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (folder / "ignored.csv").write_text("lighthouse,keeper,Quellmar\n", encoding="utf-8")
    return folder


def test_finds_the_planted_passage(documents: Path) -> None:
    retriever = Retriever.build(documents)
    best = retriever.search("Who paints the lighthouse lamp in Quellmar?", k=3)
    assert best[0].text == PLANTED
    assert best[0].source == "planted.md"
    assert best[0].score > 0 and all(
        a.score >= b.score for a, b in zip(best, best[1:], strict=False)
    )
    assert all(p.source != "ignored.csv" for p in retriever.passages)


def test_saved_index_reloads_to_identical_results(documents: Path, tmp_path: Path) -> None:
    built = Retriever.build(documents)
    built.save(tmp_path / "index")
    loaded = Retriever.load(tmp_path / "index")
    assert loaded.passages == built.passages
    queries = ["lighthouse Quellmar", "pet", "capital of the country", "berries bread", "zzz"]
    queries += [p.text for p in built.passages[::7]]
    for query in queries:
        assert loaded.search(query, k=5) == built.search(query, k=5)


def test_saved_index_holds_no_pickle(documents: Path, tmp_path: Path) -> None:
    Retriever.build(documents).save(tmp_path)
    for path in tmp_path.glob("*.npy"):
        assert np.load(path, allow_pickle=False).dtype != object
    # an array that needs unpickling is refused, not loaded
    np.save(tmp_path / "data.csc.index.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(GenlabError, match="cannot be read"):
        Retriever.load(tmp_path)


def test_bad_index_folders(documents: Path, tmp_path: Path) -> None:
    with pytest.raises(GenlabError, match="search index not found"):
        Retriever.load(tmp_path / "nothing")
    Retriever.build(documents).save(tmp_path)
    (tmp_path / PASSAGES_FILE).write_text(json.dumps({"passages": []}))
    with pytest.raises(GenlabError, match="does not match its passages"):
        Retriever.load(tmp_path)


def test_passages_split_at_blank_lines_and_length() -> None:
    assert split_passages("One.\n\nTwo\nlines.\n \n\nThree.") == ["One.", "Two lines.", "Three."]
    long = " ".join(f"word{i}" for i in range(400))
    pieces = split_passages(long)
    assert len(pieces) > 1 and all(len(p) <= MAX_PASSAGE for p in pieces)
    assert " ".join(pieces) == long
    assert split_passages("x" * 1200) == ["x" * 500, "x" * 500, "x" * 200]


def test_reading_documents(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"text": "first"}\n\n{"text": "third line"}\n')
    passages = read_passages(tmp_path)
    assert [(p.id, p.source, p.text) for p in passages] == [
        (0, "a.jsonl:1", "first"),
        (1, "a.jsonl:3", "third line"),
    ]
    assert read_passages(tmp_path / "a.jsonl")[1].source == "a.jsonl:3"
    (tmp_path / "b.jsonl").write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(GenlabError, match=r"b.jsonl:2: expected an object with a \"text\""):
        read_passages(tmp_path)
    (tmp_path / "b.jsonl").write_text("{not json\n")
    with pytest.raises(GenlabError, match="b.jsonl:1: not JSON"):
        read_passages(tmp_path)
    (tmp_path / "b.jsonl").unlink()
    (tmp_path / "c.txt").write_bytes(b"\xff\xfe caf\xe9")
    with pytest.raises(GenlabError, match="c.txt is not UTF-8 text"):
        read_passages(tmp_path)
    with pytest.raises(GenlabError, match="documents not found"):
        read_passages(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenlabError, match="no text in"):
        read_passages(tmp_path / "empty")
    (tmp_path / "empty" / "rule.md").write_text("---\n\nThe end\n\n*\n")
    assert [p.text for p in read_passages(tmp_path / "empty")] == ["The end"]
    with pytest.raises(GenlabError, match="no passage has a word"):
        Retriever.from_passages([Passage(0, "rule.md", "---")])


def test_words_drop_case_and_stop_words() -> None:
    assert words("The Capital of NORLAND, is it?") == ["capital", "norland"]


def test_tool_text_is_numbered_and_short(documents: Path) -> None:
    retriever = Retriever.build(documents)
    tool = search_tool(retriever, k=2)
    result = call_tool(tool, "lighthouse keeper of Quellmar and a pet")
    assert result.startswith(f"[1] {PLANTED} [2] ")
    assert "[3]" not in result and "\n" not in result
    assert call_tool(tool, "xylophone") == "no passage matches"
    assert call_tool(tool, "the of and") == "error: the query has no words to search for"
    assert call_tool(tool, "") == "error: the query has no words to search for"
    assert call_tool(tool, "q" * 1001) == "error: query longer than 1000 characters"
    long = Retriever.from_passages([Passage(0, "long.txt", "lighthouse " * 100)])
    shown = call_tool(search_tool(long), "lighthouse")
    assert len(shown) <= len("[1] ") + MAX_SHOWN + len(" ...") and shown.endswith(" ...")
