"""Symbol-manipulation families: reverse a word, spell it, upper-case a phrase, count a letter.

Subword tokens hide a word's letters from the model, so these skills are hard for it in a way
that has nothing to do with knowledge; most words are invented, so an answer must be worked out,
not recalled.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from genlab.data.tinyworld.families.base import Example, Family, Solution
from genlab.data.tinyworld.names import invented_word
from genlab.data.tinyworld.vocabulary import ENGLISH_WORDS, english_phrase
from genlab.data.tinyworld.world import World


def _some_word(world: World, rng: random.Random) -> str:
    """A lowercase word: an invented one (most often), an English word or a world name."""
    roll = rng.random()
    if roll < 0.6:
        return invented_word(rng, rng.randint(2, 3))
    if roll < 0.8:
        return rng.choice(ENGLISH_WORDS)
    return rng.choice(world.persons + world.creatures + world.objects).lower()


def _swap_adjacent(word: str, rng: random.Random) -> str | None:
    """``word`` with two adjacent different letters swapped; ``None`` if all letters are equal."""
    spots = [i for i in range(len(word) - 1) if word[i] != word[i + 1]]
    if not spots:
        return None
    i = rng.choice(spots)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


class ReverseWord(Family):
    name = "reverse_word"
    description = "Write a word backwards."
    phrasings = {
        "": (
            "Reverse the word '{word}'.",
            "Write '{word}' backwards.",
            "What is '{word}' spelled backwards?",
            "Write the letters of '{word}' in reverse order as one word.",
        )
    }

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        while True:
            word = _some_word(world, rng)
            if word != word[::-1]:
                return "", {"word": word}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        word = fields["word"]
        if word == word[::-1]:
            raise ValueError("palindromes make poor reversal questions")
        rev, letters, back = word[::-1], ", ".join(word), ", ".join(word[::-1])
        steps = (
            f"The letters of {word} are {letters}.",
            f"In reverse order they are {back}.",
            f"Joined together: {rev}.",
        )
        subquestions = (
            (f"What are the letters of '{word}'?", letters),
            (f"What are the letters {letters} in reverse order?", back),
            (f"What word do the letters {back} make?", rev),
        )
        return Solution(rev, steps, subquestions, {"length": len(word)})

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        word = example.answer[::-1]
        swapped = _swap_adjacent(example.answer, rng)
        return word if swapped is None or rng.random() < 0.5 else swapped


class SpellWord(Family):
    name = "spell_word"
    description = "Spell a word letter by letter, letters separated by dashes."
    phrasings = {
        "": (
            "Spell the word '{word}'.",
            "Spell '{word}' letter by letter.",
            "How do you spell '{word}'? Separate the letters with dashes.",
        )
    }
    match = "letters"

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        return "", {"word": _some_word(world, rng)}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        word = fields["word"]
        steps = (
            f"The word {word} has {len(word)} letters.",
            f"In order they are {', '.join(word)}.",
        )
        subquestions = tuple(
            (f"What is letter {i + 1} of '{word}'?", ch) for i, ch in enumerate(word)
        )
        return Solution(
            "-".join(word),
            steps,
            subquestions + ((f"How is '{word}' spelled?", "-".join(word)),),
            {"length": len(word)},
        )

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        letters = example.answer.split("-")
        swapped = _swap_adjacent("".join(letters), rng)
        if swapped is None or rng.random() < 0.5:
            i = rng.randrange(len(letters))
            return "-".join(letters[:i] + letters[i + 1 :]) if len(letters) > 1 else letters[0] * 2
        return "-".join(swapped)


class Uppercase(Family):
    name = "uppercase"
    description = "Rewrite a short phrase in capital letters (checked case-sensitively)."
    phrasings = {
        "": (
            "Write '{text}' in capital letters.",
            "Convert '{text}' to upper case.",
            "Rewrite '{text}' using only uppercase letters.",
        )
    }
    match = "sequence"
    case_sensitive = True

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        text = english_phrase(rng)
        if rng.random() < 0.3:
            text = f"{text} and {rng.choice(world.persons)}"
        return "", {"text": text}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        text = fields["text"]
        if not any(ch.islower() for ch in text):
            raise ValueError("nothing to upper-case")
        words = text.split()
        distinct = list(dict.fromkeys(words))  # each word explained once
        steps = tuple(f"{w} becomes {w.upper()}." for w in distinct)
        subquestions = tuple((f"What is '{w}' in capital letters?", w.upper()) for w in distinct)
        return Solution(
            text.upper(),
            steps,
            subquestions + ((f"What is '{text}' in capital letters?", text.upper()),),
            {"words": len(words)},
        )

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        answer = example.answer
        spots = [i for i, ch in enumerate(answer) if ch.isalpha()]
        i = rng.choice(spots)
        return answer[:i] + answer[i].lower() + answer[i + 1 :]


class CountLetters(Family):
    name = "count_letters"
    description = "Count how often a letter occurs in a word (sometimes zero)."
    phrasings = {
        "": (
            "How many times does the letter '{letter}' appear in '{word}'?",
            "Count the letter '{letter}' in the word '{word}'.",
            "In the word '{word}', how many '{letter}'s are there?",
        )
    }
    match = "number"

    def sample(self, world: World, rng: random.Random) -> tuple[str, dict[str, str]]:
        word = invented_word(rng, rng.randint(2, 4))
        if rng.random() < 0.8:
            letter = rng.choice(word)
        else:
            letter = rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c not in word])
        return "", {"word": word, "letter": letter}

    def solve(self, world: World | None, variant: str, fields: Mapping[str, str]) -> Solution:
        word, letter = fields["word"], fields["letter"]
        positions = [i + 1 for i, ch in enumerate(word) if ch == letter]
        where = (
            f"The letter {letter} is at position{'s' if len(positions) > 1 else ''} {', '.join(map(str, positions))}."
            if positions
            else f"The letter {letter} is not among them."
        )
        steps = (
            f"The letters of {word} are {', '.join(word)}.",
            where,
            f"So {letter} appears {len(positions)} times.",
        )
        subquestions = (
            (f"What are the letters of '{word}'?", ", ".join(word)),
            (
                f"At which positions is the letter '{letter}'?",
                ", ".join(map(str, positions)) or "none",
            ),
            ("How many positions is that?", str(len(positions))),
        )
        return Solution(str(len(positions)), steps, subquestions, {"length": len(word)})

    def corrupt(self, example: Example, world: World, rng: random.Random) -> str:
        n = int(example.answer)
        return str(n + 1 if n == 0 or rng.random() < 0.5 else n - 1)
