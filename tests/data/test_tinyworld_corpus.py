"""TinyWorld's pretraining corpus: deterministic, true to the world, Zipf-frequent, fast."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from genlab.core.errors import GenlabError
from genlab.data.tinyworld import RELATIONS, World, builtin_corpus
from genlab.data.tinyworld.families.base import template_regex
from genlab.data.tinyworld.worked import false_equations


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=0, size=64)


@pytest.fixture(scope="module")
def docs(world) -> list[str]:
    return list(world.corpus(n_docs=3000, seed=0))


def test_same_seed_same_documents_different_seeds_differ(world, docs):
    assert list(world.corpus(n_docs=3000, seed=0)) == docs
    assert list(world.corpus(n_docs=50, seed=1)) != docs[:50]
    assert list(World(seed=1).corpus(n_docs=50, seed=0)) != docs[:50]


def test_lengths_and_builtin_corpus(world):
    assert len(list(world.corpus(n_docs=7))) == 7
    docs = list(world.corpus(n_chars=5000))
    total = len("\n\n".join(docs))
    assert total >= 5000 and total - len(docs[-1]) - 2 < 5000  # whole documents, no extra one
    text = builtin_corpus(12_345, seed=0)
    assert len(text) == 12_345
    assert builtin_corpus(20_000, seed=0).startswith(text)
    assert builtin_corpus(1000, seed=1) != text[:1000]
    assert builtin_corpus(0) == ""
    with pytest.raises(GenlabError):
        next(world.corpus(n_chars=-1))


def test_all_four_kinds_of_document_appear(docs):
    assert any(
        d.startswith(("Once upon a time", "This is a story", "There once was")) for d in docs
    )
    assert any(re.match(r"[A-Z][a-z]+: (Hello|Hi|Good morning), ", d) for d in docs)
    assert any("carry 1" in d for d in docs) and any("times table" in d for d in docs)
    assert any(" is a town in " in d or "The capital of " in d for d in docs)
    assert all(d and not d.endswith("\n") and "{" not in d for d in docs)


def test_every_stated_equation_is_true(docs):
    text = "\n".join(docs)
    assert len(re.findall(r" = ", text)) > 1000
    assert false_equations(text) == []


def test_every_stated_fact_is_true(world, docs):
    """Each sentence that reads as a fact statement states a true fact."""
    statements = [(rel, template_regex(t)) for rel in RELATIONS.values() for t in rel.statements]
    checked = 0
    for doc in docs[:1500]:
        for sentence in re.split(r"(?<=\.) |\n", re.sub(r"^[A-Z][a-z]+: ", "", doc, flags=re.M)):
            readings = []
            for rel, regex in statements:
                m = regex.fullmatch(sentence)
                if m is None:
                    continue
                found = m.groupdict()
                subject = found.get("s") or found["a_s"].split(" ", 1)[1]
                obj = found.get("o") or found["a_o"].split(" ", 1)[1]
                try:
                    readings.append(world.value(subject, rel.name) == obj)
                except KeyError:
                    continue  # this template does not fit this subject; another reading may
            if readings:
                checked += 1
                assert any(readings), sentence
    assert checked > 2000


def test_frequent_facts_are_stated_more_often_than_rare_ones(world):
    counts: Counter[int] = Counter()
    for _ in world.corpus(n_chars=1_500_000, seed=0, fact_counts=counts):
        pass
    mean = {
        c: np.mean([counts[f.index] for f in world.facts if f.freq_class == c])
        for c in ("frequent", "medium", "rare")
    }
    assert mean["frequent"] > 3 * mean["medium"] > 3 * mean["rare"] > 0
    share = np.array([counts[f.index] for f in world.facts]) / sum(counts.values())
    weight = np.array([f.weight for f in world.facts])
    assert np.corrcoef(np.log(weight), np.log(share + 1e-6))[0, 1] > 0.9
