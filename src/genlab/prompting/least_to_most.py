"""Least-to-most prompting (Zhou et al., 2023): decompose, then solve the parts in order.

Stage one shows demonstrations of questions broken into simpler subquestions and asks for the
new question's subquestions (one line, each ending in "?"). Stage two answers them one at a
time: each prompt holds demonstrations of solved subquestion chains, then the question with the
subquestions answered so far, so every answer is fed forward into the next. The last
subquestion's answer is the answer. The claim: this generalises to problems harder (longer) than
any demonstration, where chain of thought does not.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from genlab.data.tinyworld.families.base import Example
from genlab.prompting.demos import select
from genlab.prompting.layout import with_demos
from genlab.prompting.lm import LM
from genlab.prompting.settings import Outcome, PromptSettings, outcome

STOP = ("\n",)
_SPLIT = re.compile(r"(?<=\?)\s+")


def decomposition_text(prompt: str, subquestions: Sequence[str] = ()) -> str:
    """A question and its subquestions on one line (left open when there are none yet)."""
    return f"Question: {prompt}\nSubquestions:" + "".join(f" {q}" for q in subquestions)


def solution_text(prompt: str, solved: Sequence[tuple[str, str]]) -> str:
    """A question and its subquestions answered in order, one ``Q:``/``A:`` pair per line."""
    return "\n".join([f"Question: {prompt}", *(f"Q: {q}\nA: {a}" for q, a in solved)])


def split_subquestions(text: str) -> list[str]:
    """The subquestions of a decomposition line: each ends with "?" (a trailing fragment that
    does not is dropped: the model ran out of tokens mid-question)."""
    return [q.strip() for q in _SPLIT.split(text.strip()) if q.strip().endswith("?")]


def least_to_most(
    lm: LM, examples: Sequence[Example], pool: Sequence[Example], settings: PromptSettings
) -> list[Outcome]:
    """Decompose each question with ``settings.shots`` demonstrations, then answer its
    subquestions in order; a question the model does not decompose is answered as its own one
    subquestion."""
    demos = [
        select([d for d in pool if d.subquestions], e, settings.shots, settings.rng(e), "random")
        for e in examples
    ]
    stage_one = [
        with_demos(
            [decomposition_text(d.prompt, [q for q, _ in d.subquestions]) for d in ds],
            decomposition_text(e.prompt),
        )
        for e, ds in zip(examples, demos, strict=True)
    ]
    lines = lm.generate_until(stage_one, STOP, settings.reasoning_tokens, seed=settings.seed)
    plans = [split_subquestions(t[0]) or [e.prompt] for e, t in zip(examples, lines, strict=True)]
    solved: list[list[tuple[str, str]]] = [[] for _ in examples]
    for step in range(max(len(p) for p in plans)):
        open_ = [i for i, p in enumerate(plans) if step < len(p)]
        prompts = [
            with_demos(
                [solution_text(d.prompt, d.subquestions) for d in demos[i]],
                f"{solution_text(examples[i].prompt, solved[i])}\nQ: {plans[i][step]}\nA:",
            )
            for i in open_
        ]
        answers = lm.generate_until(prompts, STOP, settings.max_tokens, seed=settings.seed + step)
        for i, a in zip(open_, answers, strict=True):
            solved[i].append((plans[i][step], a[0].strip()))
    return [
        outcome(e, f"The answer is {s[-1][1]}", [line[0], *(a for _, a in s)])
        for e, s, line in zip(examples, solved, lines, strict=True)
    ]
