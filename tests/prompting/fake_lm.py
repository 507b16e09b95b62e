"""A scripted language model: each prompt's continuations come from a function the test writes,
and every request is recorded, so strategies can be checked without a network."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class Request:
    prompts: list[str]
    stop: tuple[str, ...]
    max_tokens: int
    temperature: float
    n: int


@dataclass
class ScriptedLM:
    """``reply(prompt, sample_index)`` -> the continuation."""

    reply: Callable[[str, int], str]
    requests: list[Request] = field(default_factory=list)

    def generate_until(
        self,
        prompts: Sequence[str],
        stop: Sequence[str],
        max_tokens: int,
        temperature: float = 0.0,
        n: int = 1,
        seed: int = 0,
    ) -> list[list[str]]:
        self.requests.append(Request(list(prompts), tuple(stop), max_tokens, temperature, n))
        return [[self.reply(p, j) for j in range(n)] for p in prompts]
