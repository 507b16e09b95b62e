"""Trainable token rows: the embeddings of a few chosen tokens train beside an adapter.

A base pretrained on plain text never saw the chat template's tokens (``<|user|>``,
``<|assistant|>``, ``<|eot|>``): their embedding rows are still their random start, and a frozen
base cannot learn to read or write them however good its LoRA is. Training just those rows
costs a few hundred numbers; PEFT offers the same as ``trainable_token_indices``. With tied
weights (GPT-2's output layer is the embedding) the output layer's columns of those tokens are
the same trained rows.

Both layers are ``AdapterLayer``s whose update replaces the chosen rows, so switching, weighted
sums and per-row adapters work as for LoRA; merging writes the rows into the base weight and
unmerging puts the saved originals back, bit for bit.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from genlab.adapt.config import AdapterConfig
from genlab.adapt.layers import AdapterLayer
from genlab.core.errors import GenlabError


class TokenRows(AdapterLayer):
    """An ``nn.Embedding`` whose rows of each adapter's token ids are replaced by trained ones."""

    def __init__(self, base_layer: nn.Embedding) -> None:
        super().__init__(base_layer)
        self.token_rows = nn.ModuleDict()  # name -> nn.Embedding(k, d) of the new rows
        self._saved: list[Tensor] = []  # the base rows as they were before each merge

    @property
    def names(self) -> list[str]:
        return list(self.token_rows)

    def indices(self, name: str) -> Tensor:
        """Adapter ``name``'s token ids: a buffer, so it follows the model to its device."""
        return self.get_buffer(f"indices_{name}")

    def add(self, name: str, config: AdapterConfig) -> None:
        weight = self.base_layer.weight
        check_tokens(config.tokens, weight.shape[0])
        indices = torch.tensor(config.tokens, dtype=torch.long, device=weight.device)
        rows = nn.Embedding(len(config.tokens), weight.shape[1], device=weight.device)
        with torch.no_grad():
            rows.weight.copy_(weight[indices])  # start from the base's rows: no change at first
        self.token_rows[name] = rows.to(weight.dtype)
        # not saved with the model (the config has the ids), but moved with it by .to(device)
        self.register_buffer(f"indices_{name}", indices, persistent=False)

    def delete(self, name: str) -> None:
        del self.token_rows[name]
        delattr(self, f"indices_{name}")
        self.weights.pop(name, None)

    def delta(self, name: str, x: Tensor, y: Tensor) -> Tensor:
        indices = self.indices(name)
        where = x[..., None] == indices  # (..., k)
        hit = where.any(-1, keepdim=True)
        new = where.to(y.dtype) @ self.token_rows[name].weight
        return torch.where(hit, new - y, torch.zeros_like(y))

    @torch.no_grad()
    def merge(self, name: str, weight: float = 1.0) -> None:
        if any(n == name for n, _ in self.merged):
            raise GenlabError(f"adapter '{name}' is already merged")
        indices, base = self.indices(name), self.base_layer.weight
        self._saved.append(base[indices].clone())
        base[indices] += weight * (self.token_rows[name].weight - base[indices])
        self.merged.append((name, weight))

    @torch.no_grad()
    def unmerge(self) -> None:
        while self.merged:
            name, _ = self.merged.pop()
            self.base_layer.weight[self.indices(name)] = self._saved.pop()


class TiedTokenColumns(AdapterLayer):
    """The output layer tied to an embedding: the chosen tokens' logits are read from the
    embedding's trained rows (``TokenRows``), so the two never disagree."""

    def __init__(self, base_layer: nn.Linear, rows: TokenRows) -> None:
        super().__init__(base_layer)
        self.__dict__["rows"] = rows  # not a submodule: the rows are the embedding's parameters
        # its own list: deleting an adapter may reach the embedding first, and this layer must
        # still know the name to drop it from ``weights``
        self._names: list[str] = []

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def add(self, name: str, config: AdapterConfig) -> None:
        """Only the name: the embedding's ``TokenRows`` holds the trained rows."""
        self._names.append(name)

    def delete(self, name: str) -> None:
        self._names.remove(name)
        self.weights.pop(name, None)

    def delta(self, name: str, x: Tensor, y: Tensor) -> Tensor:
        indices = self.rows.indices(name)
        # the rows' change, not the rows: exactly zero until they train (a matmul over k rows
        # rounds otherwise than the base's over the vocabulary), and the columns come out as
        # hidden @ new row to rounding
        change = self.rows.token_rows[name].weight - self.rows.base_layer.weight[indices]
        out = torch.zeros_like(y)
        out[..., indices] = x @ change.T
        return out

    def merge(self, name: str, weight: float = 1.0) -> None:
        """The tied weight is the embedding's: merging the embedding merged this too."""
        self.merged.append((name, weight))

    def unmerge(self) -> None:
        self.merged.clear()


def check_tokens(tokens: tuple[int, ...] | list[int], vocab_size: int) -> None:
    """One line naming the token ids that ``vocab_size`` embedding rows do not have."""
    outside = [t for t in tokens if not 0 <= t < vocab_size]
    if outside:
        raise GenlabError(
            f"token ids {outside} lie outside the vocabulary of {vocab_size} tokens (ids 0 to "
            f"{vocab_size - 1}): the adapter's tokens were chosen for another tokenizer"
        )


def add_token_rows(model: nn.Module, config: AdapterConfig, name: str) -> None:
    """Give ``model``'s token embedding ``wte`` (and its tied output layer ``lm_head``) trainable
    rows for ``config.tokens`` under adapter ``name``."""
    wte = getattr(model, "wte", None)
    if not isinstance(wte, TokenRows | nn.Embedding):
        raise GenlabError(f"a {type(model).__name__} has no token embedding 'wte' to train rows of")
    check_tokens(config.tokens, wte.weight.shape[0])  # before the model changes
    head = getattr(model, "lm_head", None)
    if isinstance(wte, nn.Embedding):
        if isinstance(head, AdapterLayer) and head.weight is wte.weight:
            raise GenlabError(
                "lm_head, tied to the token embedding, already holds a "
                f"{type(head).__name__}: train token rows or adapt lm_head, not both (drop "
                "lm_head from the LoRA targets, or train without token rows: --no-special-tokens)"
            )
        tied = isinstance(head, nn.Linear) and head.weight is wte.weight
        if head is not None and not tied:
            raise GenlabError("trainable token rows need the output layer tied to the embedding")
        wte = TokenRows(wte)
        model.wte = wte
        if tied:
            head = model.lm_head = TiedTokenColumns(head, wte)
    wte.add(name, config)
    wte.train(model.training)
    if isinstance(head, TiedTokenColumns):
        head.add(name, config)
