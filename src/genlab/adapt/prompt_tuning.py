"""Prompt tuning: a few trained vectors placed before every input's token embeddings.

Lester et al., 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning": the whole model
stays frozen and only P "virtual token" embeddings train, so a task costs P x d numbers. Their
finding, which ``genlab experiment adapters`` checks at small scale, is that this matches full
fine-tuning only as models grow to billions of parameters. The network carries the prompt as
its ``prefix`` module (``genlab.nets.gpt.GPT.prefix``), so decoding and scoring need no change.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from genlab.adapt.config import AdapterConfig
from genlab.core.errors import GenlabError


class SoftPrompt(nn.Module):
    """Named soft prompts of one length; the acting ones (``weights``) are summed. A prompt
    shifts every position after it, so prompts are not chosen per batch row."""

    def __init__(self, length: int) -> None:
        super().__init__()
        self.length = length
        self.embeddings = nn.ModuleDict()
        self.weights: dict[str, float] = {}

    def forward(self, batch_size: int) -> Tensor:
        if not self.weights:  # no prompt acts: an all-zero prefix would still shift positions
            raise GenlabError("no soft prompt is active; choose one with set_adapters")
        prompt = sum(w * self.embeddings[n].weight for n, w in self.weights.items())
        return prompt.unsqueeze(0).expand(batch_size, -1, -1)  # type: ignore[union-attr]


def _soft_prompt(model: nn.Module) -> SoftPrompt | None:
    prefix = getattr(model, "prefix", None)
    return prefix if isinstance(prefix, SoftPrompt) else None


def add_prompt(model: nn.Module, config: AdapterConfig, name: str) -> list[str]:
    """Give ``model`` (a network with a ``prefix`` slot and a ``wte`` embedding) a soft prompt
    of ``config.prompt_tokens`` vectors under ``name``. Returns the layer it lives in."""
    if not hasattr(model, "prefix") or not hasattr(model, "wte"):
        raise GenlabError(
            f"a {type(model).__name__} takes no soft prompt: prompt tuning needs a GPT"
        )
    prompt = _soft_prompt(model)
    if prompt is None:
        prompt = model.prefix = SoftPrompt(config.prompt_tokens)
    elif prompt.length != config.prompt_tokens:
        raise GenlabError(
            f"soft prompts of one model share a length: this one has {prompt.length} tokens, "
            f"not {config.prompt_tokens}"
        )
    if name in prompt.embeddings:
        raise GenlabError(f"the model already has a soft prompt named '{name}'")
    wte = model.wte.weight  # type: ignore[union-attr]
    embedding = nn.Embedding(config.prompt_tokens, wte.shape[1], device=wte.device, dtype=wte.dtype)
    with torch.no_grad():
        if config.prompt_init == "vocab":  # Lester et al.: sampled vocabulary embeddings
            rows = torch.randint(0, wte.shape[0], (config.prompt_tokens,), device=wte.device)
            embedding.weight.copy_(wte[rows])
        else:
            nn.init.normal_(embedding.weight, std=0.02)
    prompt.embeddings[name] = embedding
    return ["prefix"]


def prompt_names(model: nn.Module) -> list[str]:
    """The soft prompts ``model`` holds, acting or not."""
    prompt = _soft_prompt(model) or getattr(model, "_parked_prompt", None)
    return [] if prompt is None else list(prompt.embeddings)


def prompt_weights(model: nn.Module) -> dict[str, float]:
    """The soft prompts that act on ``model``, with their weights."""
    prompt = _soft_prompt(model)
    return {} if prompt is None else dict(prompt.weights)


def set_prompt(model: nn.Module, weights: Mapping[str, float]) -> None:
    """Make the soft prompts among ``weights`` act; with none of them, the prompt is taken off
    the network (kept for later), so the base runs as it was."""
    prompt = _soft_prompt(model) or getattr(model, "_parked_prompt", None)
    if prompt is None:
        return
    prompt.weights = {n: w for n, w in weights.items() if n in prompt.embeddings}
    if prompt.weights:
        model.prefix = prompt
        model.__dict__.pop("_parked_prompt", None)
    else:
        model.prefix = None
        model.__dict__["_parked_prompt"] = prompt  # off the module tree: not in the state dict


def delete_prompt(model: nn.Module, name: str) -> None:
    prompt = _soft_prompt(model) or getattr(model, "_parked_prompt", None)
    if prompt is None or name not in prompt.embeddings:
        return
    del prompt.embeddings[name]
    prompt.weights.pop(name, None)
    if not prompt.embeddings:
        model.prefix = None
        model.__dict__.pop("_parked_prompt", None)
