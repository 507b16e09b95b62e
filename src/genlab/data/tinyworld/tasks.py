"""Splits of the instruction tasks: disjoint examples within families, whole families held out.

Two questions need two kinds of split. "Does the model answer *new questions* of a skill it was
tuned on?" needs train/validation/test examples of one family that never share a question: the
split of a question is decided by a hash of its content (the key: the numbers, the person, the
word; not the phrasing), so all phrasings of one question land in the same split, whatever seed
generated them. "Does instruction tuning help on *unseen instructions*?" (FLAN, Wei et al., 2022)
needs whole families held out of tuning: :class:`TaskSuite` keeps the held-out families only in
its ``held_out`` split. The default held-out families each have a sibling skill in training
(``yes_no_fact``: fact questions; ``compare_numbers``: max of a list; ``spell_word``: reverse a
word), so transfer is possible and measurable.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable

from genlab.core.errors import GenlabError
from genlab.data.tinyworld.families import FAMILIES
from genlab.data.tinyworld.families.base import Example, Family
from genlab.data.tinyworld.world import World

SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
DEFAULT_HELD_OUT = ("yes_no_fact", "compare_numbers", "spell_word")


def split_of(key: str) -> str:
    """The split of a question key: a stable hash, 80% train, 10% validation, 10% test."""
    bucket = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % 100
    return "train" if bucket < 80 else "validation" if bucket < 90 else "test"


def get_family(family: str | Family) -> Family:
    if isinstance(family, Family):
        return family
    if family not in FAMILIES:
        raise GenlabError(f"unknown task family {family!r}; choose from: {', '.join(FAMILIES)}")
    return FAMILIES[family]


def make_examples(
    world: World, family: str | Family, n: int, split: str = "train", seed: int = 0
) -> list[Example]:
    """``n`` examples of one family in one split (``train``, ``validation``, ``test`` or ``all``).

    Deterministic in ``(world, family, n, split, seed)``; prompts are distinct. A family whose
    questions are few (fact questions about a small world) may return fewer than ``n`` for the
    small splits: it stops after ``50 * n + 200`` draws.
    """
    fam = get_family(family)
    if split not in (*SPLITS, "all"):
        raise GenlabError(f"unknown split {split!r}; choose from: {', '.join(SPLITS)}, all")
    if n < 0:
        raise GenlabError(f"number of examples must be >= 0, got {n}")
    rng = random.Random(f"tinyworld/tasks/{world.seed}/{world.size}/{fam.name}/{split}/{seed}")
    examples: list[Example] = []
    prompts: set[str] = set()
    for _ in range(50 * n + 200):
        if len(examples) >= n:
            break
        variant, fields = fam.sample(world, rng)
        if split != "all" and split_of(fam.key(variant, fields, world)) != split:
            continue
        prompt, phrasing = fam.render(world, variant, fields, rng)
        if prompt in prompts:
            continue
        prompts.add(prompt)
        examples.append(fam.build(world, variant, fields, prompt, phrasing))
    return examples


def parse_prompt(
    prompt: str, world: World, families: Iterable[str | Family] | None = None
) -> Example | None:
    """Read a bare prompt string back into its :class:`Example` (answer, steps and all).

    Works for any prompt a family renders; ``None`` for anything else.
    """
    for family in families if families is not None else FAMILIES.values():
        fam = get_family(family)
        parsed = fam.parse(prompt.strip(), world)
        if parsed is not None:
            variant, fields, phrasing = parsed
            return fam.build(world, variant, fields, prompt.strip(), phrasing)
    return None


class TaskSuite:
    """All task families of one world, with held-out families kept apart.

    ``examples("train" | "validation" | "test")`` draws from the tuned families only;
    ``examples("held_out")`` draws from the held-out families only (any key: they are never
    trained on). Demonstrations and preference pairs are built from the train split.
    """

    def __init__(
        self,
        world: World,
        held_out: Iterable[str] = DEFAULT_HELD_OUT,
        families: Iterable[str | Family] | None = None,
    ) -> None:
        self.world = world
        chosen = [get_family(f) for f in (families if families is not None else FAMILIES.values())]
        held = tuple(held_out)
        names = [f.name for f in chosen]
        for name in held:
            if name not in names:
                raise GenlabError(
                    f"held-out family {name!r} is not in the suite; choose from: {', '.join(names)}"
                )
        self.families = {f.name: f for f in chosen}
        self.held_out = tuple(n for n in names if n in held)
        self.tuned = tuple(n for n in names if n not in held)

    def examples(self, split: str, n_per_family: int = 100, seed: int = 0) -> list[Example]:
        """Examples of every family of ``split``, family by family in a fixed order."""
        if split == "held_out":
            return [
                e
                for n in self.held_out
                for e in make_examples(self.world, self.families[n], n_per_family, "all", seed)
            ]
        if split not in SPLITS:
            raise GenlabError(
                f"unknown split {split!r}; choose from: {', '.join(SPLITS)}, held_out"
            )
        return [
            e
            for n in self.tuned
            for e in make_examples(self.world, self.families[n], n_per_family, split, seed)
        ]

    def __repr__(self) -> str:
        return f"TaskSuite({len(self.tuned)} tuned families, held out: {', '.join(self.held_out) or 'none'})"
