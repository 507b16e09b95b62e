"""Prompting strategies over any language model: in-context learning, chain of thought,
self-consistency, least-to-most, and automatic instruction search (issue 14)."""

from genlab.prompting.lm import LM, LocalLM, OpenAILM, open_lm
from genlab.prompting.settings import Outcome, PromptSettings
from genlab.prompting.strategies import answer

__all__ = [
    "LM",
    "LocalLM",
    "OpenAILM",
    "Outcome",
    "PromptSettings",
    "answer",
    "open_lm",
]
