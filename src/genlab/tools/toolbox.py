"""The toolbox: the tools by name, built from what each needs, and one call run from its text.

Toolformer (Schick et al., 2023) gives the model a handful of tools, each called by name in the
text as ``Name(args)``. :func:`toolbox` builds the named ones (the lookup needs a world, the
search a document collection and a retriever: BM25, or dense with a sentence encoder) and
:func:`run_call` answers one call as written, so sampling, filtering and serving all run calls
the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, get_args

from genlab.core.errors import GenlabError
from genlab.data.tinyworld.world import World
from genlab.tools.base import Tool, call_tool, parse_call
from genlab.tools.calculator import calculator_tool
from genlab.tools.calendar import calendar_tool
from genlab.tools.dense_retrieval import DenseRetriever, dense_index
from genlab.tools.lookup import lookup_tool
from genlab.tools.retrieval import Retriever, Searcher, documents_index, search_tool

TOOL_NAMES = ("calculator", "calendar", "lookup", "search")
# how the search finds passages: by shared words (BM25) or by sentence embeddings (dense)
RetrieverName = Literal["bm25", "dense"]
RETRIEVERS: tuple[str, ...] = get_args(RetrieverName)


def _kind(retriever: str) -> type[Retriever] | type[DenseRetriever]:
    if retriever not in RETRIEVERS:
        raise GenlabError(f"unknown retriever {retriever!r}; choose from {', '.join(RETRIEVERS)}")
    return DenseRetriever if retriever == "dense" else Retriever


def documents_retriever(documents: str | Path, retriever: RetrieverName = "bm25") -> Searcher:
    """A documents folder's index for ``retriever``, built once and kept in its ``.index``
    subfolder (built anew when the documents change)."""
    if _kind(retriever) is DenseRetriever:
        return dense_index(documents)
    return documents_index(documents)


def _retriever(
    documents: str | Path | None, index_dir: str | Path | None, retriever: RetrieverName
) -> Searcher:
    """The saved index in ``index_dir`` if there is one, else one built from ``documents`` and
    saved in ``index_dir``; without ``index_dir``, the documents folder's own index."""
    kind = _kind(retriever)
    if index_dir is not None and kind.saved_in(index_dir):
        return kind.load(index_dir)
    if documents is None:
        raise GenlabError("the search tool needs documents= (a folder of .txt, .md or .jsonl)")
    if index_dir is None:
        return documents_retriever(documents, retriever)
    index = kind.build(documents)
    index.save(index_dir)
    return index


def toolbox(
    names: Sequence[str],
    *,
    world: World | None = None,
    documents: str | Path | None = None,
    index_dir: str | Path | None = None,
    retriever: RetrieverName = "bm25",
) -> dict[str, Tool]:
    """The named tools by name. ``lookup`` answers from ``world``; ``search`` searches
    ``documents`` (a folder) with ``retriever``, its index kept in ``index_dir`` when given,
    else in the folder's ``.index``."""
    unknown = [n for n in names if n not in TOOL_NAMES]
    if unknown:
        raise GenlabError(f"unknown tool {unknown[0]!r}; choose from {', '.join(TOOL_NAMES)}")
    tools = {}
    for name in dict.fromkeys(names):
        if name == "calculator":
            tools[name] = calculator_tool()
        elif name == "calendar":
            tools[name] = calendar_tool()
        elif name == "lookup":
            if world is None:
                raise GenlabError("the lookup tool needs world= (a TinyWorld to answer from)")
            tools[name] = lookup_tool(world)
        else:
            tools[name] = search_tool(_retriever(documents, index_dir, retriever))
    return tools


def run_call(tools: Mapping[str, Tool], call_text: str) -> str:
    """The result of a call written ``NAME(ARGS)``: the tool's answer or ``error: ...``."""
    call = parse_call(call_text)
    if call is None:
        return "error: not a call"
    name, args = call
    if name not in tools:
        return f"error: unknown tool {name}"
    return call_tool(tools[name], args)
