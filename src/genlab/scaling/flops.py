"""What a GPT costs: its non-embedding parameters and its training FLOPs per token.

Kaplan et al. (2020, "Scaling Laws for Neural Language Models", table 1) count N = 12 *
n_layer * d_model^2 non-embedding parameters (attention 4 d^2, MLP 8 d^2 per layer) and a
forward pass of 2N + 2 n_layer n_ctx d_model FLOPs per token (the second term: attention over
the context); training (forward and backward) costs three times that, so C = 6ND for N much
larger than the context term. Chinchilla (Hoffmann et al., 2022) uses C = 6ND too.
"""

from __future__ import annotations


def non_embedding_params(n_layer: int, n_embd: int) -> int:
    """Kaplan's N: the transformer blocks' weights, embeddings and biases left out."""
    return 12 * n_layer * n_embd**2


def flops_per_token(n_layer: int, n_embd: int, block_size: int) -> float:
    """Training FLOPs per token: three forward passes' worth of 2N + 2 n_layer n_ctx d."""
    return 3 * (2 * non_embedding_params(n_layer, n_embd) + 2 * n_layer * block_size * n_embd)


def training_flops(params: float, tokens: float) -> float:
    """C = 6ND, the approximation both papers fit against."""
    return 6.0 * params * tokens
