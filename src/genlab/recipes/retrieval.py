"""Retrieval-augmented answers with citations: fine-tune a GPT to search, read and cite.

WebGPT (Nakano et al., 2021) teaches GPT-3 to answer from the web by imitating people who
search, quote what they read and answer with numbered references (behaviour cloning, before
its reward model and rejection sampling). Here the demonstrations are written from a documents
folder (``genlab.data.tinyworld.documents``: facts of a world the base never saw), one per
question::

    user:       What is the favourite colour of Rilzan?
    assistant:  <|tool_call|>search(favourite colour Rilzan)<|/tool_call|>
    tool:       [1] The pet of Rilzan is a zekan. ... [2] Rilzan likes the colour yellow best. ...
    assistant:  The answer is yellow [2].

The tool's result is what the search really returns for that query over the documents' BM25
index, and ``[n]`` numbers the passage that states the fact. When no result states it (the fact
is withheld from the documents, or the search missed it) the answer is ``I could not find it.``
with no citation, so that the model learns not to cite blindly. SFT's loss is on what the
assistant writes (the call and the answer); the passages are context, never targets.

The defaults were chosen on the validation questions (``genlab experiment retrieval --split
validation``, the l rung of the CPU ladder):

- **Query** (``query``): ``relation`` searches for the fact's relation and entity, ``question``
  for the question as asked. BM25 counts words that are not stop words, which leaves a question
  its entity and a word or two, not always those its fact is stated with ("How old is Rilzan?"
  against "The age of Rilzan is 75."): the passage that states the fact is among the top 1 / 2
  / 3 for 88 / 98 / 100% of relation queries and 78 / 93 / 95% of question queries. The model
  names the relation from the question's phrasing (54 phrasings, 17 relations) and its own
  searches find the passage for 98% of the questions.
- **Fresh facts** (``worlds``): the demonstrations also ask every question about more worlds
  (the seeds after the documents', each searched over its own documents). Trained on the
  documents' train questions alone (2,934 conversations, 400 steps), the rung memorised their
  answers (train loss 0.04, held-out 0.29): it searched well and cited ``[1]`` but did not read
  (82% of its answers cited the passage with the answer, 4% were right). With 8 more worlds
  and 800 steps 33% were right; it copied known words (jobs, colours) but misspelt the new
  names it had to copy (``Kiby`` for ``Soby``).
- **Passages** (``k``) and **steps**: 2 passages instead of 3 keep 98% of the answers within
  reach and halve a conversation (about 125 tokens), so that two fit in a row of 256 and a
  step learns from twice as many; with 16 more worlds and 1,200 steps (15 minutes on two CPU
  cores) 89% of the validation answers were right and 88% right with a citation of the passage
  that states the fact.

``retrieval(cfg)`` writes into ``cfg.out``: ``documents/`` (the collection, its index kept in
``documents/.index``), ``retrieval.json`` (the query form, ``k``, the worlds and the documents'
settings; ``genlab chat`` reads its ``k``) and the fine-tuned GPT, which ``genlab chat RUN
--retrieve RUN/documents`` runs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from genlab.align.sft import SFTConfig, sft
from genlab.align.stage import fine_tuning
from genlab.core.errors import GenlabError
from genlab.core.train_config import TrainConfig
from genlab.data.records import Messages
from genlab.data.tinyworld.documents import (
    DOCUMENTS_DIR,
    DocQuestion,
    DocumentsConfig,
    fact_documents,
    write_documents,
)
from genlab.tools.base import call_tool, format_call
from genlab.tools.retrieval import Passage, Retriever, documents_index, search_tool

QUERY_FORMS = ("relation", "question")
ANSWER = "The answer is {answer} [{n}]."
NOT_FOUND = "I could not find it."
SETTINGS_FILE = "retrieval.json"


@dataclass
class RetrievalConfig:
    """Which base, the documents it learns to search, the query it writes and how it trains."""

    base: str = "runs/pretrain"  # a GPT run folder pretrained on TinyWorld text (world 0)
    out: str = "runs/retrieval"  # run folder to write
    query: str = "relation"  # what the model searches for: relation (and entity) or question
    k: int = 2  # passages a search returns
    worlds: int = 16  # more worlds (the seeds after the documents') whose questions SFT also asks
    documents: DocumentsConfig = field(default_factory=DocumentsConfig)
    train: TrainConfig = field(default_factory=lambda: fine_tuning(1200, 1e-3, 30))

    def check(self) -> None:
        if self.query not in QUERY_FORMS:
            raise GenlabError(
                f"--query must be one of {', '.join(QUERY_FORMS)}, not {self.query!r}"
            )
        if self.k < 1 or self.worlds < 0:
            raise GenlabError(
                f"--k must be at least 1 and --worlds at least 0, got {self.k}, {self.worlds}"
            )
        self.documents.check()

    def seeds(self) -> range:
        """The worlds the model reads about: the documents' first, then the practice worlds."""
        return range(self.documents.seed, self.documents.seed + self.worlds + 1)


def search_query(question: DocQuestion, form: str) -> str:
    """What the model searches for: ``favourite colour Rilzan`` (relation) or the question."""
    if form == "relation":
        return f"{question.relation.replace('_', ' ')} {question.subject}"
    return question.example.prompt


def demonstration(question: DocQuestion, retriever: Retriever, k: int, form: str) -> Messages:
    """One conversation: the question, the search call, its real results, the cited answer
    (or ``I could not find it.`` when no result states the fact)."""
    query = search_query(question, form)
    found = retriever.search(query, k)
    cited = [n for n, p in enumerate(found, 1) if question.evidence and question.evidence in p.text]
    answer = ANSWER.format(answer=question.example.answer, n=cited[0]) if cited else NOT_FOUND
    return [
        {"role": "user", "content": question.example.prompt},
        {"role": "assistant", "content": "", "tool_call": format_call("search", query)},
        {"role": "tool", "content": call_tool(search_tool(retriever, k), query)},
        {"role": "assistant", "content": answer},
    ]


def practice(cfg: RetrievalConfig) -> list[Messages]:
    """Demonstrations of every question about each practice world, over its own documents
    (indexed in memory: one passage per paragraph, as a folder of them would be read)."""
    out = []
    for seed in cfg.seeds()[1:]:
        docs = fact_documents(replace(cfg.documents, seed=seed))
        passages = [Passage(n, p.source, p.text) for n, p in enumerate(docs.paragraphs)]
        retriever = Retriever.from_passages(passages)
        out += [demonstration(q, retriever, cfg.k, cfg.query) for q in docs.questions("all")]
    return out


def retrieval(cfg: RetrievalConfig) -> dict[str, float]:
    """Write the documents and their index, then fine-tune ``cfg.base`` on demonstrations of
    the train questions and of the practice worlds' (held-out loss on the validation
    questions')."""
    cfg.check()
    out = Path(cfg.out)
    docs = fact_documents(cfg.documents)
    write_documents(docs, out / DOCUMENTS_DIR)
    retriever = documents_index(out / DOCUMENTS_DIR)
    train = [demonstration(q, retriever, cfg.k, cfg.query) for q in docs.questions("train")]
    train += practice(cfg)
    held = [demonstration(q, retriever, cfg.k, cfg.query) for q in docs.questions("validation")]
    about = {
        "query": cfg.query,
        "k": cfg.k,
        "worlds": cfg.worlds,
        "documents": asdict(cfg.documents),
    }
    extra = {SETTINGS_FILE: json.dumps(about, indent=2).encode()}
    metrics = sft(SFTConfig(base=cfg.base, out=cfg.out, train=cfg.train), train, held, extra)
    return {**metrics, "passages": float(len(retriever.passages))}
