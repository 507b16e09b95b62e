"""The judge: a programmatic stand-in for the human raters of the ChatGPT recipe.

InstructGPT (Ouyang et al., 2022) learns a reward model from people ranking answers, then
optimises a policy against it. With a program as the "human", an experiment can measure what
people cannot afford to: how well a reward model recovers the raters' preference, and whether
RLHF or DPO raise the *true* score rather than the learned one (reward hacking shows as a gap).
A judge that a policy could game would reward the hacking instead, so the judge first checks
that the response gives one answer (:func:`genlab.data.tinyworld.answers.check`): a hedge
("positive or negative"), a list holding the answer, the answer stuffed or repeated, the answer
then a contradiction, the question said back, an empty or an over-long response all score 0.

Otherwise the score, in [0, 1], is

    score = 0.6 * correct + 0.1 * (concise + direct + polite + no_filler)

1. **correct** (0 or 1): :meth:`Example.check` accepts the response's one final answer.
2. **concise** (0 to 1): minus 0.05 per word beyond a budget of 8 words plus the reference
   answer's and its worked steps' (showing the worked steps is never padding).
3. **direct** (0 to 1): minus 0.5 if it hedges ("maybe", "I think", "not sure", ...) and 0.5 if
   it stops mid-sentence (two words or more ending on a comma or on a word like "the", "and",
   "to" that is not the end of the answer).
4. **polite** (0 to 1): minus 0.5 per rude phrase ("obviously", "everyone knows", "do your own
   homework", ...; two at most count).
5. **no_filler** (0 to 1): minus 1/3 per pleasantry ("great question", "I hope this helps",
   "let me know if", ...; three at most count).

Correctness weighs 0.6 and style at most 0.4, so a correct answer always beats a wrong one;
between answers equally correct, one with no deduction always beats one with any.
"""

from __future__ import annotations

from dataclasses import dataclass

from genlab.core.errors import GenlabError
from genlab.data.tinyworld.answers import word_budget
from genlab.data.tinyworld.families.base import Example
from genlab.data.tinyworld.style import (
    FUNCTION_WORDS,
    HEDGES,
    HEDGES_RE,
    PADDING,
    PADDING_RE,
    RUDE,
    RUDE_RE,
)
from genlab.data.tinyworld.tasks import parse_prompt
from genlab.data.tinyworld.world import World

CORRECT_WEIGHT = 0.6
STYLE_WEIGHT = 0.1  # each of concise, direct, polite, no_filler


@dataclass(frozen=True)
class Verdict:
    """The judge's score and its parts (see the module docstring for the rules)."""

    correct: bool
    concise: float
    direct: float
    polite: float
    no_filler: float
    rejected: str | None = None  # why the response evades: it then scores 0

    @property
    def score(self) -> float:
        if self.rejected is not None:
            return 0.0
        style = self.concise + self.direct + self.polite + self.no_filler
        return CORRECT_WEIGHT * self.correct + STYLE_WEIGHT * style


def _unfinished(text: str, answer: str) -> bool:
    """Stops mid-sentence: two words or more ending on a comma, or on a function word that is
    not the end of the answer ("Sure, the answer is" is cut off; a bare "my" is just wrong)."""
    stripped = text.rstrip()
    words = stripped.split()
    if len(words) < 2 or stripped.casefold().endswith(answer.casefold()):
        return False
    return stripped.endswith(",") or words[-1].casefold() in FUNCTION_WORDS


def verdict(example: Example, response: str) -> Verdict:
    """Score ``response`` to ``example`` by the judge's rules, part by part."""
    text = response.strip()
    checked = example.checked(text)
    if checked.rejected is not None:
        return Verdict(False, 0.0, 0.0, 0.0, 0.0, checked.rejected)
    lowered = text.casefold()
    budget = word_budget(example.answer, example.steps)
    concise = max(0.0, 1.0 - 0.05 * max(0, len(text.split()) - budget))
    direct = 1.0 - 0.5 * bool(HEDGES_RE.search(lowered)) - 0.5 * _unfinished(text, example.answer)
    polite = 1.0 - 0.5 * min(2, len(RUDE_RE.findall(lowered)))
    no_filler = max(0.0, 1.0 - min(3, len(PADDING_RE.findall(lowered))) / 3)
    return Verdict(checked.correct, concise, direct, polite, no_filler)


def describe_rules() -> str:
    """The judge's rules as Markdown, with its exact phrase lists (for dataset cards)."""
    return "\n".join(
        [
            f"score = {CORRECT_WEIGHT} * correct + {STYLE_WEIGHT} * (concise + direct + polite"
            " + no_filler), in [0, 1]; 0 for a response that evades.",
            "",
            "0. **evasion** scores 0: more than one answer sentence once worked steps and"
            " pleasantries are set aside (a repeat, a contradiction), a hedge or a list in the"
            " answer ('positive or negative', 'Pilby, Gunford', several numbers that are not an"
            " equation), the answer stuffed, the question said back, an empty response, or one"
            " over 2 * budget + 20 words.",
            "1. **correct** (0 or 1): the one final answer passes the example's exact checker.",
            "2. **concise** (0 to 1): minus 0.05 per word beyond the budget, 8 + the answer's and"
            " the worked steps' words.",
            "3. **direct** (0 to 1): minus 0.5 if it hedges, 0.5 if it stops mid-sentence (two"
            " words or more ending on a comma or a function word that is not the answer).",
            "4. **polite** (0 to 1): minus 0.5 per rude phrase (at most two).",
            "5. **no_filler** (0 to 1): minus 1/3 per pleasantry (at most three).",
            "",
            f"Pleasantries: {', '.join(PADDING)}.",
            f"Hedges: {', '.join(HEDGES)}.",
            f"Rude phrases: {', '.join(RUDE)}.",
            "",
            f"Correctness weighs {CORRECT_WEIGHT} and style at most {4 * STYLE_WEIGHT:.1f}, so a"
            " correct answer always beats a wrong one; among equally correct answers one with no"
            " deduction always beats one with any.",
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
