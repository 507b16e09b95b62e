"""Pretraining text for TinyWorld: encyclopedia paragraphs, stories, worked arithmetic, dialogues.

A small GPT learns the world's facts only from text that states them, and learns to reason only
from text that shows reasoning. The mix follows real pretraining corpora at toy scale: reference
text (each fact in several paraphrases, sampled by its Zipf weight so that some facts are frequent
and others rare), narrative (stories from a small grammar over the world's entities, consistent
with its facts), worked arithmetic (the same steps as the tasks' chain-of-thought) and
conversation (two friends asking each other about the world).

No task family's instruction phrasing appears in this text (worked sums are headed "Sum: 4 +
5", not "What is 4 + 5?"), so a family held out of instruction tuning stays unseen as an
instruction. The exception, by design, is the fact questions: friends ask them in dialogues, as
the world's own questions between people.

One seeded stream: the same ``(world, seed)`` gives the same documents, as many as asked for,
about 40% encyclopedia, 25% stories, 20% arithmetic and 15% dialogues.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import accumulate

from genlab.core.errors import GenlabError
from genlab.data.tinyworld.relations import RELATIONS
from genlab.data.tinyworld.vocabulary import ITEMS
from genlab.data.tinyworld.worked import add_steps, mul_steps, sub_steps
from genlab.data.tinyworld.world import World

Maker = Callable[[World, random.Random, list[int]], str]

_INTROS = {
    "person": ("{s} is a person.", "This is about {s}.", "{s} is one of the people of the world."),
    "town": ("{s} is a town.", "This is about the town of {s}."),
    "country": ("{s} is a country.", "This is about the country of {s}."),
    "creature": ("The {s} is an animal.", "This is about the {s}."),
    "object": ("The {s} is a thing that people use.", "This is about the {s}."),
    None: ("This is about the {lang} language.", "{lang} is an old language."),
}


def _encyclopedia(world: World, rng: random.Random, seen: list[int]) -> str:
    """Paragraphs of facts drawn by Zipf weight, grouped by subject; a repeat is a new paraphrase."""
    by_subject: dict[str, list] = {}
    for fact in world.sample_facts(rng, rng.randint(3, 8)):
        by_subject.setdefault(fact.subject, []).append(fact)
    paragraphs = []
    for subject, facts in by_subject.items():
        sentences = []
        if rng.random() < 0.5:
            sentences.append(world.render(rng.choice(_INTROS[world.kind_of(subject)]), subject, ""))
        said: set[str] = set()
        for fact in facts:
            templates = [t for t in RELATIONS[fact.relation].statements if t not in said]
            template = rng.choice(templates or RELATIONS[fact.relation].statements)
            said.add(template)
            sentences.append(world.render(template, subject, fact.object))
            seen.append(fact.index)
        paragraphs.append(" ".join(sentences))
    return "\n".join(paragraphs)


# How a story tells one fact about its hero ({s}); several per relation, all true to the world.
_STORY_LINES = {
    "born_in": (
        "{s} was born in {o}, a long time ago.",
        "{s} often thought of {o}, the town where {s} was born.",
    ),
    "lives_in": ("{s} lived in {o}.", "In the evening, {s} went back home to {o}."),
    "best_friend": (
        "One day, {s} went to see {o}, the best friend of {s}.",
        "{s} played a game with {o}, the best friend of {s}.",
    ),
    "favourite_colour": (
        "{s} put on a {o} hat, because {o} was the favourite colour of {s}.",
        "{s} painted the door {o}, the favourite colour of {s}.",
    ),
    "pet": (
        "{s} went for a walk with {a_o}, the pet of {s}.",
        "{s} gave some water to the pet {o}.",
    ),
    "job": ("{s} worked hard as {a_o} all morning.", "As {a_o}, {s} was busy all day."),
    "age": ("On that day, {s} was {o} years old.", "{s} was {o} years old and felt young."),
}
_SIDE_TRIPS = (
    "On the way, {hero} learned something. ",
    "{hero} read in a book: ",
    "A friend told {hero}: ",
)


def _story_count(rng: random.Random, world: World, hero: str) -> str:
    other = rng.choice(world.persons)
    a, b, items = rng.randint(2, 9), rng.randint(1, 9), rng.choice(ITEMS)
    if rng.random() < 0.5:
        return f"{hero} had {a} {items}. {other} gave {hero} {b} more, so now {hero} had {a + b} {items}."
    return f"{hero} had {a + b} {items} and gave {b} of them to {other}. That left {a} {items}."


def _story_weather(rng: random.Random, world: World, hero: str) -> str:
    weather = rng.choice(("sunny", "cold", "warm", "rainy", "windy"))
    return rng.choice(
        (f"It was a {weather} day.", f"The day was {weather}, and {hero} sang a song.")
    )


def _story_market(rng: random.Random, world: World, hero: str) -> str:
    items = rng.choice(ITEMS)
    return rng.choice(
        (f"At the market, {hero} bought some {items}.", f"{hero} found three {items} on the road.")
    )


def _story(world: World, rng: random.Random, seen: list[int]) -> str:
    """A short story about one hero: facts about the hero drawn by their weight, a fact about the
    wider world, and events that state no facts. The hero is drawn by the summed weight of its
    facts, so every fact is told in proportion to its own weight, as in the encyclopedia."""
    hero = world.sample_entity("person", rng)
    own = world.facts_about(hero)
    told = list(
        dict.fromkeys(rng.choices(own, weights=[f.weight for f in own], k=rng.randint(2, 3)))
    )
    lines = [
        rng.choice(
            (
                f"Once upon a time, there was a person called {hero}.",
                f"This is a story about {hero}.",
                f"There once was {hero}.",
            )
        )
    ]
    for fact in told:
        lines.append(world.render(rng.choice(_STORY_LINES[fact.relation]), hero, fact.object))
        seen.append(fact.index)
    events = [_story_count, _story_weather, _story_market]
    for event in rng.sample(events, rng.randint(1, 2)):
        lines.insert(rng.randint(1, len(lines)), event(rng, world, hero))
    if rng.random() < 0.5:
        fact = world.sample_facts(rng, 1)[0]
        lines.append(rng.choice(_SIDE_TRIPS).format(hero=hero) + world.statement(fact, rng))
        seen.append(fact.index)
    lines.append(
        rng.choice(
            (f"{hero} was very happy that day.", "The end.", f"And that is the story of {hero}.")
        )
    )
    return " ".join(lines)


def _number(rng: random.Random, max_digits: int) -> int:
    digits = rng.randint(1, max_digits)
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)


def _arithmetic(world: World, rng: random.Random, seen: list[int]) -> str:
    """Worked column arithmetic, times tables and little sums about people."""
    roll = rng.random()
    if roll < 0.3:
        a, b = _number(rng, 3), _number(rng, 3)
        head = rng.choice(
            (
                f"Let us work out {a} + {b} in columns.",
                f"Sum: {a} + {b}",
                f"Column addition of {a} and {b}:",
            )
        )
        return "\n".join([head, *add_steps(a, b)])
    if roll < 0.55:
        a, b = sorted((_number(rng, 3), _number(rng, 3)), reverse=True)
        head = rng.choice(
            (
                f"Let us work out {a} - {b} in columns.",
                f"Difference: {a} - {b}",
                f"Column subtraction of {b} from {a}:",
            )
        )
        return "\n".join([head, *sub_steps(a, b)])
    if roll < 0.75:
        a, b = _number(rng, 2), _number(rng, 1)
        head = rng.choice(
            (
                f"Let us work out {a} * {b} by place value.",
                f"Product: {a} * {b}",
                f"Place-value product of {a} and {b}:",
            )
        )
        return "\n".join([head, *mul_steps(a, b)])
    if roll < 0.9:
        n = rng.randint(2, 9)
        return f"The {n} times table:\n" + "\n".join(f"{n} * {k} = {n * k}." for k in range(1, 11))
    hero, other = rng.choice(world.persons), rng.choice(world.persons)
    a, b, c, items = rng.randint(2, 20), rng.randint(1, 10), rng.randint(1, 5), rng.choice(ITEMS)
    c = min(c, a + b)
    return (
        f"{hero} had {a} {items} and got {b} more from {other}, so {hero} had {a} + {b} = {a + b} {items}. "
        f"Then {hero} used {c} of them, so {a + b} - {c} = {a + b - c} {items} were left."
    )


def _lower_first(text: str) -> str:
    return text[0].lower() + text[1:]


def _dialogue(world: World, rng: random.Random, seen: list[int]) -> str:
    """Two friends ask each other about the world and answer with true statements."""
    a = world.sample_entity("person", rng)
    b = world.value(a, "best_friend")
    lines = [
        f"{a}: {rng.choice(('Hello', 'Hi', 'Good morning'))}, {b}!",
        f"{b}: Hello, {a}. {rng.choice(('How are you?', 'It is good to see you.', 'What is new?'))}",
    ]
    asker, answerer = a, b
    for fact in dict.fromkeys(world.sample_facts(rng, rng.randint(2, 4))):  # no fact asked twice
        question = world.render(
            rng.choice(RELATIONS[fact.relation].questions), fact.subject, fact.object
        )
        ask = rng.choice(
            (
                question,
                f"{answerer}, {_lower_first(question)}",
                f"Tell me, {_lower_first(question)}",
            )
        )
        answer = world.statement(fact, rng)
        reply = rng.choice((answer, f"I know that one. {answer}", f"Let me think. {answer}"))
        seen.append(fact.index)
        lines += [f"{asker}: {ask}", f"{answerer}: {reply}"]
        asker, answerer = answerer, asker
    lines += [f"{a}: Thank you, {b}. Goodbye!", f"{b}: Goodbye, {a}!"]
    return "\n".join(lines)


DOC_KINDS: dict[str, tuple[Maker, float]] = {
    "encyclopedia": (_encyclopedia, 0.40),
    "story": (_story, 0.25),
    "arithmetic": (_arithmetic, 0.20),
    "dialogue": (_dialogue, 0.15),
}


def documents(
    world: World,
    n_docs: int | None = None,
    *,
    n_chars: int | None = None,
    seed: int = 0,
    fact_counts: Counter[int] | None = None,
) -> Iterator[str]:
    """Yield pretraining documents (plain text, no trailing newline).

    Stops after ``n_docs`` documents, or once the documents joined by blank lines reach
    ``n_chars`` characters (the last one whole), whichever comes first; with neither, it never
    stops. ``fact_counts``, when given, is updated with how often each fact (by
    :attr:`Fact.index`) is stated, so experiments can relate what a model learned to how often it
    saw it.
    """
    for name, limit in (("n_docs", n_docs), ("n_chars", n_chars)):
        if limit is not None and limit < 0:
            raise GenlabError(f"corpus {name} must be >= 0, got {limit}")
    rng = random.Random(f"tinyworld/corpus/{world.seed}/{world.size}/{seed}")
    makers = [maker for maker, _ in DOC_KINDS.values()]
    cum = list(accumulate(share for _, share in DOC_KINDS.values()))
    produced = chars = 0
    while (n_docs is None or produced < n_docs) and (n_chars is None or chars < n_chars):
        seen: list[int] = []
        doc = rng.choices(makers, cum_weights=cum)[0](world, rng, seen)
        if fact_counts is not None:
            fact_counts.update(seen)
        chars += len(doc) + (2 if produced else 0)
        produced += 1
        yield doc
