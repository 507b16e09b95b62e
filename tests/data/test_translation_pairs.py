"""TinyWorld's translation pairs: the cipher both ways, the long variant reordered by the
cipher's grammar, splits shared by both directions, and the word vocabulary's errors."""

from __future__ import annotations

import json

import pytest

from genlab.core.errors import GenlabError
from genlab.data.tinyworld import World
from genlab.data.tinyworld.translation import (
    TASKS,
    cipher_words,
    conjunction,
    english_words,
    translation_pairs,
)
from genlab.data.translation import Pair, WordVocab, read_pairs


@pytest.fixture(scope="module")
def world() -> World:
    return World(0)


def test_short_pairs_are_the_word_for_word_cipher_both_ways(world: World) -> None:
    to = translation_pairs(world, "cipher_to", 50, "validation")
    back = translation_pairs(world, "cipher_from", 50, "validation")
    assert len(to) == 50 and len({p.source for p in to}) == 50
    assert all(p.target == world.translate(p.source) for p in to)
    assert all(world.translate(p.target) == p.source for p in back)


def test_the_long_cipher_puts_heads_first_and_verbs_last(world: World) -> None:
    clauses = [(("the", "red", "bird"), "sees", ("my", None, "dog"))] * 2
    lex = world.lexicon
    assert english_words(clauses) == "the red bird sees my dog and the red bird sees my dog"
    clause = [lex["bird"], lex["red"], lex["the"], lex["dog"], lex["my"], lex["sees"]]
    assert cipher_words(world, clauses).split() == [*clause, conjunction(world), *clause]


def test_long_pairs_defeat_word_by_word_copying(world: World) -> None:
    pairs = translation_pairs(world, "long_cipher_to", 100, "train")
    lengths = [len(p.source.split()) for p in pairs]
    assert min(lengths) >= 11 and max(lengths) <= 23  # two or three clauses
    lex = {**world.lexicon, "and": conjunction(world)}
    for p in pairs:
        copied = [lex[w] for w in p.source.split()]
        assert sorted(copied) == sorted(p.target.split())  # the same words...
        assert copied != p.target.split()  # ...in another order


def test_a_sentence_has_one_split_in_both_directions(world: World) -> None:
    to_test = {p.source for p in translation_pairs(world, "long_cipher_to", 40, "test")}
    from_train = translation_pairs(world, "long_cipher_from", 400, "train")
    english_train = {p.target for p in from_train}
    assert not to_test & english_train
    assert conjunction(world) not in world.lexicon.values()


def test_unknown_task_split_and_words_are_one_line_errors(world: World, tmp_path) -> None:
    with pytest.raises(GenlabError, match="unknown translation task 'cipher'"):
        translation_pairs(world, "cipher", 1)
    with pytest.raises(GenlabError, match="unknown split"):
        translation_pairs(world, TASKS[0], 1, "dev")
    vocab = WordVocab.from_texts(["the cat", "bu kim"])
    assert vocab.decode(vocab.encode("the cat")) == "the cat"
    with pytest.raises(GenlabError, match="'dog' is not in the model's vocabulary"):
        vocab.encode("the dog")
    with pytest.raises(GenlabError, match="<mask>"):
        vocab.encode("the <mask>")
    bad = tmp_path / "pairs.jsonl"
    bad.write_text(json.dumps({"source": "a b", "target": "c"}) + "\n" + '{"source": "a"}\n')
    with pytest.raises(GenlabError, match=r"pairs.jsonl:2 needs non-empty text fields"):
        read_pairs(bad)
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"source": " a  b ", "target": "c"}) + "\n")
    assert read_pairs(good) == [Pair("a b", "c")]
