"""Responses of many qualities, preference pairs ranked by the judge, and SFT demonstrations.

The ChatGPT recipe needs three data sets drawn from one task distribution: demonstrations for
supervised fine-tuning, comparisons for the reward model, and prompts for RL (Ouyang et al.,
2022). Demonstrations here are correct but *deliberately of mixed style* (some terse, some
padded), so that SFT imitates a mix and RLHF or DPO have something to improve. Preference pairs
contrast candidate responses that differ in the qualities the judge scores (correct or wrong,
concise or padded, polite or rude, hedging, rambling, cut off), ranked by the judge, with
configurable label noise: raters disagree (InstructGPT reports about 73% agreement between
labellers), and a reward model must learn through that.
"""

from __future__ import annotations

import math
import random

from genlab.core.errors import GenlabError
from genlab.data.tinyworld.families.base import Example
from genlab.data.tinyworld.judge import FUNCTION_WORDS, verdict
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
    "rambling",
    "truncated",
)
DEMO_STYLES = {"terse": 0.3, "sentence": 0.25, "steps": 0.15, "padded": 0.3}

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


def respond(example: Example, answer: str, style: str, rng: random.Random) -> str:
    """A response that gives ``answer`` to ``example`` in one of :data:`STYLES`."""
    core = f"The answer is {answer}."
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
    if style == "hedging":
        return f"{rng.choice(_HEDGE_OPENERS)} the answer is {answer}."
    if style == "rambling":
        return f"{core} Let me say it again. {core} So, once more: {core}"
    if style == "truncated":
        words = f"{rng.choice(_OPENERS)} {' '.join(example.steps)} {core} {rng.choice(_CLOSERS)}".split()
        cuts = [i for i, w in enumerate(words[:-1]) if w.casefold() in FUNCTION_WORDS]
        return " ".join(words[: rng.choice(cuts) + 1])
    raise ValueError(f"unknown response style {style!r}; expected one of {STYLES}")


def candidates(example: Example, wrong_answer: str, rng: random.Random) -> list[str]:
    """Every style with the right answer and with ``wrong_answer``, distinct texts only."""
    texts = [
        respond(example, a, style, rng) for a in (example.answer, wrong_answer) for style in STYLES
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
    source: TaskSuite | World, n: int, seed: int = 0, split: str = "train"
) -> list[dict[str, list[dict[str, str]]]]:
    """``n`` correct chat demonstrations ``{"messages": [user, assistant]}`` of mixed style.

    Styles by :data:`DEMO_STYLES`: 30% terse (the bare answer), 25% one sentence, 15% worked steps
    (a sentence where a task has none), 30% padded with pleasantries.
    """
    suite = _suite(source)
    rng = random.Random(f"tinyworld/demonstrations/{suite.world.seed}/{seed}")
    styles, weights = list(DEMO_STYLES), list(DEMO_STYLES.values())
    records = []
    for example in _prompts(suite, n, split, seed, "demonstrations"):
        style = rng.choices(styles, weights)[0]
        if style == "steps" and not example.steps:
            style = "sentence"
        reply = respond(example, example.answer, style, rng)
        records.append(
            {
                "messages": [
                    {"role": "user", "content": example.prompt},
                    {"role": "assistant", "content": reply},
                ]
            }
        )
    return records
