"""Lists and numbers: sort a short list, find its maximum, compare two numbers.

``compare_numbers`` is held out by default while ``max_list`` is tuned: a sibling skill, so
transfer to an unseen instruction can be measured.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from genlab.data.tinyworld.families.base import Example, Family, Solution
from genlab.data.tinyworld.families.common import k_digit
from genlab.data.tinyworld.world import World


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
        a = k_digit(rng, rng.randint(1, 3))
        b = a
        while b == a:
            b = k_digit(rng, rng.randint(1, 3)) if rng.random() < 0.5 else k_digit(rng, len(str(a)))
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
