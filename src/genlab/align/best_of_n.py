"""Best-of-n: sample ``n`` answers, keep the one the reward model scores highest.

The cheapest way to optimise a policy against a reward model trains nothing: draw ``n`` answers
from the SFT model and answer with the best-scored one (rejection sampling, as in WebGPT, Nakano
et al., 2021; Gao et al., 2022 study how it over-optimises a reward model). It is the baseline
that PPO and DPO have to beat to earn their training. Its KL to the sampling policy needs no
estimate: ``log n - (n - 1) / n`` nats (Stiennon et al., 2020), an upper bound on the exact value
that is tight when the ``n`` answers rarely repeat (Beirami et al., 2024).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from genlab.align.rollout import RewardFn
from genlab.align.sampling import sample_answers
from genlab.core.errors import GenlabError
from genlab.data.records import Prompt
from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.decoding import Generation
from genlab.nets.gpt import GPT


@dataclass
class Pick:
    """One best-of-n answer: the best-scored of its ``n`` candidates, and its reward."""

    generation: Generation
    reward: float


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || policy) in nats per answer: ``log n - (n - 1) / n`` (0 for ``n = 1``)."""
    return math.log(n) - (n - 1) / n


def best_of_n(
    model: GPT,
    tokenizer: Tokenizer,
    prompts: Sequence[Prompt],
    reward_fn: RewardFn,
    n: int,
    *,
    picks: int = 1,
    temperature: float = 1.0,
    max_new_tokens: int = 64,
    seed: int = 0,
    batch_size: int = 64,
) -> list[list[Pick]]:
    """``picks`` independent best-of-``n`` answers to each chat prompt (a user message or a
    message list), each from its own ``n`` samples of ``model``.

    ``reward_fn(prompts, answers)`` scores answers as PPO's reward does (a reward model's
    ``score`` fits); the first of equal best scores is kept. ``batch_size`` counts the sequences
    decoded together (``n * picks`` per prompt).
    """
    if n < 1 or picks < 1:
        raise GenlabError(f"best-of-n needs n >= 1 and picks >= 1, got n={n}, picks={picks}")
    per_prompt = n * picks
    out: list[list[Pick]] = []
    samples = sample_answers(
        model,
        tokenizer,
        prompts,
        per_prompt,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        seed=seed,
        batch_size=batch_size,
    )
    for chunk, gens in samples:
        rewards = [
            float(r)
            for r in reward_fn(
                [p for p in chunk for _ in range(per_prompt)], [g.text or "" for g in gens]
            )
        ]
        for first in range(0, len(gens), n):
            best = max(range(first, first + n), key=rewards.__getitem__)
            if first % per_prompt == 0:
                out.append([])
            out[-1].append(Pick(gens[best], rewards[best]))
    return out
