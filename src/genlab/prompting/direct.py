"""Answering without steps: zero-shot, in-context learning with k demonstrations, and the bare
instruction for a chat model.

Zero-shot asks the question alone in pretraining's layout; few-shot puts ``shots`` solved examples
of the same family before it (GPT-3, Brown et al., 2020), chosen and labelled as
:mod:`genlab.prompting.demos` says. The model's line after ``Answer:`` is the answer. An
instruction-tuned model (FLAN, Wei et al., 2022) is asked the bare instruction as the user's
message, with no layout and no demonstrations, and its whole reply is read for the answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from genlab.data.tinyworld.families.base import Example
from genlab.prompting.demos import label_space, select, shown_answers
from genlab.prompting.layout import direct, qa_text, question, with_demos
from genlab.prompting.lm import LM
from genlab.prompting.settings import Outcome, PromptSettings, ask

STOP = ("\n",)  # an answer is one line


def few_shot_prompt(example: Example, pool: Sequence[Example], settings: PromptSettings) -> str:
    """``settings.shots`` demonstrations (their labels gold or random), then the question."""
    rng = settings.rng(example)
    demos = select(pool, example, settings.shots, rng, settings.selection)
    shown = shown_answers(demos, settings.labels, label_space(pool, example.family), rng)
    return with_demos(
        [qa_text(d.prompt, direct(a)) for d, a in zip(demos, shown, strict=True)],
        question(example.prompt),
    )


def zero_shot(lm: LM, examples: Sequence[Example], settings: PromptSettings) -> list[Outcome]:
    """Each question alone."""
    prompts = [question(e.prompt) for e in examples]
    return ask(lm, examples, prompts, STOP, settings.max_tokens, settings.seed)


def few_shot(
    lm: LM, examples: Sequence[Example], pool: Sequence[Example], settings: PromptSettings
) -> list[Outcome]:
    """Each question after ``settings.shots`` demonstrations from ``pool``."""
    prompts = [few_shot_prompt(e, pool, settings) for e in examples]
    return ask(lm, examples, prompts, STOP, settings.max_tokens, settings.seed)


def instruction(lm: LM, examples: Sequence[Example], settings: PromptSettings) -> list[Outcome]:
    """Each bare instruction, for a chat model (the model's end of turn ends the reply, which
    may hold worked steps before the answer)."""
    prompts = [e.prompt for e in examples]
    return ask(lm, examples, prompts, (), settings.reasoning_tokens, settings.seed)
