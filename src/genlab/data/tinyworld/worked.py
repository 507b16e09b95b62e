"""Worked solutions: column arithmetic and weekday counting, written out step by step.

Chain-of-thought prompting (Wei et al., 2022) and least-to-most prompting (Zhou et al., 2023) need
problems whose intermediate steps are known. These functions write the steps a person writes for
column addition, subtraction with borrowing, multiplication by place value and counting days to a
weekday, so that the corpus (worked examples), the instruction tasks (reference steps) and the
tool-shaped text share one source of truth. Every step is a short sentence with its arithmetic
spelled out, and the last one states the result. :func:`false_equations` checks the arithmetic
of any text in that notation, such as a model's chain of thought.
"""

from __future__ import annotations

import datetime as dt
import math
import re

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_PLACES = ("Ones", "Tens", "Hundreds", "Thousands")


def _place(i: int) -> str:
    return _PLACES[i] if i < len(_PLACES) else f"Column {i + 1}"


def _digit(reversed_digits: str, i: int) -> int:
    return int(reversed_digits[i]) if i < len(reversed_digits) else 0


def add_steps(a: int, b: int) -> list[str]:
    """Column addition of two non-negative integers, right to left, with carries."""
    ra, rb = str(a)[::-1], str(b)[::-1]
    steps, carry = [], 0
    for i in range(max(len(ra), len(rb))):
        x, y = _digit(ra, i), _digit(rb, i)
        total = x + y + carry
        expr = f"{x} + {y}" + (f" + {carry}" if carry else "")
        if total >= 10:
            steps.append(f"{_place(i)}: {expr} = {total}, write {total % 10} and carry 1.")
        else:
            steps.append(f"{_place(i)}: {expr} = {total}, write {total}.")
        carry = total // 10
    if carry:
        steps.append(f"{_place(max(len(ra), len(rb)))}: write the carried 1.")
    steps.append(f"So {a} + {b} = {a + b}.")
    return steps


def sub_steps(a: int, b: int) -> list[str]:
    """Column subtraction ``a - b`` for ``a >= b >= 0``, right to left, with borrowing."""
    if a < b:
        raise ValueError(f"sub_steps needs a >= b, got {a} - {b}")
    ra, rb = str(a)[::-1], str(b)[::-1]
    steps, borrow = [], 0
    for i in range(len(ra)):
        x, y = _digit(ra, i), _digit(rb, i)
        top = x - borrow
        lead = f"{x} - 1 = {top}, and " if borrow else ""
        if top < y:
            steps.append(
                f"{_place(i)}: {lead}{top} is less than {y}, so borrow: {top + 10} - {y} = {top + 10 - y}."
            )
            borrow = 1
        else:
            steps.append(f"{_place(i)}: {lead}{top} - {y} = {top - y}.")
            borrow = 0
    steps.append(f"So {a} - {b} = {a - b}.")
    return steps


def _place_parts(n: int) -> list[int]:
    """``n`` split by place value, largest first, zeros dropped: 407 -> [400, 7]."""
    s = str(n)
    parts = [int(d) * 10 ** (len(s) - 1 - i) for i, d in enumerate(s) if d != "0"]
    return parts or [0]


def mul_steps(a: int, b: int) -> list[str]:
    """Multiplication by place value: split one factor into tens and ones, multiply, add up."""
    if b >= 10:
        partials = [(a, part) for part in _place_parts(b)]
    elif a >= 10:
        partials = [(part, b) for part in _place_parts(a)]
    else:
        return [f"{a} * {b} = {a * b}.", f"So {a} * {b} = {a * b}."]
    steps = [f"{x} * {y} = {x * y}." for x, y in partials]
    products = [x * y for x, y in partials]
    if len(products) > 1:
        steps.append(" + ".join(map(str, products)) + f" = {sum(products)}.")
    steps.append(f"So {a} * {b} = {a * b}.")
    return steps


def format_date(d: dt.date) -> str:
    """``12 March 2021``: the one date format of TinyWorld."""
    return f"{d.day} {MONTHS[d.month - 1]} {d.year}"


def parse_date(text: str) -> dt.date:
    """The inverse of :func:`format_date`; ``ValueError`` on anything else."""
    day, month, year = text.split()
    return dt.date(int(year), MONTHS.index(month) + 1, int(day))


def weekday(d: dt.date) -> str:
    return WEEKDAYS[d.weekday()]


def weekday_steps(d: dt.date) -> list[str]:
    """Count days from 1 January of the same year (whose weekday is given) to the date."""
    jan1 = dt.date(d.year, 1, 1)
    n = (d - jan1).days
    start = weekday(jan1)
    return [
        f"1 January {d.year} is a {start}.",
        f"{format_date(d)} is {n} days after 1 January {d.year}.",
        f"{n} = 7 * {n // 7} + {n % 7}, so the weekday moves on by {n % 7}.",
        f"{n % 7} days after {start} comes {weekday(d)}.",
    ]


_EQUATION = re.compile(r"(?<![\d.-])(\d+(?: [+*-] \d+)+) = (-?\d+)(?!\d)")


def evaluate(expression: str) -> int:
    """The value of ``"12 + 3 * 4 - 5"`` (integers, ``+ - *`` with the usual precedence)."""
    parts = re.split(r" ([+-]) ", expression)

    def product(term: str) -> int:
        return math.prod(int(x) for x in term.split(" * "))

    total = product(parts[0])
    for op, term in zip(parts[1::2], parts[2::2], strict=True):
        total = total + product(term) if op == "+" else total - product(term)
    return total


def false_equations(text: str) -> list[str]:
    """Every ``a + b = c`` (or ``-``, ``*``, chained) in ``text`` whose arithmetic is wrong."""
    return [m.group(0) for m in _EQUATION.finditer(text) if evaluate(m.group(1)) != int(m.group(2))]
