"""Cited answers: ``[n]`` parsed against the last search's passages, the documents' index kept
beside them, and a tiny GPT that learned three conversations answering through the search."""

from __future__ import annotations

import pytest
import torch

from genlab.align.sft import conversation_example, pad_examples
from genlab.core.errors import GenlabError
from genlab.data.tokenizer import Tokenizer
from genlab.nets.gpt import GPT, GPTConfig
from genlab.tools import retrieval
from genlab.tools.base import call_tool
from genlab.tools.cited import (
    answer_with_citations,
    last_search,
    parse_citations,
    strip_citations,
)
from genlab.tools.retrieval import INDEX_DIR, Passage, Retriever, documents_index, search_tool

pytestmark = pytest.mark.usefixtures("one_thread")

PASSAGES = [Passage(i, "a.md", text) for i, text in enumerate(("one", "two", "three"))]
DOCS = {
    "places.md": "The capital of Norland is Pilby. Norland has a red flag.\n\n"
    "The capital of Sudland is Gunford. Sudland has a blue flag.",
    "people.md": "Anna keeps a zorbat as a pet. Anna lives in Pilby.\n\n"
    "Boris lives in Gunford, the capital of Sudland.",
}
# question, query, answer
ASKED = [
    ("What is the capital of Norland?", "capital Norland", "Pilby"),
    ("Where does Boris live?", "lives in Boris", "Gunford"),
    ("What is the pet of Anna?", "pet Anna", "zorbat"),
]


def test_citations_point_to_passages_and_others_are_dropped():
    assert parse_citations("It is two [2].", PASSAGES) == ([2], [PASSAGES[1]])
    assert parse_citations("It is one [1] and three [3][1].", PASSAGES) == (
        [1, 3],
        [PASSAGES[0], PASSAGES[2]],
    )
    assert parse_citations("It is four [4], or none [0].", PASSAGES) == ([], [])
    assert parse_citations("It is two.", PASSAGES) == ([], [])
    assert parse_citations("It is two [2].", []) == ([], [])
    assert strip_citations("The answer is Pilby [1][2].") == "The answer is Pilby."


def test_the_last_search_is_cited_and_a_failed_one_has_no_passages(tmp_path):
    for name, text in DOCS.items():
        (tmp_path / name).write_text(text)
    r = Retriever.build(tmp_path)
    calls = [("search(capital Norland)", "[1] ..."), ("search(pet Anna)", "[1] ...")]
    assert last_search(r, calls, 1)[0].text.startswith("Anna keeps")
    assert last_search(r, [*calls, ("search()", "error: no words")], 2) == []
    assert last_search(r, [("calculator(1 + 2)", "3")], 2) == []


def test_the_index_is_built_once_and_again_when_a_document_changes(tmp_path, monkeypatch):
    for name, text in DOCS.items():
        (tmp_path / name).write_text(text)
    first = documents_index(tmp_path)
    assert Retriever.saved_in(tmp_path / INDEX_DIR)
    builds = []
    monkeypatch.setattr(retrieval.Retriever, "build", lambda d: builds.append(d) or first)
    assert [p.text for p in documents_index(tmp_path).passages] == [p.text for p in first.passages]
    assert builds == []  # loaded, not built
    (tmp_path / "people.md").write_text("Anna keeps a bulus as a pet.")
    documents_index(tmp_path)
    assert builds == [tmp_path]
    with pytest.raises(GenlabError, match="documents folder not found"):
        documents_index(tmp_path / "missing")


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """A tiny GPT that learned three conversations: search, read the result, cite."""
    folder = tmp_path_factory.mktemp("docs")
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    retriever = documents_index(folder)
    tool = search_tool(retriever, 2)
    tok = Tokenizer.train([*DOCS.values(), *(q for q, _, _ in ASKED)] * 20, vocab_size=300)
    conversations, expected = [], []
    for question, query, answer in ASKED:
        found = retriever.search(query, 2)
        n = next(i for i, p in enumerate(found, 1) if answer in p.text)
        expected.append((n, found[n - 1]))
        conversations.append(
            [
                {"role": "user", "content": question},
                {"role": "assistant", "content": "", "tool_call": f"search({query})"},
                {"role": "tool", "content": call_tool(tool, query)},
                {"role": "assistant", "content": f"The answer is {answer} [{n}]."},
            ]
        )
    inputs, targets = pad_examples(
        [conversation_example(tok, c) for c in conversations], 256, tok.pad_id
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a module fixture runs before the tests' one_thread
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=256, n_layer=2, n_head=2, n_embd=64))
    opt = torch.optim.AdamW(gpt.parameters(), lr=3e-3)
    for _ in range(150):
        _, loss = gpt(inputs, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    return gpt.eval(), tok, retriever, expected


def test_a_learned_model_searches_reads_and_cites_the_passage(learned):
    gpt, tok, retriever, expected = learned
    answers = answer_with_citations(gpt, tok, retriever, [q for q, _, _ in ASKED], k=2)
    for (_, query, answer), (n, passage), got in zip(ASKED, expected, answers, strict=True):
        assert got.calls[0][0] == f"search({query})"
        assert got.text == f"The answer is {answer} [{n}]." and got.claim.endswith(f"{answer}.")
        assert got.citations == [n] and got.passages == [passage]
    conversation = [{"role": "user", "content": ASKED[0][0]}]  # a conversation asks alike
    assert answer_with_citations(gpt, tok, retriever, [conversation], k=2)[0] == answers[0]
