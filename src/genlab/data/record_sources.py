"""Where a stage's records come from: a user's JSONL file, or TinyWorld.

Each stage of the ChatGPT recipe takes records (``genlab.align`` knows nothing else). These
settings say which: ``data`` is a JSONL path (a held-out ``val_fraction`` of it is split off the
end) or ``"tinyworld"`` (the built-in world's train split for training, its validation and test
splits held out, the counts below). ``load`` returns the records and the files a run trained on
them keeps (``tinyworld.json``: which world and families, so later stages pick the same).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genlab.core.errors import GenlabError
from genlab.data.records import (
    Messages,
    Prompt,
    read_comparisons,
    read_conversations,
    read_prompts,
    split_records,
)
from genlab.data.tinyworld import records as tw
from genlab.data.tinyworld.judge import verdict

Files = dict[str, bytes]
GoldFn = Callable[[Sequence[Prompt], Sequence[str]], list[float]]


@dataclass
class WorldChoice:
    """Which TinyWorld: by default the world and families ``run`` was tuned on."""

    families: str | None = None  # TinyWorld families "a,b" or "all" (default: the base run's)
    world_seed: int | None = None  # default: the world the base run was trained on

    def resolve(self, run: str | os.PathLike) -> tuple[int, tuple[str, ...]]:
        seed = self.world_seed if self.world_seed is not None else tw.world_seed_of(run)
        families = self.families if self.families is not None else tw.families_of(run)
        return seed, tw.parse_families(families)


def _world_files(seed: int, families: tuple[str, ...]) -> Files:
    return {tw.WORLD_FILE: tw.world_record(seed, families)}


def _inherited_files(run: str | os.PathLike) -> Files:
    """A user's data keeps the base run's world record, if any (for evaluation)."""
    record = Path(run) / tw.WORLD_FILE
    return {tw.WORLD_FILE: record.read_bytes()} if record.is_file() else {}


@dataclass
class ConversationData(WorldChoice):
    """SFT's demonstrations: ``data`` is "tinyworld" or a ``{"messages"}`` JSONL."""

    data: str = tw.TINYWORLD  # "tinyworld" or a JSONL file of records
    n_train: int = 12000  # TinyWorld demonstrations
    n_eval: int = 300  # TinyWorld validation demonstrations (validation loss)
    val_fraction: float = 0.05  # of a user's JSONL, held out for the validation loss
    style: str = "mixed"  # TinyWorld replies: mixed as people write, or all sentence|terse|...

    def load(self, base: str, seed: int) -> tuple[list[Messages], list[Messages], Files]:
        """(train, held-out) conversations and the run's extra files."""
        if self.data != tw.TINYWORLD:
            if self.style != "mixed":
                raise GenlabError(
                    f"--style {self.style} styles TinyWorld's demonstrations; {self.data} has its "
                    "own replies: drop --style"
                )
            train, held = split_records(read_conversations(self.data), self.val_fraction)
            return train, held, {}
        world_seed, families = self.resolve(base)
        suite = tw.task_suite(world_seed, families)
        train = tw.conversations(suite, self.n_train, seed, "train", self.style)
        held = tw.conversations(suite, self.n_eval, seed, "validation", self.style)
        return train, held, _world_files(world_seed, families)


@dataclass
class ComparisonData(WorldChoice):
    """Comparisons for the reward model and DPO: "tinyworld" or a comparisons JSONL."""

    data: str = tw.TINYWORLD  # "tinyworld" or a JSONL file of records
    n_pairs: int = 4000  # TinyWorld comparisons to train on
    n_eval_pairs: int = 400  # held-out comparisons per split (validation, test), judge-ordered
    label_noise: float = 0.1  # fraction of flipped training labels (raters disagree)
    val_fraction: float = 0.1  # of a user's JSONL, held out
    ranked_per_family: int = 0  # TinyWorld prompts per family: the model's answers, ranked
    samples_per_prompt: int = 4  # answers the starting model samples per ranked prompt

    def load(self, base: str, seed: int) -> tuple[list[Any], list[Any], list[Any], Files]:
        """(train, validation, test) comparisons and the run's extra files.

        TinyWorld's held-out comparisons are ordered by the judge itself (no label noise):
        accuracy on them says how well a model recovers the true preference, not the raters'
        noise. A user's file has one held-out part, used for both.
        """
        if self.data != tw.TINYWORLD:
            train, held = split_records(read_comparisons(self.data), self.val_fraction)
            return train, held, held, {}
        world_seed, families = self.resolve(base)
        suite = tw.task_suite(world_seed, families)
        n = self.n_eval_pairs
        train = tw.comparisons(suite, self.n_pairs, seed, "train", self.label_noise)
        val = tw.comparisons(suite, n, seed, "validation")
        test = tw.comparisons(suite, n, seed, "test")
        return train, val, test, _world_files(world_seed, families)

    def ranking(self, base: str, seed: int, split: str = "train") -> tuple[list[Prompt], GoldFn]:
        """Prompts whose sampled answers are ranked into comparisons, and the labeller that
        ranks them: TinyWorld prompts of ``split`` (``ranked_per_family`` per family for
        training, a tenth of that held out) and its judge (the people of InstructGPT's step 2).
        Built in for TinyWorld only: a user's file carries its own comparisons."""
        if self.data != tw.TINYWORLD:
            raise GenlabError(
                "ranked_per_family needs TinyWorld's judge to rank the sampled answers; with "
                f"your own comparisons ({self.data}) set it to 0"
            )
        world_seed, families = self.resolve(base)
        suite = tw.task_suite(world_seed, families)
        n = self.ranked_per_family if split == "train" else max(2, self.ranked_per_family // 10)
        examples = {e.prompt: e for e in suite.examples(split, n, seed)}
        return list(examples), _judge(examples)


def _judge(examples: dict[str, Any]) -> GoldFn:
    """TinyWorld's judge as a scorer of answers to ``examples``' prompts."""

    def judge(prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        return [verdict(examples[p], r).score for p, r in zip(prompts, responses, strict=True)]

    return judge


@dataclass
class PromptData(WorldChoice):
    """PPO's prompt pool: "tinyworld" (the train split) or a JSONL of prompts; and the held-out
    prompts its over-optimisation monitor answers."""

    prompts: str = tw.TINYWORLD  # "tinyworld" or a JSONL file of prompts
    prompts_per_family: int = 200  # TinyWorld prompts drawn per task family
    heldout_prompts: str | None = None  # JSONL of held-out prompts (default TinyWorld's; no gold)
    heldout_per_family: int = 16  # TinyWorld validation prompts per family for the monitor

    def load(self, base: str, seed: int) -> tuple[list[Prompt], Files]:
        """The prompts and the run's extra files."""
        if self.prompts != tw.TINYWORLD:
            return read_prompts(self.prompts), _inherited_files(base)
        world_seed, families = self.resolve(base)
        suite = tw.task_suite(world_seed, families)
        return tw.prompts(suite, self.prompts_per_family, seed), _world_files(world_seed, families)

    def heldout(self, base: str, seed: int) -> tuple[list[Prompt], GoldFn | None]:
        """The held-out prompts and their gold score: ``heldout_prompts`` (no gold), else for
        TinyWorld its validation prompts, scored by the judge (Gao et al.'s gold reward)."""
        if self.heldout_prompts is not None:
            return read_prompts(self.heldout_prompts), None
        if self.prompts != tw.TINYWORLD:
            return [], None
        world_seed, families = self.resolve(base)
        suite = tw.task_suite(world_seed, families)
        examples = {
            e.prompt: e for e in suite.examples("validation", self.heldout_per_family, seed)
        }
        return list(examples), _judge(examples)
