"""Arithmetic families with worked steps: k-digit +, -, *, two-step word problems, weekdays.

Each answer comes with worked steps (column arithmetic and day counting, from
:mod:`genlab.data.tinyworld.worked`: chain-of-thought) and a decomposition into simpler questions
(least-to-most), so prompting experiments can compare a direct answer, chain-of-thought and
least-to-most on one question. ``max_digits`` sets the size of the numbers; it is small by
default so that a tiny model can learn them.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping

from genlab.data.tinyworld.families.base import Example, Family, Solution
from genlab.data.tinyworld.families.common import k_digit
from genlab.data.tinyworld.vocabulary import ITEMS
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
from genlab.data.tinyworld.world import World


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
        a = k_digit(rng, rng.randint(1, self.max_digits))
        b = k_digit(rng, rng.randint(1, self.max_digits))
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
    options = tuple(WEEKDAYS)

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
