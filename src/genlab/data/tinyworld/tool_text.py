"""Tool-shaped text: plain prose where a calculator, calendar, fact lookup or translator helps.

Toolformer (Schick et al., 2023) teaches a model to call tools by inserting API calls into
ordinary text wherever a call's result makes the following tokens easier to predict. It needs
text of that shape first: sentences whose next words are a sum, a weekday, a fact or a
translation. This module writes such text from the world, every stated result true, with no
tool calls in it (adding and filtering the calls is the Toolformer step's job).
"""

from __future__ import annotations

import datetime as dt
import random

from genlab.core.errors import GenlabError
from genlab.data.tinyworld.vocabulary import ITEMS, article, english_phrase
from genlab.data.tinyworld.worked import format_date, weekday
from genlab.data.tinyworld.world import World

TOOLS = ("calculator", "calendar", "lookup", "translator")
_FIRST_DAY = dt.date(2000, 1, 1).toordinal()
_LAST_DAY = dt.date(2030, 12, 31).toordinal()


def _calculator(world: World, rng: random.Random) -> str:
    person, items = rng.choice(world.persons), rng.choice(ITEMS)
    a, b = rng.randint(12, 999), rng.randint(12, 999)
    roll = rng.random()
    if roll < 0.35:
        return (
            f"{person} counted {a} {items} in the morning and {b} in the evening, {a + b} in all."
        )
    if roll < 0.7:
        a, b = rng.randint(3, 99), rng.randint(3, 99)
        return f"A box holds {a} {items}, so {b} boxes hold {a * b} {items}."
    a, b = max(a, b), min(a, b)
    return f"{person} had {a} coins and spent {b} of them, which left {a - b} coins."


def _calendar(world: World, rng: random.Random) -> str:
    day = dt.date.fromordinal(rng.randint(_FIRST_DAY, _LAST_DAY))
    person, town = rng.choice(world.persons), rng.choice(world.towns)
    roll = rng.random()
    if roll < 0.4:
        return f"{person} left {town} on {format_date(day)}, which was a {weekday(day)}."
    if roll < 0.7:
        return f"The fair in {town} opened on {format_date(day)}, a {weekday(day)}."
    n = rng.randint(2, 60)
    later = dt.date.fromordinal(min(_LAST_DAY, day.toordinal() + n))
    n = later.toordinal() - day.toordinal()
    return f"{n} days after {format_date(day)} it was {format_date(later)}, a {weekday(later)}."


def _lookup(world: World, rng: random.Random) -> str:
    person = world.sample_entity("person", rng)
    town = world.value(person, "lives_in")
    country = world.value(town, "in_country")
    roll = rng.random()
    if roll < 0.35:
        capital = world.value(country, "capital")
        return f"{person} travelled to {capital}, the capital of {country}."
    if roll < 0.7:
        friend = world.value(person, "best_friend")
        return f"{person} wrote a letter to {friend}, who was born in {world.value(friend, 'born_in')}."
    pet = world.value(person, "pet")
    return f"The pet of {person} is {article(pet)}, an animal with {world.value(pet, 'legs')} legs."


def _translator(world: World, rng: random.Random) -> str:
    english = english_phrase(rng)
    cipher = world.translate(english)
    town = rng.choice(world.towns)
    if rng.random() < 0.5:
        return f"On an old stone in {town}, the words '{cipher}' are carved, which in English means '{english}'."
    return f"In {world.language}, '{english}' is said '{cipher}'."


_MAKERS = {
    "calculator": _calculator,
    "calendar": _calendar,
    "lookup": _lookup,
    "translator": _translator,
}


def tool_text(world: World, n_docs: int, seed: int = 0) -> list[str]:
    """``n_docs`` short paragraphs (three to six sentences) mixing the four kinds of tool use."""
    if n_docs < 0:
        raise GenlabError(f"number of tool-text documents must be >= 0, got {n_docs}")
    rng = random.Random(f"tinyworld/tools/{world.seed}/{world.size}/{seed}")
    docs = []
    for _ in range(n_docs):
        kinds = rng.choices(TOOLS, k=rng.randint(3, 6))
        docs.append(" ".join(_MAKERS[kind](world, rng) for kind in kinds))
    return docs
