"""Fact lookup: question answering over a TinyWorld, the stand-in for Toolformer's QA tool.

Toolformer (Schick et al., 2023) asks a question-answering system (Atlas) for facts such as
"the capital of Norland". TinyWorld's facts are known to the generator, so the lookup here reads
them from the :class:`~genlab.data.tinyworld.world.World` itself: a relation as the questions ask
it (``relations.py``: "the capital of {s}", "the pet of {s}") and an entity, answered with the
fact's value exactly as the world writes it:

- ``capital of Norland`` (or ``the capital of Norland``) -> ``Vorilia``
- ``Anna's pet`` -> ``zorbat``; ``legs of a zorbat`` -> ``4``
- chains, innermost last: ``capital of the country of the home of Anna`` (what multi-hop asks)

One word may name two relations told apart by the entity's kind: ``home of`` a person is the town
she lives in, of a creature its country; ``food of`` a town is what it is famous for, of a
creature what it eats. The cipher's words are the translator's job, not a fact to look up here.
"""

from __future__ import annotations

import re

from genlab.data.tinyworld.world import World
from genlab.tools.base import Tool, ToolError

MAX_LENGTH = 200  # characters of an argument
MAX_HOPS = 4  # relations in one chain (multi-hop questions chain up to four)

# relation phrase -> {subject kind: relation}
PHRASES: dict[str, dict[str, str]] = {
    "birthplace": {"person": "born_in"},
    "home": {"person": "lives_in", "creature": "home"},
    "best friend": {"person": "best_friend"},
    "friend": {"person": "best_friend"},
    "favourite colour": {"person": "favourite_colour"},
    "favorite color": {"person": "favourite_colour"},
    "pet": {"person": "pet"},
    "job": {"person": "job"},
    "age": {"person": "age"},
    "country": {"town": "in_country", "creature": "home"},
    "food": {"town": "famous_for", "creature": "eats"},
    "capital": {"country": "capital"},
    "flag colour": {"country": "flag_colour"},
    "flag": {"country": "flag_colour"},
    "legs": {"creature": "legs"},
    "colour": {"creature": "colour", "object": "colour"},
    "color": {"creature": "colour", "object": "colour"},
    "material": {"object": "material"},
    "origin": {"object": "made_in"},
}
_ARTICLE = re.compile(r"(?:the|an?)\s+", re.IGNORECASE)
_OF = re.compile(r"\s+of\s+", re.IGNORECASE)


def _bare(text: str) -> str:
    """``text`` without spaces around it and a leading "the", "a" or "an"."""
    text = text.strip()
    m = _ARTICLE.match(text)
    return text[m.end() :] if m else text


class Lookup:
    """Answers ``relation of entity`` (and ``entity's relation``, and chains) from one world."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.names = {
            name.casefold(): name
            for kind in ("person", "town", "country", "creature", "object")
            for name in world.entities(kind)
        }

    def __call__(self, question: str) -> str:
        if len(question) > MAX_LENGTH:
            raise ToolError(f"argument longer than {MAX_LENGTH} characters")
        text = " ".join(question.split()).rstrip("?.")
        if len(_OF.findall(text)) + text.count("'s ") > MAX_HOPS:
            raise ToolError(f"more than {MAX_HOPS} relations in one lookup")
        return self.resolve(text)

    def resolve(self, text: str) -> str:
        """The name ``text`` refers to: a chain of relations ending in an entity, or an entity."""
        text = _bare(text)
        if _OF.search(text):
            phrase, rest = _OF.split(text, maxsplit=1)
            return self.relate(_bare(phrase), self.resolve(rest))
        if "'s " in text:
            rest, phrase = text.rsplit("'s ", 1)
            return self.relate(_bare(phrase), self.resolve(rest))
        if text.casefold() not in self.names:
            raise ToolError(f"unknown entity {text!r}" if text else "no entity named")
        return self.names[text.casefold()]

    def relate(self, phrase: str, subject: str) -> str:
        phrase = phrase.casefold()
        if phrase not in PHRASES:
            raise ToolError(f"unknown relation {phrase!r}; known: {', '.join(PHRASES)}")
        kind = self.world.kind_of(subject)
        if kind is None:
            raise ToolError(f"{subject!r} is not an entity, so it has no {phrase}")
        if kind not in PHRASES[phrase]:
            asked_of = " or ".join(PHRASES[phrase])
            raise ToolError(f"{subject} is a {kind}; {phrase} is asked of a {asked_of}")
        return self.world.value(subject, PHRASES[phrase][kind])


def lookup_tool(world: World) -> Tool:
    return Tool(
        name="lookup",
        description="Look up a fact of the world: a relation of a person, town, country, "
        "creature or object.",
        parameter="query",
        run=Lookup(world),
        parameter_description="A relation and an entity, e.g. 'capital of Norland', 'pet of "
        "Anna', 'Anna's best friend', or a chain: 'capital of the country of the home of Anna'.",
    )
