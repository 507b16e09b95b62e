"""Every strategy behind one call."""

from __future__ import annotations

from collections.abc import Sequence

from genlab.core.errors import GenlabError
from genlab.data.tinyworld.families.base import Example
from genlab.prompting.cot import chain_of_thought, zero_shot_cot
from genlab.prompting.direct import few_shot, instruction, zero_shot
from genlab.prompting.least_to_most import least_to_most
from genlab.prompting.lm import LM
from genlab.prompting.self_consistency import self_consistency
from genlab.prompting.settings import Outcome, PromptSettings

NEEDS_DEMOS = ("few-shot", "cot", "self-consistency", "least-to-most")


def answer(
    lm: LM, examples: Sequence[Example], pool: Sequence[Example], settings: PromptSettings
) -> list[Outcome]:
    """Answer ``examples`` with ``settings.strategy``; demonstrations come from ``pool``."""
    if settings.strategy in NEEDS_DEMOS and settings.shots > 0 and not pool:
        raise GenlabError(f"{settings.strategy} needs demonstrations: give a pool or --shots 0")
    if not examples:
        return []
    match settings.strategy:
        case "zero-shot":
            return zero_shot(lm, examples, settings)
        case "few-shot":
            return few_shot(lm, examples, pool, settings)
        case "cot":
            return chain_of_thought(lm, examples, pool, settings)
        case "zs-cot":
            return zero_shot_cot(lm, examples, settings)
        case "self-consistency":
            return self_consistency(lm, examples, pool, settings)
        case "least-to-most":
            return least_to_most(lm, examples, pool, settings)
        case "instruction":
            return instruction(lm, examples, settings)
    raise GenlabError(f"unknown strategy {settings.strategy!r}")
