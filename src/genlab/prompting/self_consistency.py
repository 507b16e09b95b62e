"""Self-consistency (Wang et al., 2023): sample several answers and keep the majority's.

Greedy decoding follows one reasoning path; sampling ``samples`` paths at a temperature and voting
on their final answers marginalises over paths. The paper's claim is that this helps chains of
thought more than bare answers, because reasoning paths are diverse while a bare answer mostly
repeats itself: each outcome records the winner's share and the number of distinct answers, so
the diversity is measured, not assumed.
"""

from __future__ import annotations

from collections.abc import Sequence

from genlab.data.tinyworld.families.base import Example
from genlab.prompting import cot, direct
from genlab.prompting.lm import LM
from genlab.prompting.settings import Outcome, PromptSettings, answer_of, judge
from genlab.prompting.vote import majority


def self_consistency(
    lm: LM, examples: Sequence[Example], pool: Sequence[Example], settings: PromptSettings
) -> list[Outcome]:
    """``settings.samples`` few-shot CoT (or, with ``reasoning=False``, direct) answers per
    question at ``settings.temperature``; the majority answer wins."""
    if settings.reasoning:
        prompts = [cot.cot_prompt(e, pool, settings) for e in examples]
        stop, tokens = cot.STOP, settings.reasoning_tokens
    else:
        prompts = [direct.few_shot_prompt(e, pool, settings) for e in examples]
        stop, tokens = direct.STOP, settings.max_tokens
    texts = lm.generate_until(
        prompts, stop, tokens, settings.temperature, settings.samples, settings.seed
    )
    outcomes = []
    for example, samples in zip(examples, texts, strict=True):
        vote = majority([answer_of(t) for t in samples])
        outcomes.append(
            Outcome(
                example,
                vote.answer,
                judge(example, vote.answer),
                samples,
                vote.share,
                vote.distinct,
            )
        )
    return outcomes
