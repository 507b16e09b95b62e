"""Reliability: 10,000 random and adversarial arguments per tool, every answer text in time.

A model writes whatever it likes between a call's parentheses, so each tool is fed strings built
to break it: huge powers, deep nesting, NUL bytes, lone surrogates, code, format strings, very
long text, and near-misses of valid calls (valid arguments with characters inserted, deleted or
replaced). Every call must return one line of text well within the tool's timeout, and none may
reach the timeout at all: the tools bound their own work.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from genlab.data.tinyworld.world import World
from genlab.tools import TOOL_NAMES, Tool, call_tool, run_call, toolbox
from genlab.tools.lookup import PHRASES

N_PER_TOOL = 10_000
SLACK_S = 0.5

ADVERSARIAL = [
    "9^9^9^9",
    "9**9**9**9",
    "10**10**10",
    "2^(2^(2^(2^(2^5))))",
    "(-1)^(10^40) * 7",
    "1/3^-45",
    "(" * 10_000,
    "(" * 31 + "1" + ")" * 31,
    "-" * 10_000 + "1",
    "1" * 1_000_000,
    "__import__('os').system('x')",
    "().__class__.__mro__[1].__subclasses__()",
    "{0.__class__}",
    "%s%s%s%n%x",
    "{}{}{}",
    "\x00",
    "\x00" * 50 + "1+1",
    "\ud800\udfff",
    "\U0001f600" * 100,
    "\u0663 + \u0663",
    "1e308 * 1e308",
    "nan",
    "-inf",
    "0/0",
    "()",
    "",
    " ",
    "\n\t\r",
    "1 // 2",
    "1 << 10000",
    "lambda: 0",
    "; rm -rf /",
    "'; DROP TABLE facts; --",
    "A" * 200,
    "days from 1 January 1 to 31 December 9999",
    "999999999999999999999 days after 1 January 2000",
    "2 days before 0001-01-01",
    "31 February 2024",
    "of " * 1000,
    "'s " * 100,
    "capital of " * 4 + "x",
    "the the the",
    "*" * 5000,
    ")" * 100,
    "1." + "0" * 40,
]

_UNICODE = [chr(c) for c in (*range(0, 0x80), 0xA0, 0x2028, 0x202E, 0xFEFF, 0xD800, 0x10FFFF)]


def _random_text(rng: random.Random) -> str:
    """Characters from anywhere: ASCII, controls, bidi marks, surrogates, any code point."""
    n = rng.choice((rng.randint(0, 40), rng.randint(0, 400), rng.randint(0, 5000)))
    if rng.random() < 0.5:
        return "".join(rng.choices(_UNICODE, k=n))
    return "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(min(n, 300)))


def _mutate(text: str, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 4)):
        at = rng.randint(0, len(chars))
        op = rng.random()
        if op < 0.4:
            chars.insert(at, rng.choice("()^*/%+-.0123456789 of'sday\x00"))
        elif op < 0.7 and chars:
            del chars[min(at, len(chars) - 1)]
        elif chars:
            chars[min(at, len(chars) - 1)] = rng.choice(_UNICODE)
    return "".join(chars)


def _soup(words: list[str], rng: random.Random) -> str:
    """Words a valid argument is made of, in random order and number."""
    return rng.choice(("", " ")).join(rng.choice(words) for _ in range(rng.randint(1, 20)))


def _arguments(valid: Callable[[random.Random], str], words: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(N_PER_TOOL):
        roll = rng.random()
        if i < len(ADVERSARIAL):
            out.append(ADVERSARIAL[i])
        elif roll < 0.2:
            out.append(valid(rng))
        elif roll < 0.5:
            out.append(_mutate(valid(rng), rng))
        elif roll < 0.8:
            out.append(_soup(words, rng))
        else:
            out.append(_random_text(rng))
    return out


def _expression(rng: random.Random, depth: int = 0) -> str:
    if depth > 3 or rng.random() < 0.3:
        return rng.choice((str(rng.randint(0, 10 ** rng.randint(1, 12))), f"{rng.random():.3f}"))
    op = rng.choice(("+", "-", "*", "/", "%", "^", "**"))
    left, right = _expression(rng, depth + 1), _expression(rng, depth + 1)
    return rng.choice((f"{left} {op} {right}", f"({left}) {op} -{right}"))


def _date(rng: random.Random) -> str:
    day, month, year = rng.randint(0, 32), rng.randint(0, 13), rng.randint(0, 10_000)
    months = ["January", "February", "March", "April", "May", "June", "July", "December"]
    return rng.choice((f"{day} {rng.choice(months)} {year}", f"{year:04d}-{month:02d}-{day:02d}"))


def _calendar(rng: random.Random) -> str:
    n = rng.choice((rng.randint(0, 400), rng.randint(0, 10**9)))
    return rng.choice(
        (
            _date(rng),
            f"weekday of {_date(rng)}",
            f"{n} days {rng.choice(('after', 'before'))} {_date(rng)}",
            f"days from {_date(rng)} to {_date(rng)}",
            f"days between {_date(rng)} and {_date(rng)}",
        )
    )


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=2, size=16)


@pytest.fixture(scope="module")
def tools(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Tool]:
    docs = tmp_path_factory.mktemp("fuzz_docs")
    for i, doc in enumerate(world.corpus(n_docs=30)):
        (docs / f"{i}.txt").write_text(doc, encoding="utf-8")
    return toolbox(TOOL_NAMES, world=world, documents=Path(docs))


def _cases(name: str, world: World) -> list[str]:
    names = [*world.persons, *world.towns, *world.countries, *world.creatures, *world.objects]
    if name == "calculator":
        words = list("0123456789()+-*/%^.") + ["**", " ", "1000000", "0.5"]
        return _arguments(_expression, words, seed=1)
    if name == "calendar":
        words = ["days", "day", "after", "before", "from", "to", "between", "and", "weekday"]
        words += ["of", "March", "2024", "-", "31", "0", "9999", " "]
        return _arguments(_calendar, words, seed=2)

    facts = [f for f in world.facts if f.relation != "cipher"]
    phrase_of = {relation: p for p, by_kind in PHRASES.items() for relation in by_kind.values()}

    def fact(rng: random.Random) -> str:
        if rng.random() < 0.5:  # a fact the world has
            f = rng.choice(facts)
            return f"{phrase_of[f.relation]} of {f.subject}"
        chain = " of the ".join(rng.choice(list(PHRASES)) for _ in range(rng.randint(1, 5)))
        return f"{chain} of {rng.choice(names)}"

    words = [*PHRASES, *names, "of", "the", "'s", " ", "?"]
    return _arguments(fact, words, seed=3 if name == "lookup" else 4)


@pytest.mark.parametrize("name", TOOL_NAMES)
def test_every_call_answers_in_time(name: str, tools: dict[str, Tool], world: World) -> None:
    tool = tools[name]
    answered = 0
    for args in _cases(name, world):
        start = time.perf_counter()
        result = call_tool(tool, args)
        elapsed = time.perf_counter() - start
        assert isinstance(result, str), args
        assert elapsed < tool.timeout_s + SLACK_S, (args[:80], elapsed)
        assert "took longer" not in result, args[:80]
        assert "\n" not in result, (args[:80], result)
        answered += not result.startswith("error:")
    assert answered > N_PER_TOOL // 20  # the near-misses reach the tool's real work too


def test_run_call_survives_any_text(tools: dict[str, Tool]) -> None:
    rng = random.Random(5)
    for i in range(2_000):
        args = ADVERSARIAL[i % len(ADVERSARIAL)] if i % 2 else _random_text(rng)
        text = rng.choice(
            (f"{rng.choice(TOOL_NAMES)}({args})", args, f"{args}({args})", f"calculator({args}")
        )
        assert isinstance(run_call(tools, text), str)
