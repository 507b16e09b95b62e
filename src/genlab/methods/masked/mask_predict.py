"""Mask-predict (Ghazvininejad et al., 2019): decode all hidden tokens in parallel, then N - 1
times hide the least confident again and predict them given the rest.

One pass (N = 1) is plain non-autoregressive decoding (Gu et al., 2018): every token is chosen
independently, so tokens need not agree (a word twice, a word missing: the multi-modality
problem). Each further pass conditions the hidden tokens on the kept ones, which is where
agreement comes from. The loop takes any predictor of log-probs for every position, so the same
code decodes a translation (the CMLM's decoder) or a grid of image tokens (MaskGIT).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.methods.masked.masking import linear_count, lowest

Predictor = Callable[[Tensor], Tensor]  # (B, T) tokens -> (B, T, V) log-probs
Schedule = Callable[[Tensor, int, int], Tensor]  # (count, t, iterations) -> how many to hide


@torch.no_grad()
def mask_predict(
    predict: Predictor,
    tokens: Tensor,
    mask_id: int,
    iterations: int,
    schedule: Schedule = linear_count,
) -> tuple[Tensor, Tensor]:
    """Fill the ``mask_id`` slots of ``tokens`` (B, T) in ``iterations`` passes; return the
    tokens and each filled token's log-prob when it was last predicted (0 at other positions).

    Tokens that are not ``mask_id`` at the start (padding, or a prefix an autoregressive model
    wrote) are context and never change. The first pass predicts every hidden slot; before
    pass t the ``schedule(count, t, iterations)`` lowest-scoring filled tokens are hidden again
    and predicted anew, the others keep their token and score.
    """
    if iterations < 1:
        raise GenlabError(f"mask-predict needs at least 1 iteration, got {iterations}")
    fill = tokens == mask_id
    count = fill.sum(dim=1)
    scores = torch.zeros(tokens.shape, dtype=torch.float32, device=tokens.device)
    hidden = fill
    for t in range(iterations):
        if t > 0:
            hidden = lowest(scores, schedule(count, t, iterations), fill)
            if not hidden.any():
                break  # more iterations than tokens: nothing left to revise
            tokens = tokens.masked_fill(hidden, mask_id)
        best, choice = predict(tokens).float().max(dim=-1)
        tokens = torch.where(hidden, choice, tokens)
        scores = torch.where(hidden, best, scores)
    return tokens, scores
