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

:func:`check` is what every family's checker runs: the rule above applied to *one* answer.
A response may hold the example's worked steps and pleasantries (the phrases of
:mod:`~genlab.data.tinyworld.style`) around it, and nothing else, so that no way of naming
several answers passes:

- **one answer sentence**: the sentences left after removing worked steps and pleasantries must be
  one (the answer said twice, or said and then contradicted, is rejected);
- **no hedge or list in it**: word mode rejects "positive or negative", "Pilby, Gunford", the
  reference repeated, or another of the family's options beside it; number mode rejects more than
  one number unless it is an equation ("47 + 38 = 85"); yes/no rejects "yes or no"; sequence and
  letter modes reject the reference with anything added;
- **not the question back**: a response that contains the prompt is rejected, as is an empty one
  or one over ``2 * budget + 20`` words (``budget`` = 8 + the answer's and the steps' words).

A rejected response is neither right nor wrong: it evades, and the judge scores it 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from genlab.data.tinyworld.style import ANY_PHRASE_RE, normal, split_sentences

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


_OPERATOR = re.compile(r"[-+*×/]|\b(?:x|plus|minus|times)\b")
_LINKING = frozenset(
    ("is", "are", "was", "were", "be", "means", "called", "named", "a", "an", "the", ":")
)
_YES_NO_WORDS = frozenset(("yes", "no", "true", "false"))


@dataclass(frozen=True)
class Checked:
    """A response checked: ``correct``, or ``rejected`` with why (an evasion scores 0)."""

    correct: bool
    rejected: str | None = None


def word_budget(reference: str, steps: Sequence[str]) -> int:
    """Words an answer needs: 8, plus the reference's and the worked steps' (the judge's
    conciseness budget; twice it plus 20 is over-long)."""
    return 8 + len(reference.split()) + sum(len(s.split()) for s in steps)


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+|[,:]", text.casefold())


def _filler(sentence: str, answer_words: frozenset[str]) -> bool:
    """Only a pleasantry, hedge or rude remark: a known phrase, no answer marker, and nothing
    answer-like (a digit, a word of the answer or of the options) once the phrases are gone."""
    lowered = sentence.casefold()
    if not ANY_PHRASE_RE.search(lowered) or _MARKER.search(sentence):
        return False
    rest = ANY_PHRASE_RE.sub(" ", lowered)
    if re.search(r"\d|\b\w-\w", rest):
        return False
    return not answer_words.intersection(w for w in _words(rest) if len(w) > 1)


def _evasion(
    got: str, reference: str, mode: str, case_sensitive: bool, options: Sequence[str]
) -> str | None:
    """Why the answer span ``got`` names more than one answer, or ``None``."""
    g, r = _norm(got, case_sensitive), _norm(reference, case_sensitive)
    if mode == "number":
        text = _DIGIT_GROUP_COMMA.sub("", got)
        if len(_INT.findall(text)) <= 1:
            return None
        head, eq, tail = text.rpartition("=")
        if eq and _OPERATOR.search(head.casefold()) and len(_INT.findall(tail)) == 1:
            return None
        return "names several numbers"
    if mode == "yesno":
        words = _words(got)
        if "or" in words or len(_YES_NO_WORDS.intersection(words[1:])) > 0:
            return "hedges between yes and no"
        return None
    if mode in ("sequence", "letters"):
        split = r"[\s,]+" if mode == "sequence" else r"[\s,\-]+"
        got_items = [t for t in re.split(split, g) if t]
        ref_items = [t for t in re.split(split, r) if t]
        n = len(ref_items)
        inside = any(got_items[i : i + n] == ref_items for i in range(len(got_items) - n + 1))
        return "adds to the answer" if inside and got_items != ref_items else None
    if g == r:
        return None
    if "or" in _words(g):
        return "hedges between answers"
    named = [re.escape(x) for x in {r, *(o.casefold() for o in options)}]
    mentions = re.findall(r"\b(?:" + "|".join(named) + r")\b", g)
    beside_comma = re.search(rf"\b{re.escape(r)}\s*,|,\s*{re.escape(r)}\b", g)
    if len(mentions) > 1 or beside_comma:
        return "names several answers"
    return None


def _word_match(got: str, reference: str, case_sensitive: bool) -> bool:
    g, r = _norm(got, case_sensitive), _norm(reference, case_sensitive)
    if g == r:
        return True
    if not g.endswith(" " + r):
        return False
    lead = _words(g[: -len(r) - 1])
    return bool(lead) and lead[-1] in _LINKING and "not" not in lead


def check(
    response: str,
    reference: str,
    mode: str,
    *,
    case_sensitive: bool = False,
    prompt: str = "",
    steps: Sequence[str] = (),
    options: Sequence[str] = (),
) -> Checked:
    """Whether ``response`` gives ``reference`` as its one answer, by the rules in this module's
    docstring; ``options`` are the family's possible answers (a sentiment's two labels)."""
    text = response.strip()
    if not text:
        return Checked(False, "empty")
    words = len(text.split())
    if words > 2 * word_budget(reference, steps) + 20:
        return Checked(False, "over-long")
    if prompt and normal(prompt) in normal(text):
        return Checked(False, "restates the question")
    answer_words = frozenset(_words(reference)) | {o.casefold() for o in options}
    if mode == "yesno":
        answer_words |= _YES_NO_WORDS
    known = {normal(s) for step in steps for s in split_sentences(step)}
    sentences = split_sentences(text)
    content = [s for s in sentences if normal(s) not in known and not _filler(s, answer_words)]
    if len(content) > 1:
        return Checked(False, "more than one sentence beside worked steps and pleasantries")
    got = extract_answer(content[0] if content else sentences[-1])
    reason = _evasion(got, reference, mode, case_sensitive, options)
    if reason is not None:
        return Checked(False, reason)
    if mode == "word":
        return Checked(_word_match(got, reference, case_sensitive))
    return Checked(matches(got, reference, mode, case_sensitive))
