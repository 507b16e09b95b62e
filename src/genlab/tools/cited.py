"""Answers that cite the passages they come from: WebGPT's references (Nakano et al., 2021).

WebGPT searches, collects quotes from what it reads and answers with numbered references to
them, so that a reader can check every claim against its source. Here a chat model calls
``search(QUERY)`` (its ``tool_call``), reads the numbered passages the search returns
(``[1] ... [2] ... [3] ...``, forced into its context as the tool's result) and answers with
the numbers of the passages it used: ``The answer is Tewick [2].``

A citation points into the *last* search's results, the passages the model read just before
answering; a number that points to no passage there (``[7]`` after three passages, or any number
when the search failed) is dropped, never trusted. The passages are found again from the call's
query (the search is deterministic), so each citation comes with its passage's text and source.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from genlab.data.tokenizer import Tokenizer
from genlab.nets.gpt import GPT
from genlab.tools.base import parse_call
from genlab.tools.generate import generate_with_tools
from genlab.tools.retrieval import Passage, Searcher, search_tool

CITATION = re.compile(r"\s*\[(\d+)\]")

# a question: its text, or a whole conversation (chat messages) ending with the user's turn
Question = str | Sequence[Mapping[str, Any]]


@dataclass
class CitedAnswer:
    """An answer as written (citations in it), the valid passage numbers it cites in order,
    their passages, and every call with its result."""

    text: str
    citations: list[int] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)

    @property
    def claim(self) -> str:
        """The answer without its citation marks (what an answer checker reads)."""
        return strip_citations(self.text)


def strip_citations(text: str) -> str:
    """``text`` without its ``[n]`` marks: ``The answer is Tewick [2].`` -> ``The answer is
    Tewick.``"""
    return CITATION.sub("", text).strip()


def parse_citations(text: str, found: Sequence[Passage]) -> tuple[list[int], list[Passage]]:
    """The numbers ``[n]`` in ``text`` that point to one of ``found`` (numbered from 1), each
    once in the order first cited, and their passages; other numbers are dropped."""
    cited = [int(n) for n in CITATION.findall(text)]
    numbers = [n for n in dict.fromkeys(cited) if 1 <= n <= len(found)]
    return numbers, [found[n - 1] for n in numbers]


def last_search(retriever: Searcher, calls: Sequence[tuple[str, str]], k: int) -> list[Passage]:
    """The passages the last ``search`` call returned (none when it failed or found none)."""
    for call, result in reversed(calls):
        parsed = parse_call(call)
        if parsed is not None and parsed[0] == "search":
            return [] if result.startswith("error:") else retriever.search(parsed[1], k)
    return []


def answer_with_citations(
    model: GPT,
    tokenizer: Tokenizer,
    retriever: Searcher,
    questions: Sequence[Question],
    *,
    k: int = 3,
    max_calls: int = 2,
    batch_size: int = 32,
) -> list[CitedAnswer]:
    """Answer each question (greedy), running the searches the model calls over ``retriever``
    (``k`` passages each); the answer may fill the model's context, results included."""
    tools = {"search": search_tool(retriever, k)}
    prompts = [
        tokenizer.render_prompt([{"role": "user", "content": q}] if isinstance(q, str) else q)
        for q in questions
    ]
    out = []
    for start in range(0, len(prompts), batch_size):
        for answer in generate_with_tools(
            model,
            tokenizer,
            prompts[start : start + batch_size],
            tools,
            max_new_tokens=model.config.block_size,
            max_calls=max_calls,
            after_result=[tokenizer.assistant_id],
            spaced_result=False,
        ):
            text = answer.text.strip()
            numbers, passages = parse_citations(text, last_search(retriever, answer.calls, k))
            out.append(CitedAnswer(text, numbers, passages, answer.calls))
    return out
