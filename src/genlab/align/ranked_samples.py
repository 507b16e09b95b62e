"""Comparisons of the policy's own answers: sample ``k`` per prompt, let a labeller rank them.

InstructGPT's labellers ranked 4 to 9 answers of the SFT model to the same prompt, and every
pair of a ranking became a comparison (Ouyang et al., 2022, section 3.5). Such comparisons are
*on-policy*: they tell the model which of the answers it actually gives are better. DPO trained
on them moves probability between the SFT model's own answers instead of pushing down templated
text it would never write (Xu et al., 2024, "Is DPO Superior to PPO for LLM Alignment?";
Tajwar et al., 2024), and a reward model trained on them learns to rank what PPO will sample.

The labeller is any ``labeller(prompts, answers) -> scores`` (people, in the recipe; TinyWorld's
judge in the demo); a ``noise`` fraction of the pairs is flipped, as raters disagree.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from genlab.align.sampling import sample_answers
from genlab.core.errors import GenlabError
from genlab.data.records import Prompt
from genlab.data.tokenizer import Tokenizer
from genlab.nets.gpt import GPT

Labeller = Callable[[Sequence[Prompt], Sequence[str]], list[float]]


def ranked_pairs(
    prompt: Prompt, answers: Sequence[str], scores: Sequence[float]
) -> list[dict[str, Prompt]]:
    """Every pair of distinct answers whose scores differ, the better one ``chosen``: a
    ranking of ``k`` answers gives up to ``k (k - 1) / 2`` comparisons; ties give none."""
    best: dict[str, float] = {}
    for answer, score in zip(answers, scores, strict=True):
        best.setdefault(answer, score)  # the same answer sampled twice is one candidate
    ranked = sorted(best.items(), key=lambda item: -item[1])
    return [
        {"prompt": prompt, "chosen": a, "rejected": b}
        for i, (a, score_a) in enumerate(ranked)
        for b, score_b in ranked[i + 1 :]
        if score_a > score_b
    ]


def ranked_comparisons(
    model: GPT,
    tokenizer: Tokenizer,
    prompts: Sequence[Prompt],
    labeller: Labeller,
    k: int = 4,
    *,
    noise: float = 0.0,
    temperature: float = 1.0,
    max_new_tokens: int = 64,
    seed: int = 0,
    batch_size: int = 64,
) -> list[dict[str, Prompt]]:
    """``{"prompt", "chosen", "rejected"}`` records from ``k`` sampled answers per prompt,
    ranked by ``labeller``; a ``noise`` fraction of them flipped. The same seed gives the same
    records."""
    if k < 2:
        raise GenlabError(f"ranking needs k >= 2 answers per prompt, got {k}")
    if not 0.0 <= noise < 0.5:
        raise GenlabError(f"label noise must be in [0, 0.5), got {noise}")
    pairs: list[dict[str, Prompt]] = []
    samples = sample_answers(
        model,
        tokenizer,
        prompts,
        k,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        seed=seed,
        batch_size=batch_size,
    )
    for chunk, gens in samples:
        answers = [(g.text or "").strip() for g in gens]
        scores = labeller([p for p in chunk for _ in range(k)], answers)
        for i, prompt in enumerate(chunk):
            pairs += ranked_pairs(prompt, answers[i * k : (i + 1) * k], scores[i * k : (i + 1) * k])
    rng = random.Random(seed)
    for pair in pairs:
        if rng.random() < noise:
            pair["chosen"], pair["rejected"] = pair["rejected"], pair["chosen"]
    return pairs
