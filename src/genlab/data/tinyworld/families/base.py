"""What every task family is: the ``Family`` interface, the ``Example`` it makes, its templates.

An instruction-tuning experiment needs task *families* (FLAN, Wei et al., 2022): many examples of
one skill under several phrasings of its instruction, with an exact way to score an answer. A
:class:`Family` here is a generator and a solver glued by templates. It samples the *content* of
a question (the fields: numbers, a person, a word), renders it through one of at least three
phrasings, and solves it from the content alone, so that the answer, the worked steps
(chain-of-thought) and the sub-questions (least-to-most) always agree. Because phrasings are
templates, a prompt can also be read back into its content (:meth:`Family.parse`): the judge can
score a response to a bare prompt string.
"""

from __future__ import annotations

import random
import re
import string
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from genlab.data.tinyworld.answers import Checked, check
from genlab.data.tinyworld.vocabulary import article
from genlab.data.tinyworld.world import World

# What a template field may look like, so that reading a prompt back is unambiguous.
FIELD_PATTERNS = {
    "s": r"[A-Za-z]+",
    "o": r"[A-Za-z0-9]+",
    "a_s": r"an? [a-z]+",
    "a_o": r"an? [a-z]+",
    "P": r"[A-Z][a-z]+",
    "Q": r"[A-Z][a-z]+",
    "R": r"[A-Z][a-z]+",
    "a": r"\d+",
    "b": r"\d+",
    "c": r"\d+",
    "numbers": r"\d+(?:, \d+)+",
    "word": r"[a-z]+",
    "letter": r"[a-z]",
    "text": r"[A-Za-z]+(?: [A-Za-z]+)*",
    "review": r"[^\"]+",
    "date": r"\d{1,2} [A-Z][a-z]+ \d{4}",
    "lang": r"[A-Z][a-z]+",
    "items": r"[a-z]+",
}
_DISPLAY_ONLY = ("a_s", "a_o", "lang")
_COMPILED: dict[str, re.Pattern[str]] = {}


def template_regex(template: str) -> re.Pattern[str]:
    """A regex that matches exactly the strings ``template`` can render (fields captured)."""
    if template not in _COMPILED:
        parts, seen = [], set()
        for literal, name, _spec, _conv in string.Formatter().parse(template):
            parts.append(re.escape(literal))
            if name is None:
                continue
            if name in seen:
                parts.append(f"(?P={name})")
            else:
                parts.append(f"(?P<{name}>{FIELD_PATTERNS.get(name, '.+?')})")
                seen.add(name)
        _COMPILED[template] = re.compile("".join(parts))
    return _COMPILED[template]


@dataclass(frozen=True)
class Solution:
    """What solving a question gives: the answer, its steps, its sub-questions, facts about it.

    ``match`` overrides the family's match mode for this one question (a fact question whose
    answer is a number is matched as a number).
    """

    answer: str
    steps: tuple[str, ...] = ()
    subquestions: tuple[tuple[str, str], ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    match: str | None = None


@dataclass(frozen=True)
class Example:
    """One instruction and its reference answer, checkable exactly.

    ``steps`` are a worked solution (for chain-of-thought), ``subquestions`` a decomposition into
    simpler questions with their answers, the last of which answers the prompt (for
    least-to-most). ``match`` and ``case_sensitive`` say how :meth:`check` compares, by the rule
    of :mod:`genlab.data.tinyworld.answers`; ``options`` are the family's possible answers where
    there are few (a review's two labels), so that naming two of them is caught as a hedge. ``meta`` holds the variant, the phrasing index, the
    split key and family-specific facts (frequency class of the fact asked, number of digits).
    """

    family: str
    prompt: str
    answer: str
    steps: tuple[str, ...] = ()
    subquestions: tuple[tuple[str, str], ...] = ()
    match: str = "word"
    case_sensitive: bool = False
    options: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def checked(self, response: str) -> Checked:
        """``response`` checked: right, wrong, or rejected as evasive (and why)."""
        return check(
            response,
            self.answer,
            self.match,
            case_sensitive=self.case_sensitive,
            prompt=self.prompt,
            steps=self.steps,
            options=self.options,
        )

    def check(self, response: str) -> bool:
        """Whether ``response`` gives the reference answer, and only it."""
        return self.checked(response).correct

    @property
    def worked_solution(self) -> str:
        """The steps followed by "The answer is X." (just the latter when there are no steps)."""
        return " ".join((*self.steps, f"The answer is {self.answer}."))

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "prompt": self.prompt,
            "answer": self.answer,
            "steps": list(self.steps),
            "subquestions": [{"question": q, "answer": a} for q, a in self.subquestions],
            "match": self.match,
            "case_sensitive": self.case_sensitive,
            "options": list(self.options),
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Example:
        return cls(
            family=d["family"],
            prompt=d["prompt"],
            answer=d["answer"],
            steps=tuple(d.get("steps", ())),
            subquestions=tuple((s["question"], s["answer"]) for s in d.get("subquestions", ())),
            match=d.get("match", "word"),
            case_sensitive=d.get("case_sensitive", False),
            options=tuple(d.get("options", ())),
            meta=dict(d.get("meta", {})),
        )


class Family(ABC):
    """A task family: sample content, render it, solve it, corrupt an answer, read a prompt back.

    Subclasses set ``name``, ``description``, ``phrasings`` (variant -> at least three
    templates), ``match`` and ``case_sensitive``, and implement :meth:`sample`, :meth:`solve`
    and :meth:`corrupt`. Fields are strings; ``{a_s}``, ``{a_o}`` and ``{lang}`` are derived for
    display and never part of the content.
    """

    name: str
    description: str
    phrasings: Mapping[str, tuple[str, ...]]
    match: str = "word"
    case_sensitive: bool = False
    options: tuple[str, ...] = ()  # every possible answer, where there are few
    key_fields: tuple[str, ...] | None = None  # content that decides the split (default: all)
    key_group: str | None = None  # families sharing content share split keys (default: own name)

    @abstractmethod
    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        """A random question's variant and content fields."""

    @abstractmethod
    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        """Solve from the content alone; ``KeyError``/``ValueError`` when the content is invalid."""

    @abstractmethod
    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        """A plausible wrong answer: never one that :meth:`Example.check` accepts."""

    def render(
        self, world: World, variant: str, fields: Mapping[str, str], rng: random.Random
    ) -> tuple[str, int]:
        """The prompt in a phrasing chosen by ``rng``, and that phrasing's index."""
        templates = self.phrasings[variant]
        i = rng.randrange(len(templates))
        return templates[i].format(**self._display(world, fields)), i

    def _display(self, world: World | None, fields: Mapping[str, str]) -> dict[str, str]:
        shown = dict(fields)
        for name in ("s", "o"):
            if name in fields:
                shown[f"a_{name}"] = article(fields[name])
        if world is not None:
            shown["lang"] = world.language
        return shown

    def parse(self, prompt: str, world: World | None) -> tuple[str, dict[str, str], int] | None:
        """Read a prompt back into (variant, fields, phrasing), or ``None`` if it is not ours."""
        for variant, templates in self.phrasings.items():
            for i, template in enumerate(templates):
                m = template_regex(template).fullmatch(prompt)
                if m is None:
                    continue
                found = m.groupdict()
                if "lang" in found and (world is None or found["lang"] != world.language):
                    continue
                fields = {k: v for k, v in found.items() if k not in _DISPLAY_ONLY}
                for name in ("s", "o"):
                    if f"a_{name}" in found:
                        fields[name] = found[f"a_{name}"].split(" ", 1)[1]
                try:
                    self.solve(world, variant, fields)
                except (KeyError, ValueError, TypeError, AttributeError):
                    continue
                return variant, fields, i
        return None

    def key_content(self, world: World | None, fields: Mapping[str, str]) -> Mapping[str, str]:
        """The fields that decide a question's split (``key_fields``, default all)."""
        names = sorted(self.key_fields if self.key_fields is not None else fields)
        return {k: fields[k] for k in names}

    def key(self, variant: str, fields: Mapping[str, str], world: World | None = None) -> str:
        """The content identity of a question: phrasings of one question share a key, and so do
        families that share content (``key_group``: both cipher directions)."""
        content = self.key_content(world, fields)
        group = self.key_group or self.name
        return f"{group}|{variant}|" + "|".join(f"{k}={v}" for k, v in content.items())

    def build(
        self,
        world: World | None,
        variant: str,
        fields: Mapping[str, str],
        prompt: str,
        phrasing: int,
    ) -> Example:
        solution = self.solve(world, variant, fields)
        meta = {"variant": variant, "phrasing": phrasing, "key": self.key(variant, fields, world)}
        return Example(
            family=self.name,
            prompt=prompt,
            answer=solution.answer,
            steps=solution.steps,
            subquestions=solution.subquestions,
            match=solution.match or self.match,
            case_sensitive=self.case_sensitive,
            options=self.options,
            meta={**meta, **solution.meta},
        )

    def __repr__(self) -> str:
        n = sum(len(t) for t in self.phrasings.values())
        return f"<Family {self.name}: {n} phrasings, match={self.match}>"
