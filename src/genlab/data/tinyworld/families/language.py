"""Language families: translation to and from the world's cipher language, review sentiment.

The cipher is a word-for-word code of a tiny English grammar, so translation is exactly
checkable; reviews are built from templated positive and negative sentences (plus neutral
openers), so their label is known and a prompt can be parsed back.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping

from genlab.data.tinyworld.families.base import Example, Family, Solution
from genlab.data.tinyworld.families.common import other_than
from genlab.data.tinyworld.vocabulary import ADJECTIVES, DETERMINERS, NOUNS, VERBS, english_phrase
from genlab.data.tinyworld.world import World


class CipherTo(Family):
    name = "cipher_to"
    description = "Translate a short English phrase into the world's cipher language, word by word."
    phrasings = {
        "": (
            "Translate '{text}' into {lang}.",
            "How do you say '{text}' in {lang}?",
            "Write '{text}' in {lang}.",
        )
    }
    match = "sequence"
    key_group = "cipher"  # an English phrase is in one split for both directions

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        return "", {"text": english_phrase(rng)}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        words = fields["text"].split()
        cipher = [world.lexicon[w] for w in words]
        pairs = dict(zip(words, cipher, strict=True))  # each word explained once
        steps = tuple(f"{e} is {c}." for e, c in pairs.items())
        subquestions = tuple(
            (f"What is the {world.language} word for {e}?", c) for e, c in pairs.items()
        )
        whole = (f"So what is '{fields['text']}' in {world.language}?", " ".join(cipher))
        return Solution(" ".join(cipher), steps, (*subquestions, whole), {"words": len(words)})

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        words = example.answer.split()
        i = rng.randrange(len(words))
        return " ".join(
            words[:i] + [other_than(world.entities("cipher"), words[i], rng)] + words[i + 1 :]
        )


class CipherFrom(Family):
    name = "cipher_from"
    description = "Translate a phrase of the world's cipher language into English, word by word."
    phrasings = {
        "": (
            "Translate '{text}' from {lang} into English.",
            "What does the {lang} phrase '{text}' mean in English?",
            "Write the {lang} words '{text}' in English.",
        )
    }
    match = "sequence"
    key_group = "cipher"

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        return "", {"text": world.translate(english_phrase(rng))}

    def key_content(self, world: World | None, fields: Mapping[str, str]) -> Mapping[str, str]:
        """Keyed by the English phrase, as :class:`CipherTo` is (needs the world to read it)."""
        if world is None:
            raise ValueError("the cipher's split key needs the world that speaks it")
        return {"text": " ".join(world.english[w] for w in fields["text"].split())}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        words = fields["text"].split()
        english = [world.english[w] for w in words]
        pairs = dict(zip(words, english, strict=True))  # each word explained once
        steps = tuple(f"{c} means {e}." for c, e in pairs.items())
        subquestions = tuple(
            (f"What does the {world.language} word {c} mean?", e) for c, e in pairs.items()
        )
        whole = (f"So what is '{fields['text']}' in English?", " ".join(english))
        return Solution(" ".join(english), steps, (*subquestions, whole), {"words": len(words)})

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        words = example.answer.split()
        i = rng.randrange(len(words))
        same_kind = next(
            kind for kind in (DETERMINERS, ADJECTIVES, NOUNS, VERBS) if words[i] in kind
        )
        return " ".join(words[:i] + [other_than(same_kind, words[i], rng)] + words[i + 1 :])


_GOOD = ("good", "great", "lovely", "nice", "wonderful")
_BAD = ("bad", "awful", "dull", "terrible", "broken")
_OPENERS = (
    "I bought {a_thing} in {town}.",
    "My friend gave me {a_thing}.",
    "I tried the {thing} from {town}.",
)
_POSITIVE = (
    "It was {good}.",
    "I loved it.",
    "I would buy it again.",
    "The {thing} was really {good}.",
)
_NEGATIVE = (
    "It was {bad}.",
    "I hated it.",
    "I will never buy it again.",
    "The {thing} was not {good}.",
)


def _sentence_regex(template: str) -> re.Pattern[str]:
    pattern = re.escape(template)
    for name, alternatives in (("good", _GOOD), ("bad", _BAD)):
        pattern = pattern.replace(re.escape("{" + name + "}"), "(?:" + "|".join(alternatives) + ")")
    pattern = pattern.replace(re.escape("{thing}"), "[a-z]+").replace(
        re.escape("{a_thing}"), "an? [a-z]+"
    )
    return re.compile(pattern.replace(re.escape("{town}"), "[A-Z][a-z]+"))


_POLARITY = [(_sentence_regex(t), "positive") for t in _POSITIVE] + [
    (_sentence_regex(t), "negative") for t in _NEGATIVE
]
_NEUTRAL = [_sentence_regex(t) for t in _OPENERS]


class Sentiment(Family):
    name = "sentiment"
    description = "Say whether a short templated review is positive or negative."
    phrasings = {
        "": (
            'Is this review positive or negative? "{review}"',
            'Review: "{review}" Is it positive or negative?',
            'Tell me if this review is positive or negative: "{review}"',
        )
    }
    key_fields = ("review",)
    options = ("positive", "negative")

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        thing, town = rng.choice(world.objects), rng.choice(world.towns)
        values = {
            "thing": thing,
            "a_thing": ("an " if thing[0] in "aeiou" else "a ") + thing,
            "town": town,
        }
        judged = rng.sample(_POSITIVE if rng.random() < 0.5 else _NEGATIVE, rng.randint(1, 2))
        sentences = [rng.choice(_OPENERS), *judged]
        values = {**values, "good": rng.choice(_GOOD), "bad": rng.choice(_BAD)}
        return "", {"review": " ".join(s.format(**values) for s in sentences)}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        sentences = re.split(r"(?<=\.) ", fields["review"])
        found = []
        for sentence in sentences:
            polarity = next((p for regex, p in _POLARITY if regex.fullmatch(sentence)), None)
            if polarity is None and not any(r.fullmatch(sentence) for r in _NEUTRAL):
                raise ValueError(f"not a templated review sentence: {sentence!r}")
            if polarity is not None:
                found.append((sentence, polarity))
        labels = {p for _, p in found}
        if len(labels) != 1:
            raise ValueError("a review must be all positive or all negative")
        label = labels.pop()
        steps = tuple(f'"{s}" is {p}.' for s, p in found) + (f"So the review is {label}.",)
        subquestions = tuple((f'Is "{s}" positive or negative?', p) for s, p in found)
        return Solution(
            label, steps, subquestions + (("So is the review positive or negative?", label),)
        )

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        return "negative" if example.answer == "positive" else "positive"
