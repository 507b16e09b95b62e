"""The TinyWorld: a seeded, invented world of people, towns, countries, creatures and objects.

Why invented: a model trained for minutes on a laptop can only know the facts it was shown, and an
experiment can only score an answer it can check. A world grown from a seed gives both: the
generator knows every fact, no pretrained model knows any of them, and the vocabulary stays small
and regular (names from a syllable grammar, short sentences) so that a 2-10M-parameter model can
learn it.

Facts get Zipf-distributed frequencies: after a seeded shuffle, the fact of rank ``r`` is sampled
for encyclopedia text in proportion to ``1/r``, and each fact records its frequency class
(``frequent``: top 10% of ranks, ``medium``: next 30%, ``rare``: the remaining 60%). This is the
long tail that lets an experiment show that language is learned before world knowledge, and
frequent facts before rare ones (Kandpal et al., 2023, "Large Language Models Struggle to Learn
Long-Tail Knowledge").

The world's words, kinds of fact and names come from ``vocabulary``, ``relations`` and ``names``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate

from genlab.core.errors import GenlabError
from genlab.data.tinyworld.names import (
    cipher_word,
    country_name,
    creature_name,
    fresh_name,
    language_name,
    object_name,
    person_name,
    town_name,
)
from genlab.data.tinyworld.relations import RELATIONS
from genlab.data.tinyworld.vocabulary import (
    AGES,
    COLOURS,
    ENGLISH_WORDS,
    FOODS,
    JOBS,
    LEGS,
    MATERIALS,
    VALUE_VOCABULARY,
    article,
)

DEFAULT_SIZE = 64

FREQ_CLASSES = ("frequent", "medium", "rare")
_CLASS_EDGES = (0.1, 0.4)  # rank fractions where "frequent" ends and "medium" ends

_ENTITY_KINDS = ("person", "town", "country", "creature", "object")


@dataclass(frozen=True)
class Fact:
    """One (subject, relation, object) triple with its corpus frequency.

    ``weight`` is the fact's share of the fact mentions that encyclopedia documents sample
    (weights sum to 1); ``freq_class`` is ``frequent``, ``medium`` or ``rare`` by its Zipf rank.
    """

    index: int
    subject: str
    relation: str
    object: str
    rank: int
    weight: float
    freq_class: str

    def to_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "subject": self.subject,
            "relation": self.relation,
            "object": self.object,
            "rank": self.rank,
            "weight": self.weight,
            "freq_class": self.freq_class,
        }


class World:
    """A seeded world. ``size`` is the number of people; the other kinds scale with it.

    With ``size`` people there are ``max(2, size // 8)`` countries, three towns per country,
    ``max(4, size // 4)`` creatures and as many objects, and a cipher language with one invented
    word per English word of a small grammar. The same ``(seed, size)`` always gives the same world.
    """

    def __init__(self, seed: int = 0, size: int = DEFAULT_SIZE) -> None:
        if not isinstance(size, int) or size < 4:
            raise GenlabError(
                f"TinyWorld size must be an integer of at least 4 people, got {size!r}"
            )
        self.seed = seed
        self.size = size
        rng = random.Random(f"tinyworld/world/{seed}/{size}")
        taken: set[str] = set()
        self.language = fresh_name(rng, taken, language_name).capitalize()
        n_countries = max(2, size // 8)
        self.countries = tuple(
            fresh_name(rng, taken, country_name).capitalize() for _ in range(n_countries)
        )
        self.towns = tuple(
            fresh_name(rng, taken, town_name).capitalize() for _ in range(3 * n_countries)
        )
        self.persons = tuple(fresh_name(rng, taken, person_name).capitalize() for _ in range(size))
        n_things = max(4, size // 4)
        self.creatures = tuple(fresh_name(rng, taken, creature_name) for _ in range(n_things))
        self.objects = tuple(fresh_name(rng, taken, object_name) for _ in range(n_things))
        self.lexicon = {w: fresh_name(rng, taken, cipher_word) for w in ENGLISH_WORDS}
        self.english = {c: w for w, c in self.lexicon.items()}
        self.words = ENGLISH_WORDS
        self._kinds = {
            "person": self.persons,
            "town": self.towns,
            "country": self.countries,
            "creature": self.creatures,
            "object": self.objects,
            "word": self.words,
            "cipher": tuple(self.lexicon.values()),
            **VALUE_VOCABULARY,
        }
        self.facts = self._make_facts(rng)
        self._value = {(f.subject, f.relation): f.object for f in self.facts}
        self._fact = {(f.subject, f.relation): f for f in self.facts}
        self._cum_weights = list(accumulate(f.weight for f in self.facts))
        self._by_subject: dict[str, list[Fact]] = {}
        for f in self.facts:
            self._by_subject.setdefault(f.subject, []).append(f)
        self._kind_of = {n: k for k in _ENTITY_KINDS for n in self._kinds[k]}
        # An entity is sampled (as a story's hero, say) by the summed weight of its facts.
        self._entity_cum = {
            k: list(accumulate(sum(f.weight for f in self._by_subject[n]) for n in self._kinds[k]))
            for k in _ENTITY_KINDS
        }

    def _make_facts(self, rng: random.Random) -> tuple[Fact, ...]:
        triples: list[tuple[str, str, str]] = []
        country_of = {t: self.countries[i // 3] for i, t in enumerate(self.towns)}
        for country in self.countries:
            towns = [t for t in self.towns if country_of[t] == country]
            triples.append((country, "capital", rng.choice(towns)))
            triples.append((country, "flag_colour", rng.choice(COLOURS)))
        for town in self.towns:
            triples.append((town, "in_country", country_of[town]))
            triples.append((town, "famous_for", rng.choice(FOODS)))
        for i, person in enumerate(self.persons):
            friend = rng.choice(self.persons[:i] + self.persons[i + 1 :])
            triples += [
                (person, "born_in", rng.choice(self.towns)),
                (person, "lives_in", rng.choice(self.towns)),
                (person, "best_friend", friend),
                (person, "favourite_colour", rng.choice(COLOURS)),
                (person, "pet", rng.choice(self.creatures)),
                (person, "job", rng.choice(JOBS)),
                (person, "age", rng.choice(AGES)),
            ]
        for creature in self.creatures:
            triples += [
                (creature, "legs", rng.choice(LEGS)),
                (creature, "colour", rng.choice(COLOURS)),
                (creature, "eats", rng.choice(FOODS)),
                (creature, "home", rng.choice(self.countries)),
            ]
        for obj in self.objects:
            triples += [
                (obj, "colour", rng.choice(COLOURS)),
                (obj, "material", rng.choice(MATERIALS)),
                (obj, "made_in", rng.choice(self.towns)),
            ]
        triples += [(w, "cipher", c) for w, c in self.lexicon.items()]
        order = list(range(len(triples)))
        rng.shuffle(order)
        rank = {i: r + 1 for r, i in enumerate(order)}
        total = sum(1.0 / r for r in rank.values())
        n = len(triples)
        facts = []
        for i, (s, rel, o) in enumerate(triples):
            r = rank[i]
            freq = FREQ_CLASSES[sum(r > edge * n for edge in _CLASS_EDGES)]
            facts.append(Fact(i, s, rel, o, r, (1.0 / r) / total, freq))
        return tuple(facts)

    # --- looking things up -------------------------------------------------------------------

    def value(self, subject: str, relation: str) -> str:
        """The object of ``(subject, relation)``; ``KeyError`` if the world has no such fact."""
        return self._value[(subject, relation)]

    def fact(self, subject: str, relation: str) -> Fact:
        return self._fact[(subject, relation)]

    def facts_about(self, subject: str) -> list[Fact]:
        return list(self._by_subject.get(subject, ()))

    def entities(self, kind: str) -> tuple[str, ...]:
        """The names (or values) of a kind: person, town, country, creature, object, word,
        cipher, colour, job, food, material, legs, age."""
        return self._kinds[kind]

    def kind_of(self, name: str) -> str | None:
        """person, town, country, creature or object; ``None`` for anything else."""
        return self._kind_of.get(name)

    def sample_entity(self, kind: str, rng: random.Random) -> str:
        """An entity of ``kind`` drawn by the summed Zipf weight of its facts."""
        return rng.choices(self._kinds[kind], cum_weights=self._entity_cum[kind])[0]

    def sample_facts(self, rng: random.Random, k: int) -> list[Fact]:
        """``k`` facts drawn with replacement by their Zipf weight (how the corpus mentions them)."""
        return rng.choices(self.facts, cum_weights=self._cum_weights, k=k)

    def render(self, template: str, subject: str, obj: str) -> str:
        """Fill a relation template (statement or question) for one subject and object."""
        return template.format(
            s=subject, o=obj, a_s=article(subject), a_o=article(obj), lang=self.language
        )

    def statement(self, fact: Fact, rng: random.Random) -> str:
        """One of the fact's paraphrases, chosen by ``rng``."""
        return self.render(
            rng.choice(RELATIONS[fact.relation].statements), fact.subject, fact.object
        )

    def translate(self, english: str) -> str:
        """English words of the small grammar into the cipher language, word by word."""
        return " ".join(self.lexicon[w] for w in english.split())

    def corpus(
        self,
        n_docs: int | None = None,
        *,
        n_chars: int | None = None,
        seed: int = 0,
        fact_counts: Counter[int] | None = None,
    ) -> Iterator[str]:
        """Pretraining documents; see :func:`genlab.data.tinyworld.corpus.documents`."""
        from genlab.data.tinyworld.corpus import documents

        return documents(self, n_docs=n_docs, n_chars=n_chars, seed=seed, fact_counts=fact_counts)

    def __repr__(self) -> str:
        return (
            f"World(seed={self.seed}, size={self.size}: {len(self.persons)} people, "
            f"{len(self.towns)} towns, {len(self.countries)} countries, {len(self.creatures)} "
            f"creatures, {len(self.objects)} objects, {len(self.facts)} facts)"
        )
