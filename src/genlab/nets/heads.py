"""Small heads that read a network's final hidden states."""

from __future__ import annotations

from torch import Tensor, nn


class ValueHead(nn.Module):
    """A critic: one linear layer from hidden states (..., C) to a value per position (...).

    It starts at zero, so PPO's first advantages are the rewards themselves.
    """

    def __init__(self, n_embd: int) -> None:
        super().__init__()
        self.proj = nn.Linear(n_embd, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.proj(hidden.float()).squeeze(-1)
