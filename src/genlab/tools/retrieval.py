"""Search: BM25 over a local collection of documents, the stand-in for Toolformer's search tools.

Toolformer (Schick et al., 2023) calls a Wikipedia search engine (BM25 over a Wikipedia dump) and
gets back short snippets. Here the collection is a folder of ``.txt`` / ``.md`` files and
``.jsonl`` files whose records carry a ``"text"``; each document is cut into passages at blank
lines, and a paragraph longer than :data:`MAX_PASSAGE` characters into pieces at word
boundaries. BM25 (Robertson & Zaragoza, 2009) scores them with the ``bm25s`` library over
lower-cased words minus English stop words; the tool's result lists the best few, numbered for
citation: ``[1] ... [2] ...``. BM25 is what the paper used and the default; dense retrieval
over the same passages, with a sentence encoder, is :mod:`genlab.tools.dense_retrieval`, and the
search tool and cited answers take either (a :class:`Searcher`).

The index is built once and saved in a folder: ``bm25s``'s own files (its sparse score matrix
as three plain numeric ``.npy`` arrays, its vocabulary and parameters as JSON), written and read
with ``allow_pickle=False`` so that nothing is ever unpickled, and ``passages.json`` (the text,
id and source of every passage) written last and atomically: a folder without it is no index.
:func:`documents_index` keeps a folder's index in its ``.index`` subfolder with a fingerprint of
the documents' bytes, and builds it anew when they change (:func:`keep_index`, which the dense
index shares).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, TypeVar

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_json, read_json
from genlab.tools.base import Tool, ToolError

MAX_PASSAGE = 500  # characters of one passage
MAX_QUERY = 1000  # characters of a query
MAX_SHOWN = 300  # characters of a passage shown in the tool's result
SUFFIXES = (".txt", ".md", ".jsonl")
PASSAGES_FILE = "passages.json"
INDEX_DIR = ".index"  # where documents_index keeps a folder's index
FINGERPRINT_FILE = "documents.json"

_WORD = re.compile(r"\w+")
_STOPWORDS = frozenset(STOPWORDS_EN)

IndexT = TypeVar("IndexT", bound="Index")


@dataclass(frozen=True)
class Passage:
    """One passage of the collection: its number, where it comes from (``notes/a.md`` or
    ``facts.jsonl:3``), its text, and its score (BM25's, or the dense cosine) for the query
    that found it."""

    id: int
    source: str
    text: str
    score: float = 0.0


class Searcher(Protocol):
    """What the search tool and cited answers need of an index: BM25's :class:`Retriever` or
    :class:`~genlab.tools.dense_retrieval.DenseRetriever`."""

    passages: list[Passage]

    def search(self, query: str, k: int = 3) -> list[Passage]: ...


class Index(Searcher, Protocol):
    """A searcher that saves itself in a folder (what :func:`keep_index` keeps)."""

    def save(self, folder: str | Path) -> None: ...


def words(text: str) -> list[str]:
    """The words BM25 counts: lower-cased, stop words dropped (the same for passages and queries)."""
    return [w for w in _WORD.findall(text.casefold()) if w not in _STOPWORDS]


def _pieces(paragraph: str) -> list[str]:
    """A paragraph cut at word boundaries into pieces of at most :data:`MAX_PASSAGE` characters."""
    pieces, current = [], ""
    for word in paragraph.split():
        while len(word) > MAX_PASSAGE:  # one "word" longer than a passage is cut anywhere
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:MAX_PASSAGE])
            word = word[MAX_PASSAGE:]
        if current and len(current) + 1 + len(word) > MAX_PASSAGE:
            pieces.append(current)
            current = ""
        current = f"{current} {word}" if current else word
    return pieces + ([current] if current else [])


def split_passages(text: str) -> list[str]:
    """A document's passages: its paragraphs (blank-line separated), long ones cut in pieces."""
    return [piece for paragraph in re.split(r"\n\s*\n", text) for piece in _pieces(paragraph)]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise GenlabError(f"{path} is not UTF-8 text") from None


def _documents(path: Path, source: str) -> list[tuple[str, str]]:
    """``(source, text)`` of every document in one file."""
    if path.suffix != ".jsonl":
        return [(source, _read_text(path))]
    docs = []
    for n, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise GenlabError(f"{path}:{n}: not JSON ({e.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise GenlabError(f'{path}:{n}: expected an object with a "text" string')
        docs.append((f"{source}:{n}", record["text"]))
    return docs


def document_files(root: Path) -> list[Path]:
    """The ``.txt``, ``.md`` and ``.jsonl`` files of a folder (or the one file), sorted."""
    if root.is_file():
        return [root]
    if root.is_dir():
        return sorted(p for p in root.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    raise GenlabError(f"documents not found: {root}")


def read_passages(documents: str | Path) -> list[Passage]:
    """Every passage of a folder's (or one file's) ``.txt``, ``.md`` and ``.jsonl`` documents,
    files in sorted order."""
    root = Path(documents)
    files = document_files(root)
    passages: list[Passage] = []
    for path in files:
        source = path.name if path == root else path.relative_to(root).as_posix()
        for where, text in _documents(path, source):
            for piece in split_passages(text):
                if words(piece):  # a passage without a word to match ("---") is never found
                    passages.append(Passage(len(passages), where, piece))
    if not passages:
        raise GenlabError(f"no text in {root}: give .txt, .md or .jsonl files with some words")
    return passages


def save_passages(folder: Path, passages: list[Passage]) -> None:
    """Write ``passages.json`` (the last file of a saved index) atomically."""
    rows = [{"id": p.id, "source": p.source, "text": p.text} for p in passages]
    atomic_write_json(folder / PASSAGES_FILE, {"passages": rows})


def load_passages(folder: Path) -> list[Passage]:
    """The passages a saved index holds (one-line :class:`GenlabError` if it holds none)."""
    rows = read_json(folder / PASSAGES_FILE, "search index")
    try:
        return [Passage(int(r["id"]), str(r["source"]), str(r["text"])) for r in rows["passages"]]
    except (ValueError, TypeError, KeyError) as e:
        raise GenlabError(f"search index {folder} cannot be read ({e}); build it anew") from e


class Retriever:
    """BM25 over a fixed list of passages."""

    def __init__(self, passages: list[Passage], index: bm25s.BM25) -> None:
        self.passages = passages
        self.index = index

    @classmethod
    def from_passages(cls, passages: list[Passage]) -> Retriever:
        tokens = [words(p.text) for p in passages]
        if not any(tokens):
            raise GenlabError("no passage has a word to search for")
        index = bm25s.BM25()
        index.index(tokens, show_progress=False)
        return cls(passages, index)

    @classmethod
    def build(cls, documents: str | Path) -> Retriever:
        return cls.from_passages(read_passages(documents))

    def save(self, folder: str | Path) -> None:
        """Write the index to ``folder``; ``passages.json`` last, so a half-written folder is
        not mistaken for an index."""
        folder = Path(folder)
        (folder / PASSAGES_FILE).unlink(missing_ok=True)
        self.index.save(folder, allow_pickle=False)
        save_passages(folder, self.passages)

    @staticmethod
    def saved_in(folder: str | Path) -> bool:
        return (Path(folder) / PASSAGES_FILE).is_file()

    @classmethod
    def load(cls, folder: str | Path) -> Retriever:
        """The index :meth:`save` wrote; one-line :class:`GenlabError` if the folder is not one."""
        folder = Path(folder)
        passages = load_passages(folder)
        try:
            index = bm25s.BM25.load(folder, allow_pickle=False)
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise GenlabError(f"search index {folder} cannot be read ({e}); build it anew") from e
        if index.scores["num_docs"] != len(passages):
            raise GenlabError(f"search index {folder} does not match its passages; build it anew")
        return cls(passages, index)

    def search(self, query: str, k: int = 3) -> list[Passage]:
        """The ``k`` passages that share the most weight of words with ``query``, best first
        (ties by passage order); none when no word of the query is in the collection."""
        ids = self.index.get_tokens_ids(words(query))
        if not ids or k < 1:
            return []
        scores = self.index.get_scores_from_ids(ids)
        hits = np.flatnonzero(scores > 0)
        best = hits[np.lexsort((hits, -scores[hits]))][:k]
        return [replace(self.passages[i], score=float(scores[i])) for i in best]


def fingerprint(documents: str | Path) -> str:
    """A hash of a folder's documents (names and bytes): it changes when any of them does."""
    root, digest = Path(documents), hashlib.sha256()
    for path in document_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _saved_key(stamp: Path) -> object:
    try:
        return json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None


def keep_index(
    folder: Path,
    key: dict[str, str],
    build: Callable[[], IndexT],
    load: Callable[[Path], IndexT],
) -> IndexT:
    """The index saved in ``folder`` if the ``key`` saved with it (the documents' fingerprint,
    and what else made it) is ``key``, else one built, saved there and stamped with ``key``."""
    stamp = folder / FINGERPRINT_FILE
    if (folder / PASSAGES_FILE).is_file() and _saved_key(stamp) == key:
        return load(folder)
    index = build()
    stamp.unlink(missing_ok=True)  # a crash while saving leaves no stamp: built anew next time
    index.save(folder)
    atomic_write_json(stamp, key)
    return index


def documents_folder(documents: str | Path) -> Path:
    """``documents`` as a folder that exists (one-line :class:`GenlabError` if it does not)."""
    root = Path(documents)
    if not root.is_dir():
        raise GenlabError(f"documents folder not found: {root}")
    return root


def documents_index(documents: str | Path) -> Retriever:
    """The BM25 index of a documents folder, built once and kept in its ``.index`` subfolder,
    and built anew when the documents' fingerprint no longer matches the one saved with it."""
    root = documents_folder(documents)
    key = {"fingerprint": fingerprint(root)}
    return keep_index(root / INDEX_DIR, key, lambda: Retriever.build(root), Retriever.load)


def _shown(text: str) -> str:
    if len(text) <= MAX_SHOWN:
        return text
    return text[:MAX_SHOWN].rsplit(" ", 1)[0] + " ..."


def search_tool(retriever: Searcher, k: int = 3) -> Tool:
    """The ``search`` tool: the ``k`` best passages, numbered ``[1] ... [2] ...`` for citation."""

    def run(query: str) -> str:
        if len(query) > MAX_QUERY:
            raise ToolError(f"query longer than {MAX_QUERY} characters")
        if not words(query):
            raise ToolError("the query has no words to search for")
        found = retriever.search(query, k)
        if not found:
            return "no passage matches"
        return " ".join(f"[{n}] {_shown(p.text)}" for n, p in enumerate(found, start=1))

    return Tool(
        name="search",
        description="Search the document collection and return the best passages, numbered.",
        parameter="query",
        run=run,
        parameter_description="A few words of what to find, e.g. 'capital of Norland'.",
    )
