"""What every prompting strategy is told, and what it gives back for each question."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from genlab.core.errors import refuse_invalid
from genlab.data.tinyworld.answers import check, extract_answer
from genlab.data.tinyworld.families.base import Example
from genlab.prompting.demos import LABELS, SELECTIONS
from genlab.prompting.lm import LM

STRATEGIES = (
    "zero-shot",
    "few-shot",
    "cot",
    "zs-cot",
    "self-consistency",
    "least-to-most",
    "instruction",
)
STRATEGY_HELP = (
    "zero-shot | few-shot | cot | zs-cot | self-consistency | least-to-most | instruction "
    "(a chat model's bare question)"
)


@dataclass
class PromptSettings:
    """One strategy and its knobs; every strategy decodes greedily but self-consistency."""

    strategy: str = field(default="few-shot", metadata={"help": STRATEGY_HELP})
    shots: int = 3  # demonstrations per prompt (few-shot, cot, self-consistency, least-to-most)
    labels: str = "gold"  # the demonstrations' answers: gold | random (Min et al., 2022)
    selection: str = "random"  # which demonstrations: random | similar (most words in common)
    samples: int = 5  # self-consistency: reasoning paths sampled per question
    temperature: float = 0.7  # self-consistency: their sampling temperature
    reasoning: bool = True  # self-consistency over chains of thought (False: over bare answers)
    max_tokens: int = 24  # tokens for an answer
    reasoning_tokens: int = 96  # tokens for a chain of thought or a decomposition
    seed: int = 0  # demonstrations drawn and samples taken

    def __post_init__(self) -> None:
        checks = {
            "strategy": self.strategy in STRATEGIES,
            "shots": self.shots >= 0,
            "labels": self.labels in LABELS,
            "selection": self.selection in SELECTIONS,
            "samples": self.samples >= 1,
            "temperature": self.temperature >= 0,
            "max_tokens": self.max_tokens >= 1,
            "reasoning_tokens": self.reasoning_tokens >= 1,
        }
        refuse_invalid(self, checks, "prompting setting")

    def rng(self, example: Example) -> random.Random:
        """The draws for one question: the same whatever else is evaluated with it."""
        return random.Random(f"genlab/prompting/{self.seed}/{example.family}/{example.prompt}")


@dataclass
class Outcome:
    """A question answered: the final answer, whether it is right, the model's texts (every
    sample, every stage) and, for a vote, the winner's share and the number of distinct answers."""

    example: Example
    answer: str
    correct: bool
    completions: list[str] = field(default_factory=list)
    share: float = 1.0
    distinct: int = 1


def answer_of(text: str) -> str:
    """The final answer a continuation states ("... The answer is X.")."""
    return extract_answer(text)


def judge(example: Example, answer: str) -> bool:
    """Whether an extracted answer is the reference, by the family's rule (a hedge scores 0)."""
    return check(
        answer,
        example.answer,
        example.match,
        case_sensitive=example.case_sensitive,
        options=example.options,
    ).correct


def outcome(example: Example, text: str, completions: Sequence[str] | None = None) -> Outcome:
    answer = answer_of(text)
    return Outcome(example, answer, judge(example, answer), list(completions or [text]))


def ask(
    lm: LM,
    examples: Sequence[Example],
    prompts: Sequence[str],
    stop: Sequence[str],
    max_tokens: int,
    seed: int,
) -> list[Outcome]:
    """One greedy continuation of each prompt, read for its answer to its question."""
    texts = lm.generate_until(prompts, stop, max_tokens, seed=seed)
    return [outcome(e, t[0]) for e, t in zip(examples, texts, strict=True)]
