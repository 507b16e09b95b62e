"""The judge's style vocabulary: pleasantries, hedges and rudeness, and how text splits into sentences.

Shared by the checker (a sentence that is only a pleasantry is not an answer) and the judge (each
phrase costs style points), so both read the same lists.
"""

from __future__ import annotations

import re

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


def phrase_regex(phrases: tuple[str, ...]) -> re.Pattern[str]:
    """Any of ``phrases`` as whole words (match against case-folded text)."""
    return re.compile(r"\b(?:" + "|".join(re.escape(p) for p in phrases) + r")\b")


PADDING_RE, HEDGES_RE, RUDE_RE = phrase_regex(PADDING), phrase_regex(HEDGES), phrase_regex(RUDE)
ANY_PHRASE_RE = phrase_regex(PADDING + HEDGES + RUDE)
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``: broken after ``.!?`` followed by space, and at line breaks."""
    return [s.strip() for s in _SENTENCE_BREAK.split(text) if s.strip()]


def normal(sentence: str) -> str:
    """A sentence case-folded, spaces collapsed, end punctuation dropped: for comparing."""
    return " ".join(sentence.casefold().split()).rstrip(".!?")
