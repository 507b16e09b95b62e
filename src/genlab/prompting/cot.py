"""Chain of thought: let the model write the steps before the answer.

Few-shot CoT (Wei et al., 2022) shows demonstrations whose answers are worked solutions, so the
model writes its own steps and then "The answer is X.". Zero-shot CoT (Kojima et al., 2022) has
no demonstrations: it appends "Let's think step by step." after the question, lets the model
reason, then appends the reasoning and "Therefore, the answer is" and reads the answer from a
second, short continuation.
"""

from __future__ import annotations

from collections.abc import Sequence

from genlab.data.tinyworld.families.base import Example
from genlab.prompting.demos import select
from genlab.prompting.layout import qa_text, question, with_demos
from genlab.prompting.lm import LM
from genlab.prompting.settings import Outcome, PromptSettings, ask, outcome

TRIGGER = "Let's think step by step."  # Kojima et al.'s best reasoning trigger
ANSWER_TRIGGER = "Therefore, the answer is"  # their answer-extraction prompt
STOP = ("\n",)  # a worked solution is one line in pretraining's layout


def cot_prompt(example: Example, pool: Sequence[Example], settings: PromptSettings) -> str:
    """``settings.shots`` demonstrations answered with their worked solutions, then the question."""
    demos = select(pool, example, settings.shots, settings.rng(example), settings.selection)
    return with_demos(
        [qa_text(d.prompt, d.worked_solution) for d in demos], question(example.prompt)
    )


def chain_of_thought(
    lm: LM, examples: Sequence[Example], pool: Sequence[Example], settings: PromptSettings
) -> list[Outcome]:
    """Few-shot CoT, greedy: the answer is the one the model's worked solution states."""
    prompts = [cot_prompt(e, pool, settings) for e in examples]
    return ask(lm, examples, prompts, STOP, settings.reasoning_tokens, settings.seed)


def zero_shot_cot(lm: LM, examples: Sequence[Example], settings: PromptSettings) -> list[Outcome]:
    """Kojima et al.'s two stages: reason after the trigger, then extract after the answer trigger."""
    first = [question(e.prompt, TRIGGER) for e in examples]
    reasons = lm.generate_until(first, STOP, settings.reasoning_tokens, seed=settings.seed)
    second = [f"{p} {r[0].strip()} {ANSWER_TRIGGER}" for p, r in zip(first, reasons, strict=True)]
    answers = lm.generate_until(second, STOP, settings.max_tokens, seed=settings.seed)
    return [
        outcome(e, f"The answer is {a[0].strip()}", [r[0], a[0]])
        for e, r, a in zip(examples, reasons, answers, strict=True)
    ]
