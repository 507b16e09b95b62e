"""The plain-text layout of solved tasks that pretraining shows and prompts follow.

A small pretrained model has no chat template and no notion of "instructions": it continues text.
TinyWorld's pretraining documents hold solved tasks in one layout (``Question: ...`` then
``Answer: ...``, blank lines between them), so every prompting strategy writes its demonstrations
and its question in that layout and the model's continuation is the answer (Brown et al., 2020).
"""

from __future__ import annotations

from collections.abc import Sequence

SEPARATOR = "\n\n"  # between solved tasks in a document and between demonstrations in a prompt


def qa_text(prompt: str, answer: str) -> str:
    """One solved task."""
    return f"Question: {prompt}\nAnswer: {answer}"


def direct(answer: str) -> str:
    """An answer stated without steps, as pretraining states it."""
    return f"The answer is {answer}."


def question(prompt: str, lead: str = "") -> str:
    """A task left open for the model: ``Answer:`` and an optional ``lead`` it continues from."""
    return f"Question: {prompt}\nAnswer:" + (f" {lead}" if lead else "")


def with_demos(demos: Sequence[str], text: str) -> str:
    """Demonstrations, then the open task."""
    return SEPARATOR.join([*demos, text])
