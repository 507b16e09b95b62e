"""Automatic prompt search: find the instruction from input/output pairs (APE, Zhou et al., 2023).

A proposal prompt shows some pairs and asks the model what the instruction was; the sampled
candidates (plus any given ones, e.g. a hand-written instruction) are scored by execution
accuracy on held-out pairs: each candidate is put before every held-out input and the model's
answers are compared with the outputs. The best is kept. The iterative variant (APE's Monte
Carlo search) asks the model for variations of the best candidates and scores them too, round
after round, keeping the top ones.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from genlab.core.errors import GenlabError
from genlab.prompting.layout import question
from genlab.prompting.lm import LM
from genlab.prompting.settings import answer_of
from genlab.prompting.vote import normalise

PROPOSE = (
    "I gave a friend an instruction and some inputs. The friend read the instruction and wrote "
    "an output for every one of the inputs. Here are the input-output pairs:"
)
VARY = "Generate a variation of the following instruction while keeping the semantic meaning."


@dataclass(frozen=True)
class Pair:
    """One input and the output the instruction should lead to."""

    input: str
    output: str


@dataclass
class Induction:
    """The best instruction, every candidate's held-out accuracy (best first), and the same for
    the proposals alone, before any search round (APE without search)."""

    best: str
    scores: list[tuple[str, float]] = field(default_factory=list)
    proposed: list[tuple[str, float]] = field(default_factory=list)


def task_prompt(instruction: str, text: str) -> str:
    """An instruction applied to one input, in pretraining's question layout."""
    return question(f"{instruction} {text}".strip())


def proposal_prompt(pairs: Sequence[Pair]) -> str:
    shown = "\n\n".join(f"Input: {p.input}\nOutput: {p.output}" for p in pairs)
    return f"{PROPOSE}\n\n{shown}\n\nThe instruction was"


def execution_hits(
    lm: LM,
    instructions: Sequence[str],
    pairs: Sequence[Pair],
    max_tokens: int = 24,
    seed: int = 0,
    bare: bool = False,
) -> list[list[bool]]:
    """For each instruction, whether each pair is answered exactly (case and spacing aside),
    greedy; all prompts go to the model as one batch. ``bare`` sends each input alone (a chat
    model with a trained soft prompt needs no instruction)."""
    if not instructions:
        return []
    prompts = [p.input if bare else task_prompt(i, p.input) for i in instructions for p in pairs]
    texts = lm.generate_until(prompts, () if bare else ("\n",), max_tokens, seed=seed)
    hits = [
        normalise(answer_of(t[0])) == normalise(p.output)
        for t, p in zip(texts, [*pairs] * len(instructions), strict=True)
    ]
    n = len(pairs)
    return [hits[k * n : (k + 1) * n] for k in range(len(instructions))]


def execution_accuracy(
    lm: LM, instructions: Sequence[str], pairs: Sequence[Pair], max_tokens: int = 24, seed: int = 0
) -> list[float]:
    """Each instruction's share of ``pairs`` answered exactly (APE's execution accuracy)."""
    return [sum(h) / len(h) for h in execution_hits(lm, instructions, pairs, max_tokens, seed)]


def _clean(text: str) -> str:
    return text.strip().strip("\"'").strip()


def induce(
    lm: LM,
    train: Sequence[Pair],
    held_out: Sequence[Pair],
    n_candidates: int = 8,
    rounds: int = 0,
    keep: int = 3,
    given: Sequence[str] = (),
    shown: int = 5,
    max_tokens: int = 24,
    seed: int = 0,
) -> Induction:
    """Propose ``n_candidates`` instructions from ``shown`` pairs of ``train`` (a different draw
    for each), add ``given``, score all on ``held_out``; with ``rounds`` > 0, each round asks for
    a variation of each of the ``keep`` best and scores those too."""
    if not train or not held_out:
        raise GenlabError("instruction induction needs training pairs and held-out pairs")
    rng = random.Random(f"genlab/prompting/ape/{seed}")
    prompts = [
        proposal_prompt(rng.sample(list(train), min(shown, len(train))))
        for _ in range(n_candidates)
    ]
    texts = lm.generate_until(prompts, ("\n",), max_tokens, temperature=1.0, seed=seed)
    pool = list(dict.fromkeys([*given, *(c for t in texts if (c := _clean(t[0])))]))
    scored = dict(zip(pool, execution_accuracy(lm, pool, held_out, max_tokens, seed), strict=True))
    proposed = _ranked(scored)
    for r in range(rounds):
        top = sorted(scored, key=lambda c: -scored[c])[:keep]
        asks = [f"{VARY}\n\nInput: {c}\n\nOutput:" for c in top]
        variations = lm.generate_until(
            asks, ("\n",), max_tokens, temperature=1.0, seed=seed + r + 1
        )
        new = list(dict.fromkeys(c for t in variations if (c := _clean(t[0])) and c not in scored))
        if new:
            scored |= dict(
                zip(new, execution_accuracy(lm, new, held_out, max_tokens, seed), strict=True)
            )
    ranked = _ranked(scored)
    if not ranked:
        raise GenlabError("the model proposed no instruction and none was given")
    return Induction(ranked[0][0], ranked, proposed)


def _ranked(scored: dict[str, float]) -> list[tuple[str, float]]:
    """Candidates best first (ties in the order they were found)."""
    return sorted(scored.items(), key=lambda kv: -kv[1])
