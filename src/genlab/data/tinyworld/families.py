"""The eighteen TinyWorld task families: facts, arithmetic, words, lists, dates, cipher, reviews.

Each family is one skill with at least three phrasings of its instruction and an exact checker
(see :mod:`genlab.data.tinyworld.family`). Together they cover what the lectures measure:
world knowledge (fact questions, multi-hop questions, yes/no fact checking), arithmetic with
worked steps (k-digit addition, subtraction, multiplication, multi-step word problems), symbol
manipulation (reverse, spell, upper-case, count letters), lists and numbers (sort, max, compare),
calendar reasoning (day of the week), translation both ways with an invented cipher language,
and classification (sentiment of templated reviews). Numbers are small by default so that a
tiny model can learn them; the arithmetic families take ``max_digits``.

Sub-questions never use another family's instruction phrasing (arithmetic decompositions ask
"How much is 40 + 30?", not "What is 40 + 30?"), so holding any family out keeps its
instructions unseen. The exception, by design: fact questions are the world's own questions,
used in multi-hop and yes/no decompositions and asked in the corpus's dialogues.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Mapping

from genlab.data.tinyworld.family import Example, Family, Solution, template_regex
from genlab.data.tinyworld.worked import (
    WEEKDAYS,
    add_steps,
    format_date,
    mul_steps,
    parse_date,
    sub_steps,
    weekday,
    weekday_steps,
)
from genlab.data.tinyworld.world import (
    ADJECTIVES,
    DETERMINERS,
    ENGLISH_WORDS,
    ITEMS,
    NOUNS,
    RELATIONS,
    VERBS,
    World,
    english_phrase,
    invented_word,
)

_FACT_RELATIONS = tuple(r for r in RELATIONS if r != "cipher")
_NUMBER_KINDS = ("legs", "age")


def _other(values: tuple[str, ...] | list[str], not_this: str, rng: random.Random) -> str:
    """A value from ``values`` other than ``not_this``."""
    choices = [v for v in values if v != not_this]
    return rng.choice(choices)


# --- world knowledge ---------------------------------------------------------------------------


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
        return _other(world.entities(relation.object_kind), example.answer, rng)


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
        return _other(world.entities(kind), example.answer, rng)


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
            obj = _other(world.entities(RELATIONS[fact.relation].object_kind), obj, rng)
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


# --- arithmetic --------------------------------------------------------------------------------


def _k_digit(rng: random.Random, k: int) -> int:
    return rng.randint(10 ** (k - 1) if k > 1 else 0, 10**k - 1)


def _place_parts(n: int) -> list[int]:
    s = str(n)
    return [int(d) * 10 ** (len(s) - 1 - i) for i, d in enumerate(s) if d != "0"] or [0]


def _wrong_number(answer: str, rng: random.Random) -> str:
    """A near miss: off by a little or by a carry (ten), never negative, never the answer."""
    n = int(answer)
    deltas = [d for d in (-10, -2, -1, 1, 2, 10) if n + d >= 0]
    return str(n + rng.choice(deltas))


class _Arithmetic(Family):
    match = "number"

    def __init__(self, max_digits: int) -> None:
        if max_digits < 1:
            raise ValueError("max_digits must be at least 1")
        self.max_digits = max_digits

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        a = _k_digit(rng, rng.randint(1, self.max_digits))
        b = _k_digit(rng, rng.randint(1, self.max_digits))
        return "", {"a": str(a), "b": str(b)}

    def _meta(self, a: int, b: int) -> dict[str, int]:
        return {"digits": max(len(str(a)), len(str(b)))}

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        return _wrong_number(example.answer, rng)


class Addition(_Arithmetic):
    name = "addition"
    description = "Add two k-digit numbers (column addition with carries as the worked steps)."
    phrasings = {
        "": (
            "What is {a} + {b}?",
            "Add {a} and {b}.",
            "Compute the sum of {a} and {b}.",
            "What is {a} plus {b}?",
        )
    }

    def __init__(self, max_digits: int = 3) -> None:
        super().__init__(max_digits)

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        a, b = int(fields["a"]), int(fields["b"])
        # Least-to-most: add place by place (largest first), then add up the column sums.
        subquestions, total = [], 0
        ra, rb = str(a)[::-1], str(b)[::-1]
        for i in reversed(range(max(len(ra), len(rb)))):
            x = int(ra[i]) * 10**i if i < len(ra) else 0
            y = int(rb[i]) * 10**i if i < len(rb) else 0
            if x and y:
                subquestions.append((f"How much is {x} + {y}?", str(x + y)))
            if total and x + y:
                subquestions.append((f"How much is {total} + {x + y}?", str(total + x + y)))
            total += x + y
        if not subquestions or subquestions[-1][1] != str(a + b):
            subquestions.append((f"How much is {a} + {b}?", str(a + b)))
        return Solution(str(a + b), tuple(add_steps(a, b)), tuple(subquestions), self._meta(a, b))


class Subtraction(_Arithmetic):
    name = "subtraction"
    description = "Subtract a smaller k-digit number from a larger one (with borrowing)."
    phrasings = {
        "": (
            "What is {a} - {b}?",
            "Subtract {b} from {a}.",
            "Compute {a} minus {b}.",
            "What do you get when you take {b} away from {a}?",
        )
    }

    def __init__(self, max_digits: int = 3) -> None:
        super().__init__(max_digits)

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        _, fields = super().sample(world, rng)
        a, b = sorted((int(fields["a"]), int(fields["b"])), reverse=True)
        return "", {"a": str(a), "b": str(b)}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        a, b = int(fields["a"]), int(fields["b"])
        if a < b:
            raise ValueError("subtraction questions have a >= b")
        subquestions, left = [], a
        for part in _place_parts(b):
            subquestions.append((f"How much is {left} - {part}?", str(left - part)))
            left -= part
        return Solution(str(a - b), tuple(sub_steps(a, b)), tuple(subquestions), self._meta(a, b))


class Multiplication(_Arithmetic):
    name = "multiplication"
    description = "Multiply two k-digit numbers (by place value: split, multiply, add)."
    phrasings = {
        "": (
            "What is {a} * {b}?",
            "Multiply {a} by {b}.",
            "Compute the product of {a} and {b}.",
            "What is {a} times {b}?",
        )
    }

    def __init__(self, max_digits: int = 2) -> None:
        super().__init__(max_digits)

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        a, b = int(fields["a"]), int(fields["b"])
        split_b = b >= 10 or a < 10
        parts = _place_parts(b) if split_b else _place_parts(a)
        products = [a * p if split_b else p * b for p in parts]
        subquestions = [
            (f"How much is {a} * {p}?" if split_b else f"How much is {p} * {b}?", str(x))
            for p, x in zip(parts, products, strict=True)
        ]
        total = products[0]
        for x in products[1:]:
            subquestions.append((f"How much is {total} + {x}?", str(total + x)))
            total += x
        return Solution(str(a * b), tuple(mul_steps(a, b)), tuple(subquestions), self._meta(a, b))


_QUESTIONS = (
    "How many {items} does {P} have now?",
    "How many {items} does {P} have left?",
    "Now how many {items} does {P} have?",
)
_GIVE = "{P} has {a} {items}. {Q} gives {P} {b} more {items}. Then {P} gives {c} {items} to {R}. "
_BAGS = (
    "{P} buys {a} bags of {items} with {b} {items} in each bag. Then {P} gives {c} {items} to {Q}. "
)


class WordProblem(Family):
    name = "word_problem"
    description = (
        "Two-step word problems about people and things (add or multiply, then take away)."
    )
    phrasings = {
        "give": tuple(_GIVE + q for q in _QUESTIONS),
        "bags": tuple(_BAGS + q for q in _QUESTIONS),
    }
    match = "number"

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        p, q, r = rng.sample(world.persons, 3)
        items = rng.choice(ITEMS)
        if rng.random() < 0.5:
            a, b = rng.randint(2, 20), rng.randint(1, 10)
            c = rng.randint(1, a + b)
            return "give", {
                "P": p,
                "Q": q,
                "R": r,
                "items": items,
                "a": str(a),
                "b": str(b),
                "c": str(c),
            }
        a, b = rng.randint(2, 6), rng.randint(2, 9)
        c = rng.randint(1, a * b)
        return "bags", {"P": p, "Q": q, "items": items, "a": str(a), "b": str(b), "c": str(c)}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        p, items = fields["P"], fields["items"]
        a, b, c = int(fields["a"]), int(fields["b"]), int(fields["c"])
        if variant == "give":
            first = a + b
            steps = [
                f"{p} starts with {a} {items}.",
                f"After {fields['Q']} gives {b} more, {p} has {a} + {b} = {first} {items}.",
            ]
            first_q = f"How many {items} does {p} have after {fields['Q']} gives {b} more?"
            to = fields["R"]
        else:
            first = a * b
            steps = [
                f"{p} buys {a} bags with {b} {items} each, so {p} has {a} * {b} = {first} {items}."
            ]
            first_q = f"How many {items} are in {a} bags of {b}?"
            to = fields["Q"]
        if c > first:
            raise ValueError("cannot give away more than one has")
        steps.append(f"After giving {c} to {to}, {p} has {first} - {c} = {first - c} {items}.")
        subquestions = ((first_q, str(first)), (f"How much is {first} - {c}?", str(first - c)))
        return Solution(str(first - c), tuple(steps), subquestions, {"steps": 2})

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        return _wrong_number(example.answer, rng)


# --- words -------------------------------------------------------------------------------------


def _some_word(world: World, rng: random.Random) -> str:
    """A lowercase word: an invented one (most often), an English word or a world name."""
    roll = rng.random()
    if roll < 0.6:
        return invented_word(rng, rng.randint(2, 3))
    if roll < 0.8:
        return rng.choice(ENGLISH_WORDS)
    return rng.choice(world.persons + world.creatures + world.objects).lower()


def _swap_adjacent(word: str, rng: random.Random) -> str | None:
    """``word`` with two adjacent different letters swapped; ``None`` if all letters are equal."""
    spots = [i for i in range(len(word) - 1) if word[i] != word[i + 1]]
    if not spots:
        return None
    i = rng.choice(spots)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


class ReverseWord(Family):
    name = "reverse_word"
    description = "Write a word backwards."
    phrasings = {
        "": (
            "Reverse the word '{word}'.",
            "Write '{word}' backwards.",
            "What is '{word}' spelled backwards?",
            "Write the letters of '{word}' in reverse order as one word.",
        )
    }

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        while True:
            word = _some_word(world, rng)
            if word != word[::-1]:
                return "", {"word": word}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        word = fields["word"]
        if word == word[::-1]:
            raise ValueError("palindromes make poor reversal questions")
        rev, letters, back = word[::-1], ", ".join(word), ", ".join(word[::-1])
        steps = (
            f"The letters of {word} are {letters}.",
            f"In reverse order they are {back}.",
            f"Joined together: {rev}.",
        )
        subquestions = (
            (f"What are the letters of '{word}'?", letters),
            (f"What are the letters {letters} in reverse order?", back),
            (f"What word do the letters {back} make?", rev),
        )
        return Solution(rev, steps, subquestions, {"length": len(word)})

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        word = example.answer[::-1]
        swapped = _swap_adjacent(example.answer, rng)
        return word if swapped is None or rng.random() < 0.5 else swapped


class SpellWord(Family):
    name = "spell_word"
    description = "Spell a word letter by letter, letters separated by dashes."
    phrasings = {
        "": (
            "Spell the word '{word}'.",
            "Spell '{word}' letter by letter.",
            "How do you spell '{word}'? Separate the letters with dashes.",
        )
    }
    match = "letters"

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        return "", {"word": _some_word(world, rng)}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        word = fields["word"]
        steps = (
            f"The word {word} has {len(word)} letters.",
            f"In order they are {', '.join(word)}.",
        )
        subquestions = tuple(
            (f"What is letter {i + 1} of '{word}'?", ch) for i, ch in enumerate(word)
        )
        return Solution(
            "-".join(word),
            steps,
            subquestions + ((f"How is '{word}' spelled?", "-".join(word)),),
            {"length": len(word)},
        )

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        letters = example.answer.split("-")
        swapped = _swap_adjacent("".join(letters), rng)
        if swapped is None or rng.random() < 0.5:
            i = rng.randrange(len(letters))
            return "-".join(letters[:i] + letters[i + 1 :]) if len(letters) > 1 else letters[0] * 2
        return "-".join(swapped)


class Uppercase(Family):
    name = "uppercase"
    description = "Rewrite a short phrase in capital letters (checked case-sensitively)."
    phrasings = {
        "": (
            "Write '{text}' in capital letters.",
            "Convert '{text}' to upper case.",
            "Rewrite '{text}' using only uppercase letters.",
        )
    }
    match = "sequence"
    case_sensitive = True

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        text = english_phrase(rng)
        if rng.random() < 0.3:
            text = f"{text} and {rng.choice(world.persons)}"
        return "", {"text": text}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        text = fields["text"]
        if not any(ch.islower() for ch in text):
            raise ValueError("nothing to upper-case")
        words = text.split()
        distinct = list(dict.fromkeys(words))  # each word explained once
        steps = tuple(f"{w} becomes {w.upper()}." for w in distinct)
        subquestions = tuple((f"What is '{w}' in capital letters?", w.upper()) for w in distinct)
        return Solution(
            text.upper(),
            steps,
            subquestions + ((f"What is '{text}' in capital letters?", text.upper()),),
            {"words": len(words)},
        )

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        answer = example.answer
        spots = [i for i, ch in enumerate(answer) if ch.isalpha()]
        i = rng.choice(spots)
        return answer[:i] + answer[i].lower() + answer[i + 1 :]


class CountLetters(Family):
    name = "count_letters"
    description = "Count how often a letter occurs in a word (sometimes zero)."
    phrasings = {
        "": (
            "How many times does the letter '{letter}' appear in '{word}'?",
            "Count the letter '{letter}' in the word '{word}'.",
            "In the word '{word}', how many '{letter}'s are there?",
        )
    }
    match = "number"

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        word = invented_word(rng, rng.randint(2, 4))
        if rng.random() < 0.8:
            letter = rng.choice(word)
        else:
            letter = rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c not in word])
        return "", {"word": word, "letter": letter}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        word, letter = fields["word"], fields["letter"]
        positions = [i + 1 for i, ch in enumerate(word) if ch == letter]
        where = (
            f"The letter {letter} is at position{'s' if len(positions) > 1 else ''} {', '.join(map(str, positions))}."
            if positions
            else f"The letter {letter} is not among them."
        )
        steps = (
            f"The letters of {word} are {', '.join(word)}.",
            where,
            f"So {letter} appears {len(positions)} times.",
        )
        subquestions = (
            (f"What are the letters of '{word}'?", ", ".join(word)),
            (
                f"At which positions is the letter '{letter}'?",
                ", ".join(map(str, positions)) or "none",
            ),
            ("How many positions is that?", str(len(positions))),
        )
        return Solution(str(len(positions)), steps, subquestions, {"length": len(word)})

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        n = int(example.answer)
        return str(n + 1 if n == 0 or rng.random() < 0.5 else n - 1)


# --- lists and numbers -------------------------------------------------------------------------


def _number_list(rng: random.Random) -> list[int]:
    while True:
        values = [rng.randint(0, 99) for _ in range(rng.randint(3, 6))]
        if len(set(values)) > 1:
            return values


def _parse_list(text: str) -> list[int]:
    return [int(v) for v in text.split(", ")]


class SortList(Family):
    name = "sort_list"
    description = "Sort a short list of numbers from smallest to largest."
    phrasings = {
        "": (
            "Sort these numbers from smallest to largest: {numbers}.",
            "Put {numbers} in increasing order.",
            "Arrange in ascending order: {numbers}.",
        )
    }
    match = "sequence"

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        return "", {"numbers": ", ".join(map(str, _number_list(rng)))}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        values = _parse_list(fields["numbers"])
        left, steps, subquestions = list(values), [], []
        while left:
            smallest = min(left)
            subquestions.append(
                (f"What is the smallest of {', '.join(map(str, left))}?", str(smallest))
            )
            steps.append(f"The smallest of {', '.join(map(str, left))} is {smallest}.")
            left.remove(smallest)
        answer = ", ".join(map(str, sorted(values)))
        subquestions.append(("So what are the numbers from smallest to largest?", answer))
        return Solution(answer, tuple(steps), tuple(subquestions), {"length": len(values)})

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        values = _parse_list(example.answer)
        spots = [i for i in range(len(values) - 1) if values[i] != values[i + 1]]
        i = rng.choice(spots)
        values[i], values[i + 1] = values[i + 1], values[i]
        return ", ".join(map(str, values))


class MaxList(Family):
    name = "max_list"
    description = "Find the largest number of a short list."
    phrasings = {
        "": (
            "What is the largest number in this list: {numbers}?",
            "Find the maximum of {numbers}.",
            "Which number is the biggest: {numbers}?",
        )
    }
    match = "number"

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        return "", {"numbers": ", ".join(map(str, _number_list(rng)))}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        values = _parse_list(fields["numbers"])
        best, steps, subquestions = values[0], [f"Start with {values[0]}."], []
        for v in values[1:]:
            subquestions.append((f"What is the larger of {best} and {v}?", str(max(best, v))))
            steps.append(
                f"{v} is larger than {best}, so keep {v}."
                if v > best
                else f"{v} is not larger than {best}."
            )
            best = max(best, v)
        meta = {"length": len(values), "numbers": fields["numbers"]}
        return Solution(str(best), tuple(steps), tuple(subquestions), meta)

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        values = [v for v in _parse_list(example.meta["numbers"]) if str(v) != example.answer]
        return str(rng.choice(values)) if rng.random() < 0.7 else str(int(example.answer) + 1)


_PLACE_NAMES = ("ones", "tens", "hundreds", "thousands")


class CompareNumbers(Family):
    name = "compare_numbers"
    description = "Say which of two numbers is larger."
    phrasings = {
        "": (
            "Which is larger, {a} or {b}?",
            "Which number is bigger: {a} or {b}?",
            "Of {a} and {b}, which is greater?",
        )
    }
    match = "number"

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        a = _k_digit(rng, rng.randint(1, 3))
        b = a
        while b == a:
            b = (
                _k_digit(rng, rng.randint(1, 3))
                if rng.random() < 0.5
                else _k_digit(rng, len(str(a)))
            )
        return "", {"a": str(a), "b": str(b)}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        a, b = int(fields["a"]), int(fields["b"])
        if a == b:
            raise ValueError("the numbers must differ")
        big, small = max(a, b), min(a, b)
        sb, ss = str(big), str(small)
        if len(sb) != len(ss):
            steps = (
                f"{big} has {len(sb)} digits and {small} has {len(ss)}.",
                f"More digits means larger, so {big} is larger.",
            )
        else:
            i = next(i for i in range(len(sb)) if sb[i] != ss[i])
            place = _PLACE_NAMES[len(sb) - 1 - i]
            steps = (
                f"Both have {len(sb)} digit{'s' if len(sb) > 1 else ''}; they first differ in the {place} digit, {sb[i]} against {ss[i]}.",
                f"{sb[i]} is more than {ss[i]}, so {big} is larger.",
            )
        subquestions = (
            (f"Is {a} larger than {b}?", "yes" if a > b else "no"),
            ("So which number is larger?", str(big)),
        )
        return Solution(str(big), steps, subquestions, {"digits": len(sb), "smaller": str(small)})

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        return example.meta["smaller"]


# --- calendar, cipher, reviews -----------------------------------------------------------------

_FIRST_DAY = dt.date(2000, 1, 1).toordinal()
_LAST_DAY = dt.date(2030, 12, 31).toordinal()


class DayOfWeek(Family):
    name = "day_of_week"
    description = "Name the weekday of a date between 2000 and 2030."
    phrasings = {
        "": (
            "What day of the week is {date}?",
            "On which day of the week does {date} fall?",
            "Name the weekday of {date}.",
        )
    }

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        return "", {"date": format_date(dt.date.fromordinal(rng.randint(_FIRST_DAY, _LAST_DAY)))}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        date = parse_date(fields["date"])
        jan1 = dt.date(date.year, 1, 1)
        n = (date - jan1).days
        subquestions = (
            (f"What day of the week is 1 January {date.year}?", weekday(jan1)),
            (f"How many days after 1 January {date.year} is {fields['date']}?", str(n)),
            (f"What is the remainder of {n} divided by 7?", str(n % 7)),
            (f"Which day comes {n % 7} days after {weekday(jan1)}?", weekday(date)),
        )
        return Solution(
            weekday(date), tuple(weekday_steps(date)), subquestions, {"year": date.year}
        )

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        i = WEEKDAYS.index(example.answer)
        return WEEKDAYS[(i + rng.choice((-1, 1, 2, 3))) % 7]


class CipherTo(Family):
    name = "cipher_to"
    description = "Translate a short English phrase into the world's cipher language, word by word."
    phrasings = {
        "": (
            "Translate '{text}' into {lang}.",
            "How do you say '{text}' in {lang}?",
            "Write '{text}' in {lang}.",
        )
    }
    match = "sequence"

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        return "", {"text": english_phrase(rng)}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        words = fields["text"].split()
        cipher = [world.lexicon[w] for w in words]
        pairs = dict(zip(words, cipher, strict=True))  # each word explained once
        steps = tuple(f"{e} is {c}." for e, c in pairs.items())
        subquestions = tuple(
            (f"What is the {world.language} word for {e}?", c) for e, c in pairs.items()
        )
        whole = (f"So what is '{fields['text']}' in {world.language}?", " ".join(cipher))
        return Solution(" ".join(cipher), steps, (*subquestions, whole), {"words": len(words)})

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        words = example.answer.split()
        i = rng.randrange(len(words))
        return " ".join(
            words[:i] + [_other(world.entities("cipher"), words[i], rng)] + words[i + 1 :]
        )


class CipherFrom(Family):
    name = "cipher_from"
    description = "Translate a phrase of the world's cipher language into English, word by word."
    phrasings = {
        "": (
            "Translate '{text}' from {lang} into English.",
            "What does the {lang} phrase '{text}' mean in English?",
            "Write the {lang} words '{text}' in English.",
        )
    }
    match = "sequence"

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        return "", {"text": world.translate(english_phrase(rng))}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        words = fields["text"].split()
        english = [world.english[w] for w in words]
        pairs = dict(zip(words, english, strict=True))  # each word explained once
        steps = tuple(f"{c} means {e}." for c, e in pairs.items())
        subquestions = tuple(
            (f"What does the {world.language} word {c} mean?", e) for c, e in pairs.items()
        )
        whole = (f"So what is '{fields['text']}' in English?", " ".join(english))
        return Solution(" ".join(english), steps, (*subquestions, whole), {"words": len(words)})

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        words = example.answer.split()
        i = rng.randrange(len(words))
        same_kind = next(
            kind for kind in (DETERMINERS, ADJECTIVES, NOUNS, VERBS) if words[i] in kind
        )
        return " ".join(words[:i] + [_other(same_kind, words[i], rng)] + words[i + 1 :])


_GOOD = ("good", "great", "lovely", "nice", "wonderful")
_BAD = ("bad", "awful", "dull", "terrible", "broken")
_OPENERS = (
    "I bought {a_thing} in {town}.",
    "My friend gave me {a_thing}.",
    "I tried the {thing} from {town}.",
)
_POSITIVE = (
    "It was {good}.",
    "I loved it.",
    "I would buy it again.",
    "The {thing} was really {good}.",
)
_NEGATIVE = (
    "It was {bad}.",
    "I hated it.",
    "I will never buy it again.",
    "The {thing} was not {good}.",
)


def _sentence_regex(template: str) -> re.Pattern[str]:
    pattern = re.escape(template)
    for name, alternatives in (("good", _GOOD), ("bad", _BAD)):
        pattern = pattern.replace(re.escape("{" + name + "}"), "(?:" + "|".join(alternatives) + ")")
    pattern = pattern.replace(re.escape("{thing}"), "[a-z]+").replace(
        re.escape("{a_thing}"), "an? [a-z]+"
    )
    return re.compile(pattern.replace(re.escape("{town}"), "[A-Z][a-z]+"))


_POLARITY = [(_sentence_regex(t), "positive") for t in _POSITIVE] + [
    (_sentence_regex(t), "negative") for t in _NEGATIVE
]
_NEUTRAL = [_sentence_regex(t) for t in _OPENERS]


class Sentiment(Family):
    name = "sentiment"
    description = "Say whether a short templated review is positive or negative."
    phrasings = {
        "": (
            'Is this review positive or negative? "{review}"',
            'Review: "{review}" Is it positive or negative?',
            'Tell me if this review is positive or negative: "{review}"',
        )
    }
    key_fields = ("review",)

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        thing, town = rng.choice(world.objects), rng.choice(world.towns)
        values = {
            "thing": thing,
            "a_thing": ("an " if thing[0] in "aeiou" else "a ") + thing,
            "town": town,
        }
        judged = rng.sample(_POSITIVE if rng.random() < 0.5 else _NEGATIVE, rng.randint(1, 2))
        sentences = [rng.choice(_OPENERS), *judged]
        values = {**values, "good": rng.choice(_GOOD), "bad": rng.choice(_BAD)}
        return "", {"review": " ".join(s.format(**values) for s in sentences)}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        sentences = re.split(r"(?<=\.) ", fields["review"])
        found = []
        for sentence in sentences:
            polarity = next((p for regex, p in _POLARITY if regex.fullmatch(sentence)), None)
            if polarity is None and not any(r.fullmatch(sentence) for r in _NEUTRAL):
                raise ValueError(f"not a templated review sentence: {sentence!r}")
            if polarity is not None:
                found.append((sentence, polarity))
        labels = {p for _, p in found}
        if len(labels) != 1:
            raise ValueError("a review must be all positive or all negative")
        label = labels.pop()
        steps = tuple(f'"{s}" is {p}.' for s, p in found) + (f"So the review is {label}.",)
        subquestions = tuple((f'Is "{s}" positive or negative?', p) for s, p in found)
        return Solution(
            label, steps, subquestions + (("So is the review positive or negative?", label),)
        )

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        return "negative" if example.answer == "positive" else "positive"


FAMILY_TYPES: tuple[type[Family], ...] = (
    FactQuestion,
    MultiHop,
    YesNoFact,
    Addition,
    Subtraction,
    Multiplication,
    WordProblem,
    ReverseWord,
    SpellWord,
    Uppercase,
    CountLetters,
    SortList,
    MaxList,
    CompareNumbers,
    DayOfWeek,
    CipherTo,
    CipherFrom,
    Sentiment,
)
FAMILIES: Mapping[str, Family] = {f.name: f() for f in FAMILY_TYPES}


def task_families() -> list[str]:
    """The names of the built-in task families, in a fixed order."""
    return list(FAMILIES)
