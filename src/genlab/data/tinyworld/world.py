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
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import accumulate

from genlab.core.errors import GenlabError

DEFAULT_SIZE = 64
COLOURS = ("red", "blue", "green", "yellow", "white", "black", "brown", "grey")
JOBS = ("baker", "farmer", "teacher", "fisher", "painter", "singer", "builder", "doctor")
FOODS = ("bread", "fish", "grass", "berries", "seeds", "leaves", "honey", "nuts", "cheese")
MATERIALS = ("wood", "stone", "glass", "iron", "clay", "cloth", "paper", "gold")
LEGS = ("2", "4", "6", "8")
AGES = tuple(str(a) for a in range(8, 81))
ITEMS = ("apples", "eggs", "shells", "coins", "cakes", "stones", "books", "cups", "plums", "pens")
# The English side of the cipher language: a tiny grammar (determiner, adjective, noun, verb).
DETERMINERS = ("the", "my")
ADJECTIVES = ("red", "blue", "big", "small", "old", "new", "happy", "green")
NOUNS = ("bird", "fish", "cat", "dog", "tree", "house", "sun", "moon", "boy", "girl", "boat")
VERBS = ("sees", "eats", "likes", "finds", "has", "makes")
ENGLISH_WORDS = tuple(dict.fromkeys(DETERMINERS + ADJECTIVES + NOUNS + VERBS))

FREQ_CLASSES = ("frequent", "medium", "rare")
_CLASS_EDGES = (0.1, 0.4)  # rank fractions where "frequent" ends and "medium" ends


@dataclass(frozen=True)
class Relation:
    """A kind of fact: who it is about, what its value is, and how to say and ask it.

    Templates use ``{s}`` (subject), ``{o}`` (object), ``{a_s}``/``{a_o}`` (with "a"/"an") and
    ``{lang}`` (the cipher language's name). Each relation has at least three paraphrases of its
    statement (for the corpus) and three phrasings of its question (for the fact tasks).
    """

    name: str
    subject_kind: str
    object_kind: str
    statements: tuple[str, ...]
    questions: tuple[str, ...]


RELATIONS: dict[str, Relation] = {
    r.name: r
    for r in (
        Relation(
            "born_in",
            "person",
            "town",
            (
                "{s} was born in {o}.",
                "{o} is the town where {s} was born.",
                "The birthplace of {s} is {o}.",
            ),
            (
                "Where was {s} born?",
                "In which town was {s} born?",
                "What is the birthplace of {s}?",
            ),
        ),
        Relation(
            "lives_in",
            "person",
            "town",
            ("{s} lives in {o}.", "The home of {s} is in {o}.", "{s} has a house in {o}."),
            (
                "Where does {s} live?",
                "In which town does {s} live?",
                "Which town is the home of {s}?",
            ),
        ),
        Relation(
            "best_friend",
            "person",
            "person",
            (
                "The best friend of {s} is {o}.",
                "{s} has a best friend called {o}.",
                "{o} is the best friend of {s}.",
            ),
            (
                "Who is the best friend of {s}?",
                "Who is {s}'s best friend?",
                "Name the best friend of {s}.",
            ),
        ),
        Relation(
            "favourite_colour",
            "person",
            "colour",
            (
                "The favourite colour of {s} is {o}.",
                "{s} likes the colour {o} best.",
                "{s} loves the colour {o} more than any other colour.",
            ),
            (
                "What is the favourite colour of {s}?",
                "Which colour does {s} like best?",
                "What is {s}'s favourite colour?",
            ),
        ),
        Relation(
            "pet",
            "person",
            "creature",
            ("{s} has a pet {o}.", "{s} keeps {a_o} as a pet.", "The pet of {s} is {a_o}."),
            (
                "What kind of pet does {s} have?",
                "What animal does {s} keep as a pet?",
                "What is the pet of {s}?",
            ),
        ),
        Relation(
            "job",
            "person",
            "job",
            ("{s} works as {a_o}.", "{s} is {a_o} by trade.", "{s} earns a living as {a_o}."),
            ("What is the job of {s}?", "What does {s} do for work?", "What work does {s} do?"),
        ),
        Relation(
            "age",
            "person",
            "age",
            ("{s} is {o} years old.", "The age of {s} is {o}.", "{s} has lived for {o} years."),
            ("How old is {s}?", "What is the age of {s}?", "How many years old is {s}?"),
        ),
        Relation(
            "in_country",
            "town",
            "country",
            (
                "{s} is a town in {o}.",
                "{s} lies in the country of {o}.",
                "The town of {s} is in {o}.",
            ),
            (
                "In which country is {s}?",
                "Which country is the town of {s} in?",
                "In what country does {s} lie?",
            ),
        ),
        Relation(
            "famous_for",
            "town",
            "food",
            (
                "{s} is famous for its {o}.",
                "People know {s} for its {o}.",
                "The pride of {s} is its {o}.",
            ),
            (
                "What is {s} famous for?",
                "What food is {s} known for?",
                "Which food made {s} famous?",
            ),
        ),
        Relation(
            "capital",
            "country",
            "town",
            (
                "The capital of {s} is {o}.",
                "{o} is the capital of {s}.",
                "{s} is ruled from its capital, {o}.",
            ),
            (
                "What is the capital of {s}?",
                "Which town is the capital of {s}?",
                "Name the capital of {s}.",
            ),
        ),
        Relation(
            "flag_colour",
            "country",
            "colour",
            ("The flag of {s} is {o}.", "{s} has a {o} flag.", "People in {s} fly a {o} flag."),
            (
                "What colour is the flag of {s}?",
                "Which colour is the flag of {s}?",
                "What is the colour of the flag of {s}?",
            ),
        ),
        Relation(
            "legs",
            "creature",
            "legs",
            (
                "The {s} has {o} legs.",
                "Every {s} walks on {o} legs.",
                "The {s} is an animal with {o} legs.",
            ),
            (
                "How many legs does {a_s} have?",
                "How many legs has the {s} got?",
                "On how many legs does the {s} walk?",
            ),
        ),
        Relation(
            "eats",
            "creature",
            "food",
            ("The {s} eats {o}.", "The food of the {s} is {o}.", "Every {s} likes to eat {o}."),
            (
                "What does the {s} eat?",
                "What is the food of the {s}?",
                "What does {a_s} like to eat?",
            ),
        ),
        Relation(
            "home",
            "creature",
            "country",
            (
                "The {s} lives in {o}.",
                "You can find the {s} in {o}.",
                "{o} is the home of the {s}.",
            ),
            (
                "In which country does the {s} live?",
                "Where can you find the {s}?",
                "Which country is the home of the {s}?",
            ),
        ),
        Relation(
            "colour",
            "creature|object",
            "colour",
            ("The {s} is {o}.", "Every {s} is {o} in colour.", "The colour of the {s} is {o}."),
            ("What colour is the {s}?", "What is the colour of the {s}?", "Which colour is {a_s}?"),
        ),
        Relation(
            "material",
            "object",
            "material",
            (
                "The {s} is made of {o}.",
                "People make the {s} from {o}.",
                "Every {s} is built from {o}.",
            ),
            (
                "What is the {s} made of?",
                "From what material is the {s} made?",
                "What do people make the {s} from?",
            ),
        ),
        Relation(
            "made_in",
            "object",
            "town",
            (
                "The {s} was first made in {o}.",
                "{o} is where the {s} was first made.",
                "The first {s} came from {o}.",
            ),
            (
                "Where was the {s} first made?",
                "In which town was the first {s} made?",
                "Which town did the first {s} come from?",
            ),
        ),
        Relation(
            "cipher",
            "word",
            "cipher",
            (
                "In {lang}, the word for {s} is {o}.",
                "The {lang} word for {s} is {o}.",
                "The word {o} means {s} in {lang}.",
            ),
            (
                "What is the {lang} word for {s}?",
                "How do you say {s} in {lang}?",
                "Which {lang} word means {s}?",
            ),
        ),
    )
}

_ENTITY_KINDS = ("person", "town", "country", "creature", "object")
_VOCAB = {
    "colour": COLOURS,
    "job": JOBS,
    "food": FOODS,
    "material": MATERIALS,
    "legs": LEGS,
    "age": AGES,
}


def article(word: str) -> str:
    """``word`` with "a" or "an" in front (by its first letter: the names have no silent h)."""
    return ("an " if word[:1] in tuple("aeiou") else "a ") + word


def _template_words() -> set[str]:
    words: set[str] = set(ENGLISH_WORDS)
    for rel in RELATIONS.values():
        for t in rel.statements + rel.questions:
            words.update(w.lower() for w in re.findall(r"[A-Za-z]+", re.sub(r"\{\w+\}", " ", t)))
    for vocab in (*_VOCAB.values(), ITEMS):
        words.update(vocab)
    return words


# Common English words the syllable grammar can spell ("Time", "lemon", "go"); never names.
_COMMON_WORDS = (  # noqa: SIM905  (a word list reads best as words)
    "all bake bale ban banana bane bar base be beta bile bin bite bone bones bore bum bun "
    "bus camel dam dame data date demo den denim dim dime din dine diva dive diver do dodo "
    "domino done dose dove dune fade fake fame fan far fate fever file fin fine fir five "
    "for fore fun fur fuse gala gale game games gas gate gave given go gone gum gun has "
    "home kale kilo kin kiss kite koala la label lake lama lame lane late later lava lemon "
    "lemur level lever lime line lines live liver lobe lone lore lose love lover lunar lure "
    "ma made make male mama man mane manor mas mate me melon memo men menu mile miles mine "
    "minor mite model modem molar mole mom more motor move mule mum muse mute name names "
    "nave never nil nine no none nor nose noses note notes nova novel nun pa pale pan pane "
    "panel papa paper pave pen pile pin pine polar pole poles polo pore pose potato puma "
    "pun pure rake ram ran rate rave ride rider rim rise river robe robin role rose roses "
    "rotor rove rule rules rum rumor run sale salon same sane save seven sever side sin sir "
    "site so soda sofa solar sole solo son sonar sore sum sun sure take taken tale tame tan "
    "tar ten tenor tide tiger tile tiles time timer tin to tofu toga token tomato ton tone "
    "tore tote tube tumor tuna tune vale van vane vase vile villa vine vise vote we yes "
    "zero zone zones"
).split()
# Invented names never collide with an English word the templates use, or a common one.
_RESERVED = _template_words() | set(_COMMON_WORDS)

# The syllable grammar: onset consonant, vowel, optional coda. Every name is pronounceable.
_ONSETS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_CODAS = "lmnrs"


def _syllable(rng: random.Random, coda_p: float) -> str:
    s = rng.choice(_ONSETS) + rng.choice(_VOWELS)
    if rng.random() < coda_p:
        s += rng.choice(_CODAS)
    return s


def invented_word(rng: random.Random, syllables: int) -> str:
    """A lowercase pronounceable non-word from the syllable grammar (for the word tasks)."""
    return "".join(_syllable(rng, 0.3) for _ in range(syllables))


def english_phrase(rng: random.Random) -> str:
    """A phrase of the cipher language's English grammar: "the red bird" or "my cat sees the sun"."""

    def noun_phrase() -> str:
        adjective = [rng.choice(ADJECTIVES)] if rng.random() < 0.5 else []
        return " ".join([rng.choice(DETERMINERS), *adjective, rng.choice(NOUNS)])

    if rng.random() < 0.4:
        return noun_phrase()
    return f"{noun_phrase()} {rng.choice(VERBS)} {noun_phrase()}"


def _person(rng: random.Random, extra: int) -> str:
    return "".join(_syllable(rng, 0.2) for _ in range(1 + extra)) + _syllable(rng, 0.5)


def _town(rng: random.Random, extra: int) -> str:
    stem = "".join(_syllable(rng, 0.3) for _ in range(1 + extra))
    return stem + rng.choice(("ton", "by", "ford", "dale", "wick"))


def _country(rng: random.Random, extra: int) -> str:
    stem = "".join(_syllable(rng, 0.0) for _ in range(2 + extra))
    return stem + (rng.choice(_ONSETS) + "ia" if rng.random() < 0.5 else "land")


def _creature(rng: random.Random, extra: int) -> str:
    return "".join(_syllable(rng, 0.0) for _ in range(1 + extra)) + _syllable(rng, 1.0)


def _object(rng: random.Random, extra: int) -> str:
    return "".join(_syllable(rng, 0.0) for _ in range(2 + extra)) + "t"


def _cipher(rng: random.Random, extra: int) -> str:
    n = 1 + extra + (rng.random() < 0.5)
    return "".join(_syllable(rng, 0.3) for _ in range(n))


def _language(rng: random.Random, extra: int) -> str:
    return "".join(_syllable(rng, 0.0) for _ in range(1 + extra)) + rng.choice(_ONSETS) + "ish"


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
        self.language = self._fresh(rng, taken, _language).capitalize()
        n_countries = max(2, size // 8)
        self.countries = tuple(
            self._fresh(rng, taken, _country).capitalize() for _ in range(n_countries)
        )
        self.towns = tuple(
            self._fresh(rng, taken, _town).capitalize() for _ in range(3 * n_countries)
        )
        self.persons = tuple(self._fresh(rng, taken, _person).capitalize() for _ in range(size))
        n_things = max(4, size // 4)
        self.creatures = tuple(self._fresh(rng, taken, _creature) for _ in range(n_things))
        self.objects = tuple(self._fresh(rng, taken, _object) for _ in range(n_things))
        self.lexicon = {w: self._fresh(rng, taken, _cipher) for w in ENGLISH_WORDS}
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
            **_VOCAB,
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

    @staticmethod
    def _fresh(
        rng: random.Random, taken: set[str], make: Callable[[random.Random, int], str]
    ) -> str:
        """A new name from ``make``, distinct from all others; longer shapes once short ones run out."""
        for attempt in range(10_000):
            name = make(rng, attempt // 200)
            if name not in taken and name not in _RESERVED:
                taken.add(name)
                return name
        raise GenlabError("TinyWorld ran out of distinct names: use a smaller size")

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
