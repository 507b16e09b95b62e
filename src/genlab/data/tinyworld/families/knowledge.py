"""World-knowledge families: one fact, a chain of facts, and yes/no checks of a statement.

Fact questions measure what pretraining stored and how that depends on how often the corpus said
it (each example carries its facts' frequency classes); multi-hop questions chain two to four
facts, so composing facts can be measured apart from recalling them. Fact questions are the
world's own questions: multi-hop and yes/no decompositions and the corpus's dialogues ask them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from genlab.data.tinyworld.families.base import Example, Family, Solution, template_regex
from genlab.data.tinyworld.families.common import other_than
from genlab.data.tinyworld.relations import RELATIONS
from genlab.data.tinyworld.world import World

_FACT_RELATIONS = tuple(r for r in RELATIONS if r != "cipher")
_NUMBER_KINDS = ("legs", "age")


class FactQuestion(Family):
    name = "fact_question"
    description = "Ask one fact of the world (capital of a country, pet of a person, ...)."
    phrasings = {r: RELATIONS[r].questions for r in _FACT_RELATIONS}
    key_fields = ("s",)

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        fact = rng.choice([f for f in world.facts if f.relation != "cipher"])
        return fact.relation, {"s": fact.subject}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        fact = world.fact(fields["s"], variant)
        number = RELATIONS[variant].object_kind in _NUMBER_KINDS
        return Solution(
            fact.object,
            meta={"freq_class": fact.freq_class, "facts": [fact.index]},
            match="number" if number else None,
        )

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        relation = RELATIONS[example.meta["variant"]]
        return other_than(world.entities(relation.object_kind), example.answer, rng)


_HOPS = {
    "friend_born": ("best_friend", "born_in"),
    "friend_born_country": ("best_friend", "born_in", "in_country"),
    "friend_born_capital": ("best_friend", "born_in", "in_country", "capital"),
    "home_capital": ("lives_in", "in_country", "capital"),
}


class MultiHop(Family):
    name = "multi_hop"
    description = "Chain two to four facts (the capital of the country where a friend was born)."
    phrasings = {
        "friend_born": (
            "Where was the best friend of {s} born?",
            "In which town was {s}'s best friend born?",
            "What is the birthplace of {s}'s best friend?",
        ),
        "friend_born_country": (
            "In which country was the best friend of {s} born?",
            "Which country was {s}'s best friend born in?",
            "In what country is the birthplace of {s}'s best friend?",
        ),
        "friend_born_capital": (
            "What is the capital of the country where {s}'s best friend was born?",
            "Which town is the capital of the country where the best friend of {s} was born?",
            "Name the capital of the country in which {s}'s best friend was born.",
        ),
        "home_capital": (
            "What is the capital of the country where {s} lives?",
            "Which town is the capital of the country that {s} lives in?",
            "Name the capital of the country where {s} has a house.",
        ),
    }

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        return rng.choice(list(_HOPS)), {"s": rng.choice(world.persons)}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        subject, steps, subquestions, facts = fields["s"], [], [], []
        if subject not in world.persons:
            raise KeyError(subject)
        for relation in _HOPS[variant]:
            fact = world.fact(subject, relation)
            rel = RELATIONS[relation]
            steps.append(world.render(rel.statements[0], subject, fact.object))
            subquestions.append((world.render(rel.questions[0], subject, fact.object), fact.object))
            facts.append(fact)
            subject = fact.object
        return Solution(
            subject,
            tuple(steps),
            tuple(subquestions),
            meta={
                "hops": len(facts),
                "facts": [f.index for f in facts],
                "freq_classes": [f.freq_class for f in facts],
            },
        )

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        kind = RELATIONS[_HOPS[example.meta["variant"]][-1]].object_kind
        return other_than(world.entities(kind), example.answer, rng)


class YesNoFact(Family):
    name = "yes_no_fact"
    description = "Say whether a statement about the world is true (half are, half are not)."
    phrasings = {
        "": (
            "Answer yes or no: {statement}",
            "Is this true? {statement}",
            "Yes or no: {statement}",
            "True or false? {statement} Answer yes or no.",
        )
    }
    match = "yesno"
    key_fields = ("s", "relation")

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        fact = rng.choice([f for f in world.facts if f.relation != "cipher"])
        obj = fact.object
        if rng.random() < 0.5:
            obj = other_than(world.entities(RELATIONS[fact.relation].object_kind), obj, rng)
        return "", {"s": fact.subject, "relation": fact.relation, "o": obj}

    def render(
        self, world: World, variant: str, fields: Mapping[str, str], rng: random.Random
    ) -> tuple[str, int]:
        rel = RELATIONS[fields["relation"]]
        statement = world.render(rng.choice(rel.statements), fields["s"], fields["o"])
        i = rng.randrange(len(self.phrasings[""]))
        return self.phrasings[""][i].format(statement=statement), i

    def parse(self, prompt: str, world: World | None) -> tuple[str, dict[str, str], int] | None:
        for i, template in enumerate(self.phrasings[""]):
            head, tail = template.split("{statement}")
            if not (prompt.startswith(head) and prompt.endswith(tail)):
                continue
            statement = prompt[len(head) : len(prompt) - len(tail)]
            for relation in _FACT_RELATIONS:
                for t in RELATIONS[relation].statements:
                    m = template_regex(t).fullmatch(statement)
                    if m is None:
                        continue
                    found = m.groupdict()
                    fields = {
                        "s": found.get("s") or found["a_s"].split(" ", 1)[1],
                        "relation": relation,
                        "o": found.get("o") or found["a_o"].split(" ", 1)[1],
                    }
                    try:
                        self.solve(world, "", fields)
                    except (KeyError, ValueError, AttributeError):
                        continue
                    return "", fields, i
        return None

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        relation, subject, obj = fields["relation"], fields["s"], fields["o"]
        rel = RELATIONS[relation]
        if obj not in world.entities(rel.object_kind):
            raise ValueError(f"{obj!r} is not a {rel.object_kind}")
        fact = world.fact(subject, relation)
        true = fact.object == obj
        steps = (
            world.render(rel.statements[0], subject, fact.object),
            f"So the statement is {'true' if true else 'false'}.",
        )
        subquestions = (
            (world.render(rel.questions[0], subject, fact.object), fact.object),
            (f"Is {obj} the same as {fact.object}?", "yes" if true else "no"),
        )
        meta = {"freq_class": fact.freq_class, "facts": [fact.index]}
        return Solution("yes" if true else "no", steps, subquestions, meta)

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        return "no" if example.answer == "yes" else "yes"
