"""TinyWorld as alignment records: demonstrations, judge-ranked comparisons and prompts.

The records come from the train split of the chosen task families, and the held-out ones from
the validation and test splits, so evaluation on the test split never sees a training question.
A run trained on TinyWorld records which world and families in ``tinyworld.json``, so the later
stages and the evaluation pick the same ones by default.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from genlab.core.checkpoint import CONFIG_FILE
from genlab.core.errors import GenlabError
from genlab.core.io import read_json
from genlab.data.records import Messages, Prompt
from genlab.data.tinyworld.families import FAMILIES
from genlab.data.tinyworld.preferences import demonstrations, preference_pairs
from genlab.data.tinyworld.tasks import TaskSuite
from genlab.data.tinyworld.world import World

TINYWORLD = "tinyworld"  # the name that selects the built-in data wherever a path is asked for
# The task families a 1-5M parameter model learns in minutes on a CPU (measured in
# docs/chatgpt.md); the others stay available with --families all.
DEFAULT_FAMILIES = ("sentiment", "cipher_from", "cipher_to", "uppercase", "max_list")
WORLD_FILE = "tinyworld.json"  # written into every run trained on TinyWorld: which world


def parse_families(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """Family names from ``"a,b,c"``, ``"all"`` or a sequence; checked against TinyWorld's."""
    if spec is None:
        return DEFAULT_FAMILIES
    names = list(FAMILIES) if spec == "all" else spec.split(",") if isinstance(spec, str) else spec
    names = [n.strip() for n in names if n.strip()]
    for name in names:
        if name not in FAMILIES:
            raise GenlabError(
                f"unknown task family '{name}'; choose from: all, {', '.join(FAMILIES)}"
            )
    if not names:
        raise GenlabError("no task families given: name at least one (or 'all')")
    return tuple(dict.fromkeys(names))


def world_seed_of(run: str | os.PathLike) -> int:
    """The TinyWorld seed a run was trained on: its ``tinyworld.json``, else (a pretraining run
    on the built-in corpus) its training seed, which is the world's seed there."""
    run = Path(run)
    if (run / WORLD_FILE).is_file():
        return int(read_json(run / WORLD_FILE, "TinyWorld record")["world_seed"])
    if (run / CONFIG_FILE).is_file():
        seed = read_json(run / CONFIG_FILE, "run config").get("train", {}).get("seed")
        if isinstance(seed, int):
            return seed
    return 0


def families_of(run: str | os.PathLike) -> tuple[str, ...] | None:
    """The families a run was tuned on (its ``tinyworld.json``), if it records them."""
    record = Path(run) / WORLD_FILE
    if not record.is_file():
        return None
    return tuple(read_json(record, "TinyWorld record").get("families") or ()) or None


def world_record(world_seed: int, families: Sequence[str]) -> bytes:
    """The ``tinyworld.json`` of a run: the world and the families it was tuned on."""
    return json.dumps({"world_seed": world_seed, "families": list(families)}, indent=2).encode()


def task_suite(world_seed: int, families: Sequence[str]) -> TaskSuite:
    """The suite of ``families`` in ``World(world_seed)``, none held out (they are all tuned)."""
    return TaskSuite(World(world_seed), held_out=(), families=families)


def conversations(
    suite: TaskSuite, n: int, seed: int, split: str, style: str = "mixed"
) -> list[Messages]:
    """``n`` correct demonstrations of ``split`` as chat messages (SFT records), in ``style``."""
    return [d["messages"] for d in demonstrations(suite, n, seed=seed, split=split, style=style)]


def comparisons(
    suite: TaskSuite, n: int, seed: int, split: str, noise: float = 0.0
) -> list[dict[str, str]]:
    """``n`` judge-ranked ``{"prompt", "chosen", "rejected"}`` records, a ``noise`` fraction
    flipped (raters disagree)."""
    return preference_pairs(suite, n, seed=seed, noise=noise, split=split)


def prompts(suite: TaskSuite, n_per_family: int, seed: int) -> list[Prompt]:
    """User prompts of the train split, ``n_per_family`` of each family (PPO's pool)."""
    return [e.prompt for e in suite.examples("train", n_per_family, seed)]
