"""The judge: a programmatic stand-in for the human raters of the ChatGPT recipe.

InstructGPT (Ouyang et al., 2022) learns a reward model from people ranking answers, then
optimises a policy against it. With a program as the "human", an experiment can measure what
people cannot afford to: how well a reward model recovers the raters' preference, and whether
RLHF or DPO raise the *true* score rather than the learned one (reward hacking shows as a gap).

The rules, in order of weight (the score is in [0, 1]):

    score = 0.6 * correct + 0.25 * helpful + 0.15 * tone

1. **correct** (0 or 1): :meth:`Example.check` accepts the response's final answer (the rule of
   :mod:`genlab.data.tinyworld.answers`).
2. **helpful** (0 to 1): it answers the question without padding. Start at 1 and subtract
   0.15 per padding phrase ("great question", "I hope this helps", "let me know if", ...; at
   most three count), 0.3 if it hedges ("maybe", "I think", "not sure", ...), 0.3 if it stops
   mid-sentence (two words or more ending with a comma or a word like "the", "and", "to", and
   not with the answer),
   and 0.02 per word beyond a budget of 8 words plus the reference answer and its worked steps
   (at most 0.3). Showing the worked steps is never padding. An empty response scores 0.
3. **tone** (0 to 1): polite, no rambling. Start at 1 and subtract 0.5 per rude phrase
   ("obviously", "everyone knows", "do your own homework", ...; at most two count) and 0.3 if
   it rambles (says the same sentence twice; a worked step that recurs does not count).

Correctness weighs 0.6 and everything else at most 0.4, so a correct answer always beats a wrong
one; between answers equally correct, a concise polite one (no deduction) always beats a padded
or rude one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from genlab.core.errors import GenlabError
from genlab.data.tinyworld.families.base import Example
from genlab.data.tinyworld.tasks import parse_prompt
from genlab.data.tinyworld.world import World

WEIGHTS = {"correct": 0.6, "helpful": 0.25, "tone": 0.15}
PADDING = (
    "great question",
    "happy to help",
    "glad to help",
    "i hope this helps",
    "hope that helps",
    "let me know if",
    "feel free to",
    "thanks for asking",
    "thank you for asking",
    "as an ai",
    "of course",
    "certainly",
    "absolutely",
)
HEDGES = ("maybe", "not sure", "i think", "perhaps", "possibly", "might be", "i guess", "probably")
RUDE = (
    "obviously",
    "everyone knows",
    "stupid",
    "dumb",
    "idiot",
    "whatever",
    "ugh",
    "do your own homework",
    "waste of my time",
    "figure it out yourself",
    "seriously",
)
# Words a sentence cannot end on: a response ending on one was cut off.
FUNCTION_WORDS = frozenset(
    (  # noqa: SIM905  (a word list reads best as words)
        "the a an of to and or is are be in on at that with for it was but so if because as my "
        "your this"
    ).split()
)


def _phrase_regex(phrases: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(re.escape(p) for p in phrases) + r")\b")


_PADDING, _HEDGES, _RUDE = _phrase_regex(PADDING), _phrase_regex(HEDGES), _phrase_regex(RUDE)
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class Verdict:
    """The judge's score and its three parts (see the module docstring for the rules)."""

    correct: bool
    helpful: float
    tone: float

    @property
    def score(self) -> float:
        return (
            WEIGHTS["correct"] * self.correct
            + WEIGHTS["helpful"] * self.helpful
            + WEIGHTS["tone"] * self.tone
        )


def _unfinished(text: str, answer: str) -> bool:
    """Stops mid-sentence: two words or more ending on a comma, or on a function word that is
    not the end of the answer ("Sure, the answer is" is cut off; a bare "my" is just wrong)."""
    stripped = text.rstrip()
    words = stripped.split()
    if len(words) < 2 or stripped.casefold().endswith(answer.casefold()):
        return False
    return stripped.endswith(",") or words[-1].casefold() in FUNCTION_WORDS


def _sentences(text: str) -> list[str]:
    normalised = (" ".join(s.casefold().split()).rstrip(".!?") for s in _SENTENCES.split(text))
    return [s for s in normalised if s]


def _repeats(text: str, steps: tuple[str, ...]) -> bool:
    """Says a sentence twice (a worked step may recur: "9 is not larger than 9." twice is fine)."""
    allowed = set(_sentences(" ".join(steps)))
    sentences = [s for s in _sentences(text) if s not in allowed]
    return len(set(sentences)) < len(sentences)


def verdict(example: Example, response: str) -> Verdict:
    """Score ``response`` to ``example`` by the judge's rules, part by part."""
    text = response.strip()
    if not text:
        return Verdict(False, 0.0, 1.0)
    lowered = text.casefold()
    budget = 8 + len(example.answer.split()) + sum(len(s.split()) for s in example.steps)
    helpful = 1.0
    helpful -= 0.15 * min(3, len(_PADDING.findall(lowered)))
    helpful -= 0.3 * bool(_HEDGES.search(lowered))
    helpful -= 0.3 * _unfinished(text, example.answer)
    helpful -= min(0.3, 0.02 * max(0, len(text.split()) - budget))
    tone = 1.0 - 0.5 * min(2, len(_RUDE.findall(lowered))) - 0.3 * _repeats(text, example.steps)
    return Verdict(example.check(text), max(0.0, helpful), max(0.0, tone))


def describe_rules() -> str:
    """The judge's rules as Markdown, with its exact phrase lists (for dataset cards)."""
    w = WEIGHTS
    return "\n".join(
        [
            f"score = {w['correct']} * correct + {w['helpful']} * helpful + {w['tone']} * tone, in [0, 1].",
            "",
            "1. **correct** (0 or 1): the final answer passes the example's exact checker.",
            "2. **helpful** (0 to 1): start at 1; minus 0.15 per padding phrase (at most three), 0.3 if"
            " it hedges, 0.3 if it stops mid-sentence (two words or more ending on a comma or a"
            " function word that is not the answer), 0.02 per word beyond 8 + the answer's and worked steps' words (at most"
            " 0.3). An empty response scores 0.",
            "3. **tone** (0 to 1): start at 1; minus 0.5 per rude phrase (at most two), 0.3 if it"
            " says the same sentence twice (a recurring worked step does not count).",
            "",
            f"Padding phrases: {', '.join(PADDING)}.",
            f"Hedges: {', '.join(HEDGES)}.",
            f"Rude phrases: {', '.join(RUDE)}.",
            "",
            f"Correctness weighs {w['correct']} and the rest at most {w['helpful'] + w['tone']:.2f},"
            " so a correct answer always beats a wrong one; among equally correct answers a concise,"
            " polite one always beats a padded or rude one.",
        ]
    )


def judge(prompt_or_example: Example | str, response: str, world: World | None = None) -> float:
    """The judge's score in [0, 1] for ``response`` to an example or to a bare prompt string.

    A prompt string is read back into its example (any prompt a TinyWorld family renders); that
    needs the ``world`` it came from.
    """
    example = prompt_or_example
    if isinstance(example, str):
        if world is None:
            raise GenlabError(
                "judging a prompt string needs the World it came from: pass world=..."
            )
        parsed = parse_prompt(example, world)
        if parsed is None:
            raise GenlabError(
                f"the judge cannot read this prompt as a TinyWorld task: {example[:80]!r}"
            )
        example = parsed
    return verdict(example, response).score
