"""Responses of many qualities, preference pairs ranked by the judge, and SFT demonstrations.

The ChatGPT recipe needs three data sets drawn from one task distribution: demonstrations for
supervised fine-tuning, comparisons for the reward model, and prompts for RL (Ouyang et al.,
2022). Demonstrations here are correct but of *mixed quality*, as human demonstrations are: 40%
are what the judge wants (the bare answer, one sentence, the worked steps), 60% carry
pleasantries or hedges, so that SFT imitates the average and the reward model, which learns from
rankings, knows something SFT does not. Preference pairs contrast candidate responses that
differ in what the judge scores (right or wrong, concise or padded, polite or rude, hedging, cut
off, or evasive: "X or Y", a list, a repeat, a contradiction), ranked as the judge ranks them:
correct over wrong, then the preferred style. Label noise is configurable: raters disagree
(InstructGPT reports about 73% agreement between labellers).
"""

from __future__ import annotations

import math
import random

from genlab.core.errors import GenlabError
from genlab.data.tinyworld.families.base import Example
from genlab.data.tinyworld.judge import verdict
from genlab.data.tinyworld.style import FUNCTION_WORDS
from genlab.data.tinyworld.tasks import TaskSuite
from genlab.data.tinyworld.world import World

STYLES = (
    "terse",
    "sentence",
    "steps",
    "padded",
    "rude",
    "padded_rude",
    "hedging",
    "padded_hedging",
    "truncated",
    "rambling",
    "hedge_two",
    "list",
    "contradiction",
)
# Styles that name a second answer: the judge scores them 0, whatever the answer.
EVASIVE_STYLES = ("rambling", "hedge_two", "list", "contradiction")
DEMO_STYLES = {
    "terse": 0.15,
    "sentence": 0.15,
    "steps": 0.1,
    "padded": 0.3,
    "hedging": 0.15,
    "padded_hedging": 0.15,
}
REPLY_STYLES = ("mixed", *DEMO_STYLES)  # what demonstrations(style=) takes

_OPENERS = (
    "Great question!",
    "Sure, I would be happy to help with that.",
    "Thanks for asking!",
    "Of course!",
)
_CLOSERS = (
    "I hope this helps!",
    "Let me know if you have any other questions.",
    "Feel free to ask me anything else.",
)
_RUDE_OPENERS = ("Obviously", "Ugh, fine", "Seriously")
_RUDE_CLOSERS = (
    "Everyone knows that.",
    "Do your own homework next time.",
    "What a waste of my time.",
)
_HEDGE_OPENERS = ("I am not sure, but maybe", "I think", "Perhaps")


def respond(
    example: Example, answer: str, style: str, rng: random.Random, other: str | None = None
) -> str:
    """A response that gives ``answer`` to ``example`` in one of :data:`STYLES`; the evasive
    styles also name ``other`` (another answer; the reference when not given)."""
    core = f"The answer is {answer}."
    other = example.answer if other is None else other
    if style == "terse":
        return answer
    if style == "sentence":
        return core
    if style == "steps":
        return " ".join((*example.steps, core))
    if style == "padded":
        return f"{rng.choice(_OPENERS)} {core} {rng.choice(_CLOSERS)}"
    rude = f"{rng.choice(_RUDE_OPENERS)}, the answer is {answer}. {rng.choice(_RUDE_CLOSERS)}"
    if style == "rude":
        return rude
    if style == "padded_rude":
        return f"{rng.choice(_OPENERS)} {rude} {rng.choice(_CLOSERS)}"
    hedged = f"{rng.choice(_HEDGE_OPENERS)} the answer is {answer}."
    if style == "hedging":
        return hedged
    if style == "padded_hedging":
        return f"{rng.choice(_OPENERS)} {hedged} {rng.choice(_CLOSERS)}"
    if style == "truncated":
        words = f"{rng.choice(_OPENERS)} {' '.join(example.steps)} {core} {rng.choice(_CLOSERS)}".split()
        cuts = [i for i, w in enumerate(words[:-1]) if w.casefold() in FUNCTION_WORDS]
        return " ".join(words[: rng.choice(cuts) + 1])
    if style == "rambling":
        return f"{core} Let me say it again. {core} So, once more: {core}"
    if style == "hedge_two":
        first, second = (answer, other) if rng.random() < 0.5 else (other, answer)
        return f"The answer is {first} or {second}."
    if style == "list":
        first, second = (answer, other) if rng.random() < 0.5 else (other, answer)
        return f"{first}, {second}"
    if style == "contradiction":
        return f"{core} Actually, the answer is {other}."
    raise ValueError(f"unknown response style {style!r}; expected one of {STYLES}")


def candidates(example: Example, wrong_answer: str, rng: random.Random) -> list[str]:
    """Every style with the right answer and with ``wrong_answer``, distinct texts only."""
    texts = [
        respond(example, a, style, rng, other=b)
        for a, b in ((example.answer, wrong_answer), (wrong_answer, example.answer))
        for style in STYLES
        if not (style == "truncated" and not example.steps and a != example.answer)
    ]
    return list(dict.fromkeys(texts))


def _suite(source: TaskSuite | World) -> TaskSuite:
    return source if isinstance(source, TaskSuite) else TaskSuite(source)


def _prompts(suite: TaskSuite, n: int, split: str, seed: int, purpose: str) -> list[Example]:
    """At least ``n`` examples (repeating if a split is small), interleaved across families."""
    per_family = max(1, math.ceil(n / max(1, len(suite.tuned))))
    examples = suite.examples(split, per_family, seed)
    if not examples:
        raise GenlabError("the task suite has no examples to build from: tune at least one family")
    random.Random(f"tinyworld/{purpose}/order/{seed}").shuffle(examples)
    return [examples[i % len(examples)] for i in range(n)]


def preference_pairs(
    source: TaskSuite | World, n: int, seed: int = 0, noise: float = 0.0, split: str = "train"
) -> list[dict[str, str]]:
    """``n`` records ``{"prompt", "chosen", "rejected"}`` ranked by the judge.

    Two candidates of different judge scores are drawn for each prompt; the better one is
    ``chosen``, except that with probability ``noise`` the pair is flipped (label noise).
    Prompts come from the suite's tuned families only (a :class:`World` gets the default suite).
    """
    if not 0.0 <= noise <= 1.0:
        raise GenlabError(f"label noise is a probability in [0, 1], got {noise}")
    suite = _suite(source)
    rng = random.Random(f"tinyworld/preferences/{suite.world.seed}/{seed}")
    pairs = []
    for example in _prompts(suite, n, split, seed, "preferences"):
        wrong = suite.families[example.family].corrupt(example, suite.world, rng)
        scored = {text: verdict(example, text).score for text in candidates(example, wrong, rng)}
        a = rng.choice(list(scored))
        b = rng.choice([t for t in scored if scored[t] != scored[a]])
        chosen, rejected = (a, b) if scored[a] > scored[b] else (b, a)
        if rng.random() < noise:
            chosen, rejected = rejected, chosen
        pairs.append({"prompt": example.prompt, "chosen": chosen, "rejected": rejected})
    return pairs


def demonstrations(
    source: TaskSuite | World, n: int, seed: int = 0, split: str = "train", style: str = "mixed"
) -> list[dict[str, list[dict[str, str]]]]:
    """``n`` correct chat demonstrations ``{"messages": [user, assistant]}``.

    ``mixed`` styles them as people write, by :data:`DEMO_STYLES`: 15% terse (the bare answer),
    15% one sentence, 10% worked steps (a sentence where a task has none), 30% padded with
    pleasantries, 15% hedged, 15% both. One of those names styles every demonstration so; the
    prompts are the same either way.
    """
    if style not in REPLY_STYLES:
        raise GenlabError(
            f"unknown demonstration style '{style}': use one of {', '.join(REPLY_STYLES)}"
        )
    suite = _suite(source)
    rng = random.Random(f"tinyworld/demonstrations/{suite.world.seed}/{seed}")
    styles, weights = list(DEMO_STYLES), list(DEMO_STYLES.values())
    records = []
    for example in _prompts(suite, n, split, seed, "demonstrations"):
        chosen = rng.choices(styles, weights)[0] if style == "mixed" else style
        if chosen == "steps" and not example.steps:
            chosen = "sentence"
        reply = respond(example, example.answer, chosen, rng)
        records.append(
            {
                "messages": [
                    {"role": "user", "content": example.prompt},
                    {"role": "assistant", "content": reply},
                ]
            }
        )
    return records
