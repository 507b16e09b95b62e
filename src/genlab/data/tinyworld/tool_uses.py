"""TinyWorld questions a tool answers, and the call that answers each one.

Toolformer (Schick et al., 2023) measures tools on questions a small model gets wrong alone:
arithmetic (the calculator), dates (the calendar) and facts (a lookup). TinyWorld has families
of each kind; this module says which tool serves which family and writes, from an example's own
fields, the call a careful user would make (``calculator(345 + 678)``,
``calendar(27 November 2011)``, ``lookup(age of Repul)``). The calls are the few demonstrations
Toolformer starts from and the reference for "was the right call made" in evaluation.
"""

from __future__ import annotations

from genlab.core.errors import GenlabError
from genlab.data.tinyworld.families.base import Example
from genlab.data.tinyworld.tasks import make_examples
from genlab.data.tinyworld.world import World

TOOL_FAMILIES: dict[str, tuple[str, ...]] = {
    "calculator": ("addition", "subtraction", "multiplication"),
    "calendar": ("day_of_week",),
    "lookup": ("fact_question",),
}


def fields(example: Example) -> dict[str, str]:
    """The fields an example was made from, read back from its split key
    (``addition||a=21|b=21`` -> ``{"a": "21", "b": "21"}``)."""
    return dict(part.split("=", 1) for part in example.meta["key"].split("|")[2:] if part)


def tool_questions(
    world: World, tool: str, n: int, split: str, seed: int, digits: int | None = None
) -> list[Example]:
    """``n`` questions of ``split`` that ``tool`` answers, its families taking turns;
    ``digits`` keeps arithmetic whose operands all have that many digits."""
    if tool not in TOOL_FAMILIES:
        raise GenlabError(f"unknown tool {tool!r}; choose from: {', '.join(TOOL_FAMILIES)}")
    pools = []
    for family in TOOL_FAMILIES[tool]:
        pool = make_examples(world, family, n * (8 if digits else 1), split, seed)
        if digits is not None:
            pool = [e for e in pool if all(len(v) == digits for v in fields(e).values())]
        pools.append(pool)
    longest = max(len(p) for p in pools)
    mixed = [p[i] for i in range(longest) for p in pools if i < len(p)]
    if len(mixed) < n:
        raise GenlabError(f"only {len(mixed)} {tool} questions of {split}; ask for fewer")
    return mixed[:n]
