"""Sampling helpers that several task families share."""

from __future__ import annotations

import random


def other_than(values: tuple[str, ...] | list[str], not_this: str, rng: random.Random) -> str:
    """A value from ``values`` other than ``not_this``."""
    choices = [v for v in values if v != not_this]
    return rng.choice(choices)


def k_digit(rng: random.Random, k: int) -> int:
    """A random number of exactly ``k`` digits (any of 0..9 when ``k`` is 1)."""
    return rng.randint(10 ** (k - 1) if k > 1 else 0, 10**k - 1)
