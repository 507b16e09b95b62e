"""Beam search: keep the ``k`` most likely prefixes at every step instead of the one best token.

Greedy decoding commits to each token; beam search (as in neural machine translation: Sutskever
et al., 2014; Wu et al., 2016) keeps ``k`` hypotheses, extends each by every token, and keeps the
``k`` best sums of log-probs. A hypothesis that emits the end token is set aside; the search
stops when ``k`` have ended (or at ``max_new_tokens``), and hypotheses are ranked by their
log-prob divided by ``length ** length_penalty`` so short ones are not favoured merely for having
fewer terms. One prompt at a time: the ``k`` beams are the rows of one KV cache, reordered after
each step (``KVCache.keep``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genlab.core.errors import GenlabError
from genlab.nets.gpt import GPT


@dataclass
class Hypothesis:
    """A continuation (the end token excluded) and its summed log-prob (end token included)."""

    tokens: list[int]
    logprob: float
    finished: bool

    def score(self, length_penalty: float) -> float:
        return self.logprob / (len(self.tokens) + self.finished) ** length_penalty


@torch.no_grad()
def beam_search(
    model: GPT,
    prompt: Sequence[int],
    beam_size: int = 4,
    max_new_tokens: int = 64,
    eos_id: int | None = None,
    length_penalty: float = 1.0,
) -> list[Hypothesis]:
    """The ``beam_size`` best continuations of ``prompt``, best first."""
    if beam_size < 1 or max_new_tokens < 1:
        raise GenlabError("beam search needs beam_size >= 1 and max_new_tokens >= 1")
    if not prompt:
        raise GenlabError("a prompt is empty: give at least one token")
    was_training = model.training
    model.eval()
    device = model.wte.weight.device
    cache = model.new_cache(1, len(prompt) + max_new_tokens)
    try:
        logits, _ = model(torch.tensor([list(prompt)], device=device), cache=cache, last_only=True)
        alive = [Hypothesis([], 0.0, False)]
        finished: list[Hypothesis] = []
        for step in range(max_new_tokens):
            logp = F.log_softmax(logits[:, -1].float(), dim=-1)
            total = torch.tensor([h.logprob for h in alive], device=device)[:, None] + logp
            top = total.flatten().topk(min(2 * beam_size, total.numel()))
            rows, tokens, kept = [], [], []
            for rank, (value, index) in enumerate(
                zip(top.values.tolist(), top.indices.tolist(), strict=True)
            ):
                row, token = divmod(index, logp.shape[1])
                if token == eos_id:
                    if rank < beam_size:
                        finished.append(Hypothesis(alive[row].tokens, value, True))
                    continue
                rows.append(row)
                tokens.append(token)
                kept.append(Hypothesis([*alive[row].tokens, token], value, False))
                if len(kept) == beam_size:
                    break
            alive = kept
            if len(finished) >= beam_size or step == max_new_tokens - 1:
                break
            cache.keep(torch.tensor(rows, device=device))
            logits, _ = model(torch.tensor(tokens, device=device)[:, None], cache=cache)
        ranked = finished + (alive if len(finished) < beam_size else [])
        return sorted(ranked, key=lambda h: h.score(length_penalty), reverse=True)[:beam_size]
    finally:
        model.train(was_training)
