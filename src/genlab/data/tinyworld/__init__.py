"""TinyWorld: a seeded, invented world whose text teaches tiny models and whose answers are checkable.

Real corpora cannot teach a 2M-parameter model to follow instructions in minutes, and cannot say
whether an answer is right. TinyWorld can: it grows a small world from a seed (people, towns,
countries, creatures, objects, a cipher language; names from a syllable grammar) and writes
everything the ChatGPT recipe and the lecture experiments need about it, deterministically.

Python API::

    from genlab.data.tinyworld import World, TaskSuite, judge, builtin_corpus

    world = World(seed=0, size=64)                 # size = number of people
    world.facts[0]                                 # Fact(subject, relation, object, rank, weight, freq_class)
    for doc in world.corpus(n_docs=10, seed=0): ...     # pretraining documents (or n_chars=...)
    text = builtin_corpus(1_000_000, seed=0)      # exactly that many characters, for pretraining

    FAMILIES, task_families()                     # 18 instruction task families by name
    make_examples(world, "addition", n=100, split="test", seed=0)   # list[Example]
    suite = TaskSuite(world, held_out=DEFAULT_HELD_OUT)
    suite.examples("train" | "validation" | "test" | "held_out", n_per_family=100)
    example.prompt, example.answer, example.steps, example.subquestions
    example.check("The answer is 42.")            # exact, by the rule in answers.extract_answer
    parse_prompt(prompt, world)                   # a bare prompt back into its Example

    judge(example_or_prompt, response, world=None)   # score in [0, 1]; rules in judge.py
    preference_pairs(suite, n, seed=0, noise=0.1)    # [{"prompt", "chosen", "rejected"}]
    demonstrations(suite, n, seed=0)                 # [{"messages": [user, assistant]}]
    tool_text(world, n_docs, seed=0)                 # prose where tools would help
    write_tinyworld(out_dir, TinyWorldConfig(...))   # all of it as files + a dataset card

One module per idea: ``world`` (entities, facts, Zipf frequencies) with its ``vocabulary``,
``relations`` and invented ``names``, ``corpus`` (pretraining text), ``worked`` (step-by-step
arithmetic and dates), ``answers`` (final-answer extraction), ``families/`` (the task families,
their interface in ``families/base``), ``tasks`` (splits and held-out families), ``judge``,
``preferences`` (pairs and demonstrations), ``tool_text`` and ``export``.
"""

from __future__ import annotations

from genlab.data.tinyworld.answers import extract_answer, matches
from genlab.data.tinyworld.corpus import DOC_KINDS
from genlab.data.tinyworld.export import TinyWorldConfig, write_tinyworld
from genlab.data.tinyworld.families import FAMILIES, task_families
from genlab.data.tinyworld.families.base import Example, Family, Solution
from genlab.data.tinyworld.judge import Verdict, describe_rules, judge, verdict
from genlab.data.tinyworld.preferences import STYLES, demonstrations, preference_pairs, respond
from genlab.data.tinyworld.relations import RELATIONS
from genlab.data.tinyworld.tasks import (
    DEFAULT_HELD_OUT,
    SPLITS,
    TaskSuite,
    make_examples,
    parse_prompt,
    split_of,
)
from genlab.data.tinyworld.tool_text import tool_text
from genlab.data.tinyworld.world import DEFAULT_SIZE, FREQ_CLASSES, Fact, World

__all__ = [
    "DEFAULT_HELD_OUT",
    "DEFAULT_SIZE",
    "DOC_KINDS",
    "FAMILIES",
    "FREQ_CLASSES",
    "RELATIONS",
    "SPLITS",
    "STYLES",
    "Example",
    "Fact",
    "Family",
    "Solution",
    "TaskSuite",
    "TinyWorldConfig",
    "Verdict",
    "World",
    "builtin_corpus",
    "demonstrations",
    "describe_rules",
    "extract_answer",
    "judge",
    "make_examples",
    "matches",
    "parse_prompt",
    "preference_pairs",
    "respond",
    "split_of",
    "task_families",
    "tool_text",
    "verdict",
    "write_tinyworld",
]


def builtin_corpus(n_chars: int, seed: int = 0, size: int = DEFAULT_SIZE) -> str:
    """Exactly ``n_chars`` characters of TinyWorld pretraining text (documents, blank-line
    separated, the last one cut), from ``World(seed, size)``: the default data of pretraining.

    A shorter call gives a prefix of a longer one with the same seed.
    """
    world = World(seed, size)
    return "\n\n".join(world.corpus(n_chars=n_chars, seed=seed))[:n_chars]
