"""The kinds of fact in TinyWorld, each with the sentences that state it and the questions that ask it.

A data table: every relation names its subject and object kinds and carries at least three
paraphrases of its statement (so the corpus does not teach one fixed sentence) and three phrasings
of its question (so fact tasks test knowledge, not one wording).
"""

from __future__ import annotations

from dataclasses import dataclass


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

OBJECT_ENDINGS = ("{o}.", "{a_o}.")  # how a statement that ends with its object ends


def ends_with_object(template: str) -> bool:
    """Whether a statement template ends with its object (and so can be cut before it)."""
    return template.endswith(OBJECT_ENDINGS)


def cloze(template: str) -> tuple[str, str]:
    """A statement that ends with its object, cut before it: the stem and the ending that a
    continuation fills in ("{o}." or "{a_o}.", the object with its article)."""
    if not ends_with_object(template):
        raise ValueError(f"{template!r} does not end with its object")
    ending = "{a_o}." if template.endswith("{a_o}.") else "{o}."
    return template[: -len(ending)].rstrip(), ending
