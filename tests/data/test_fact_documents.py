"""Documents about an unseen TinyWorld: every asked fact is in them once, and nowhere in the
text the models learned (world 0's corpus)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from genlab.cli import app
from genlab.core.errors import GenlabError
from genlab.data.tinyworld import RELATIONS, World
from genlab.data.tinyworld.documents import (
    NOTES,
    DocumentsConfig,
    fact_documents,
    write_document_set,
)
from genlab.tools.retrieval import read_passages

SMALL = DocumentsConfig(size=16)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs")
    counts = write_document_set(out, SMALL)
    return out, counts


def test_each_test_fact_is_in_one_passage_and_withheld_ones_in_none(written):
    out, counts = written
    passages = read_passages(out / "documents")
    questions = fact_documents(SMALL).questions("test")
    assert counts["test questions"] == len(questions) > 20
    answerable = [q for q in questions if q.evidence]
    assert 0 < len(answerable) < len(questions)  # some facts are withheld
    for q in answerable:
        holding = [p for p in passages if q.evidence in p.text]
        assert len(holding) == 1 and q.subject in q.evidence
        assert q.example.check(f"The answer is {q.example.answer}.")
    world = World(SMALL.seed, SMALL.size)
    for q in questions:
        if not q.evidence:  # none of the fact's paraphrases is written anywhere
            fact = world.fact(q.subject, q.relation)
            said = [
                world.render(t, q.subject, fact.object) for t in RELATIONS[q.relation].statements
            ]
            assert not any(s in p.text for p in passages for s in said)


def test_world_zeros_corpus_knows_none_of_the_documents_entities():
    docs = fact_documents(SMALL)
    corpus = "\n".join(World(0).corpus(n_chars=300_000, seed=0))
    subjects = {
        q.subject for split in ("train", "validation", "test") for q in docs.questions(split)
    }
    assert subjects and not any(s in corpus for s in subjects)


def test_splits_never_share_a_fact_and_notes_state_none(written):
    docs = fact_documents(SMALL)
    facts = {
        split: {(q.subject, q.relation) for q in docs.questions(split)}
        for split in ("train", "validation", "test")
    }
    assert not facts["train"] & facts["test"] and not facts["validation"] & facts["test"]
    assert len(docs.questions("all")) == sum(len(docs.questions(s)) for s in facts)
    notes = [p for p in docs.paragraphs if p.source == NOTES]
    assert notes and all(not p.facts for p in notes)
    sentences = set(docs.evidence.values())
    assert not any(s in p.text for p in notes for s in sentences)
    out, _ = written
    record = json.loads((out / "questions" / "test.jsonl").read_text().splitlines()[0])
    assert {"prompt", "answer", "subject", "relation", "evidence"} <= set(record)


def test_documents_are_deterministic_and_bad_settings_are_one_line_errors():
    assert fact_documents(SMALL).paragraphs == fact_documents(SMALL).paragraphs
    with pytest.raises(GenlabError, match="per_paragraph"):
        fact_documents(DocumentsConfig(per_paragraph=0))
    with pytest.raises(GenlabError, match="unknown split"):
        fact_documents(SMALL).questions("dev")


def test_the_data_verb_writes_documents_and_questions(tmp_path):
    result = CliRunner().invoke(app, ["data", "documents", "--out", str(tmp_path), "--size", "8"])
    assert result.exit_code == 0, result.output
    assert "test questions" in result.output
    assert read_passages(tmp_path / "documents")
    assert (tmp_path / "questions" / "validation.jsonl").read_text().count("\n") > 10
