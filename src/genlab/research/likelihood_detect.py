"""Zero-shot detectors of generated text from the model's own likelihood.

A model finds its own text likelier than people's: the mean token log-likelihood (a perplexity
detector) is the plainest test. DetectGPT (Mitchell et al., 2023, "DetectGPT: Zero-Shot
Machine-Generated Text Detection using Probability Curvature") sharpens it by asking whether the
text sits at a local maximum of log p: perturbed rewrites of generated text lose likelihood,
rewrites of human text do not. Fast-DetectGPT (Bao et al., 2024, "Fast-DetectGPT: Efficient
Zero-Shot Detection of Machine-Generated Text via Conditional Probability Curvature") replaces
the sampled rewrites by the model's next-token distributions, for which the expectation is
analytic:

    curvature = (sum_t log p(x_t) - sum_t mu_t) / sqrt(sum_t var_t)

with ``mu_t`` and ``var_t`` the mean and variance of ``log p(x)`` for ``x`` drawn from the model's
distribution at step ``t``. Both scores come from one forward pass per batch of texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.methods.autoregressive.padding import pad_right
from genlab.methods.autoregressive.scoring import token_logprobs
from genlab.nets.gpt import GPT, IGNORE_INDEX


@dataclass
class LikelihoodScores:
    """Per text (N,): how many tokens were scored, their mean log-likelihood and the curvature."""

    tokens: Tensor
    log_likelihood: Tensor
    curvature: Tensor


@torch.inference_mode()
def likelihood_scores(
    model: GPT, texts: Sequence[Sequence[int]], batch_size: int = 32, *, context: int = 1
) -> LikelihoodScores:
    """Score each text (token ids) under ``model``, its first ``context`` tokens as context only:
    ``<|bos|>`` alone by default, or a prompt whose continuation alone is in question.

    Texts longer than the context window keep their first ``block_size + 1`` tokens. Rows are
    right-padded: a causal model never attends to what follows a position, so padding changes
    nothing that is scored. The per-token figures come from the one scorer (``token_logprobs``).
    """
    if not texts:
        raise GenlabError("no texts to score")
    if context < 1:
        raise GenlabError(f"context must be >= 1 (the first token is never scored), got {context}")
    if any(len(t) <= context for t in texts):
        raise GenlabError(
            f"a text has fewer than {context + 1} tokens: nothing to score after its first "
            f"{context} (context)"
        )
    vocab = model.config.vocab_size
    if any(not 0 <= i < vocab for t in texts for i in t):
        raise GenlabError(f"token ids must lie in 0..{vocab - 1}, the model's vocabulary")
    block = model.config.block_size
    if context > block:
        raise GenlabError(f"context of {context} tokens fills the model's window of {block}")
    device = model.wte.weight.device
    out: list[tuple[Tensor, Tensor, Tensor]] = []
    for start in range(0, len(texts), batch_size):
        seqs = [list(t)[: block + 1] for t in texts[start : start + batch_size]]
        ids = pad_right(seqs, pad_id=0).to(device)
        lengths = torch.tensor([len(s) for s in seqs], device=device)
        inputs, targets = ids[:, :-1], ids[:, 1:]
        column = torch.arange(1, ids.size(1), device=device)[None, :]  # each target's position
        scored = (column >= context) & (column < lengths[:, None])
        s = token_logprobs(
            model, inputs, targets.masked_fill(~scored, IGNORE_INDEX), entropy=True, variance=True
        )
        assert s.entropy is not None and s.variance is not None
        ll = s.logprobs.sum(-1)
        mu, var = (x.masked_fill(~scored, 0.0).sum(-1) for x in (-s.entropy, s.variance))
        curvature = (ll - mu) / var.clamp_min(1e-12).sqrt()
        n = scored.sum(-1)
        out.append((n.cpu(), (ll / n).cpu(), curvature.cpu()))
    return LikelihoodScores(*(torch.cat(parts) for parts in zip(*out, strict=True)))
