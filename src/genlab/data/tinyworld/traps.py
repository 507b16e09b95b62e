"""A trap task: the text states a fact that contradicts the world, then asks for it again.

The right continuation is the one the text just gave; the trap is the world's own answer, which
a model that has memorised the fact may prefer to copying from its context. Inverse-scaling
tasks of this kind (McKenzie et al., 2023, "Inverse Scaling: When Bigger Isn't Better", the
"memo trap" and "redefine" tasks) got worse with size at first and, for some, better again
(Wei et al., 2023, "Inverse scaling can become U-shaped"). Each trap has a control: the same
text about a person the world does not have, so nothing memorised pulls the other way, which
separates "cannot copy yet" from "copies, unless memory says otherwise".
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from genlab.data.tinyworld.names import fresh_name, person_name
from genlab.data.tinyworld.relations import RELATIONS, cloze, ends_with_object
from genlab.data.tinyworld.world import Fact, World

RELATIONS_USED = ("born_in", "lives_in", "pet", "job", "favourite_colour")


@dataclass(frozen=True)
class Trap:
    """``prompt`` ends where the object goes; ``stated`` continues it with the object the prompt
    gave (right), ``memorised`` with the world's object for the subject (the trap); ``control``
    is the same prompt about an unknown person, where ``memorised`` is only another object of
    its kind. Continuations start with a space and end with the full stop."""

    prompt: str
    control: str
    question: str  # the prompt without the sentence that contradicts the world
    stated: str
    memorised: str
    relation: str
    freq_class: str


def traps(world: World, n: int, seed: int = 0) -> list[Trap]:
    """``n`` traps over facts drawn by their corpus weight (the facts a model is likeliest to have
    memorised) from ``RELATIONS_USED``: one statement of the fact with another object, then a
    different paraphrase of the same statement cut before its object."""
    rng = random.Random(f"tinyworld/traps/{seed}")
    taken = set(world.persons) | set(world.towns) | set(world.countries)
    out: list[Trap] = []
    while len(out) < n:
        fact = world.sample_facts(rng, 1)[0]
        if fact.relation not in RELATIONS_USED:
            continue
        relation = RELATIONS[fact.relation]
        enders = [t for t in relation.statements if ends_with_object(t)]
        if not enders:
            continue
        query = rng.choice(enders)
        context = rng.choice([t for t in relation.statements if t != query])
        stated = _as_common(world, fact, rng)
        stranger = fresh_name(rng, taken, person_name).capitalize()
        stem, cut = cloze(query)

        out.append(
            Trap(
                prompt=_text(world, context, stem, fact.subject, stated),
                control=_text(world, context, stem, stranger, stated),
                question=world.render(stem, fact.subject, ""),
                stated=" " + world.render(cut, fact.subject, stated),
                memorised=" " + world.render(cut, fact.subject, fact.object),
                relation=fact.relation,
                freq_class=fact.freq_class,
            )
        )
    return out


def _text(world: World, context: str, stem: str, subject: str, stated: str) -> str:
    """The contradicting statement, then the question's paraphrase cut before its object."""
    said = world.render(context, subject, stated)
    return f"{said} {world.render(stem, subject, '')}".rstrip()


def _as_common(world: World, fact: Fact, rng: random.Random) -> str:
    """Another object for ``fact``, from a fact of the same relation drawn by corpus weight as
    ``fact`` was, so that the two objects are about as common in the corpus and a model that
    knows nothing of the person prefers neither for its frequency."""
    while True:
        other = world.sample_facts(rng, 1)[0]
        if other.relation == fact.relation and other.object != fact.object:
            return other.object
