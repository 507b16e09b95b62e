"""The toolbox: the tools by name, built from what each needs, and one call run from its text.

Toolformer (Schick et al., 2023) gives the model a handful of tools, each called by name in the
text as ``Name(args)``. :func:`toolbox` builds the named ones (the lookup needs a world, the
search a document collection) and :func:`run_call` answers one call as written, so sampling,
filtering and serving all run calls the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from genlab.core.errors import GenlabError
from genlab.data.tinyworld.world import World
from genlab.tools.base import Tool, call_tool, parse_call
from genlab.tools.calculator import calculator_tool
from genlab.tools.calendar import calendar_tool
from genlab.tools.lookup import lookup_tool
from genlab.tools.retrieval import Retriever, search_tool

TOOL_NAMES = ("calculator", "calendar", "lookup", "search")


def _retriever(documents: str | Path | None, index_dir: str | Path | None) -> Retriever:
    """The saved index in ``index_dir`` if there is one, else one built from ``documents``
    (and saved in ``index_dir`` when given, so it is built once)."""
    if index_dir is not None and Retriever.saved_in(index_dir):
        return Retriever.load(index_dir)
    if documents is None:
        raise GenlabError("the search tool needs documents= (a folder of .txt, .md or .jsonl)")
    retriever = Retriever.build(documents)
    if index_dir is not None:
        retriever.save(index_dir)
    return retriever


def toolbox(
    names: Sequence[str],
    *,
    world: World | None = None,
    documents: str | Path | None = None,
    index_dir: str | Path | None = None,
) -> dict[str, Tool]:
    """The named tools by name. ``lookup`` answers from ``world``; ``search`` searches
    ``documents`` (a folder), its index kept in ``index_dir`` when given."""
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
            tools[name] = search_tool(_retriever(documents, index_dir))
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
