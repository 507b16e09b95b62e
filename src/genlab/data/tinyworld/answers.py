"""Final-answer extraction and exact matching: the one rule every TinyWorld checker uses.

Chain-of-thought (Wei et al., 2022) and self-consistency (Wang et al., 2023) score a model by the
final answer at the end of its reasoning, so the rule that finds that answer must be fixed,
documented and shared. It is:

1. **Extract.** If the response contains a marker, ``answer is`` or ``answer:`` (any case, so
   "The answer is 42.", "Final answer: 42", "My answer is: yes"), the final answer is the text
   after the *last* marker, up to the end of its line or sentence (a ``.``, ``!`` or ``?``
   followed by a space or the end). Otherwise it is the last sentence of the last non-empty line.
2. **Clean.** Strip spaces, quotes, backticks and asterisks around it, and trailing ``.!?``.
3. **Compare**, by the family's match mode:

   - ``number``: the last integer in the answer (commas between digit groups removed, so
     "1,234" is 1234) equals the reference. "47 + 38 = 85" and "Tavo is 23 years old" both work.
   - ``word``: the answer, whitespace collapsed and case-folded, equals the reference or ends
     with it as whole words ("The capital of Kikuland is Gunford" and "a bulus" both count),
     unless the word before it is "not".
   - ``sequence``: commas read as spaces, whitespace collapsed, case-folded unless the family is
     case-sensitive (upper-casing is); then equal. "2, 5, 9" = "2 5 9"; no extra items allowed.
   - ``letters``: the answer split on spaces, commas and hyphens must be exactly the reference's
     letters ("k-e-l-o" = "k e l o"; the bare word "kelo" is not a spelling).
   - ``yesno``: the first word of the answer is yes/no ("true"/"false" are read as yes/no).
"""

from __future__ import annotations

import re

MATCH_MODES = ("number", "word", "sequence", "letters", "yesno")

_MARKER = re.compile(r"answer\s*(?:is\s*:?|:)\s*", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")
_STRIP = " \t\r\n\"'`*"
_INT = re.compile(r"(?<!\d)-?\d+")
_DIGIT_GROUP_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def extract_answer(response: str) -> str:
    """The final answer of ``response`` by the rule in this module's docstring."""
    text = response.strip()
    markers = list(_MARKER.finditer(text))
    if markers:
        rest = text[markers[-1].end() :].split("\n", 1)[0]
        end = _SENTENCE_END.search(rest)
        answer = rest[: end.start()] if end else rest
    else:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            return ""
        sentences = [s for s in _SENTENCE_SPLIT.split(lines[-1]) if s.strip(_STRIP + ".!?")]
        answer = sentences[-1] if sentences else lines[-1]
    return _clean(answer)


def _clean(text: str) -> str:
    text = text.strip(_STRIP)
    while text and text[-1] in ".!?":
        text = text[:-1].strip(_STRIP)
    return text


def _norm(text: str, case_sensitive: bool = False) -> str:
    text = " ".join(text.split())
    return text if case_sensitive else text.casefold()


def last_integer(text: str) -> int | None:
    found = _INT.findall(_DIGIT_GROUP_COMMA.sub("", text))
    return int(found[-1]) if found else None


def _yes_no(text: str) -> str | None:
    words = re.findall(r"[a-z]+", text.casefold())
    if not words:
        return None
    return {"yes": "yes", "true": "yes", "no": "no", "false": "no"}.get(words[0])


def matches(response: str, reference: str, mode: str, case_sensitive: bool = False) -> bool:
    """Whether ``response``'s final answer is ``reference`` under match ``mode``."""
    got = extract_answer(response)
    if mode == "number":
        value = last_integer(got)
        return value is not None and value == int(reference)
    if mode == "yesno":
        return _yes_no(got) == _yes_no(reference)
    if mode == "letters":
        letters = [t for t in re.split(r"[\s,\-]+", got) if t]
        return all(len(t) == 1 for t in letters) and _norm("".join(letters)) == _norm(
            "".join(re.split(r"[\s,\-]+", reference))
        )
    if mode == "sequence":
        return _norm(got.replace(",", " "), case_sensitive) == _norm(
            reference.replace(",", " "), case_sensitive
        )
    if mode == "word":
        g, r = _norm(got, case_sensitive), _norm(reference, case_sensitive)
        if g == r:
            return True
        if not g.endswith(" " + r):
            return False
        before = g[: -len(r) - 1].split()
        return not before or before[-1] != "not"
    raise ValueError(f"unknown match mode {mode!r}; expected one of {MATCH_MODES}")
