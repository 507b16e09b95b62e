"""Causal tracing: which layer's MLP, at which token, carries a fact to the answer.

Meng et al. (2022, "Locating and Editing Factual Associations in GPT", ROME) corrupt the
subject's token embeddings with noise, so the model no longer recalls the fact, and then
restore one hidden state from the clean run at a time: the states whose restoration brings the
answer back are the ones that carry the fact. Their finding, which the rank-one edit builds on:
the MLPs of middle layers at the subject's last token. This module traces MLP outputs.

A case is a prompt whose answer starts with ``target`` (a token id), with the subject at token
positions ``span`` ([start, end) of the ids fed, ``<|bos|>`` included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.data.tokenizer import Tokenizer
from genlab.nets.gpt import GPT

NOISE_SCALE = 3.0  # ROME: noise of three times the embeddings' standard deviation


@dataclass(frozen=True)
class Case:
    """One fact to trace: the prompt's ids, where its subject is, and the answer's first id."""

    ids: list[int]
    span: tuple[int, int]
    target: int


@dataclass
class Trace:
    """One case traced: the answer's probability clean, corrupted, and with the MLP output of
    layer ``l`` at token ``t`` restored (``restored[l, t]``)."""

    clean: float
    corrupted: float
    restored: Tensor  # (n_layer, T)

    @property
    def indirect_effect(self) -> Tensor:
        """How much of the answer's probability each restoration brings back."""
        return self.restored - self.corrupted


def subject_span(
    tokenizer: Tokenizer, prompt: str, subject: str
) -> tuple[list[int], tuple[int, int]]:
    """``<|bos|>`` + the prompt's ids, and the token span of ``subject``'s first occurrence.

    The span is read off the ids of the text up to the subject's start and end, which must be
    prefixes of the prompt's ids (true when the subject is a whole word of the prompt).
    """
    at = prompt.find(subject)
    if at < 0:
        raise GenlabError(f"subject {subject!r} is not in the prompt {prompt!r}")
    after = prompt[at + len(subject) : at + len(subject) + 1]
    if after.isalnum() or (at > 0 and prompt[at - 1].isalnum()):
        raise GenlabError(f"{subject!r} is part of a word in {prompt!r}; give the whole word")
    ids = [tokenizer.bos_id, *tokenizer.encode(prompt)]
    start = 1 + len(tokenizer.encode(prompt[:at].rstrip(" ")))
    end = 1 + len(tokenizer.encode(prompt[: at + len(subject)]))
    if ids[:end] != [tokenizer.bos_id, *tokenizer.encode(prompt[: at + len(subject)])]:
        raise GenlabError(
            f"the subject {subject!r} does not end on a token boundary of {prompt!r}; "
            "give the whole word"
        )
    return ids, (start, end)


def embedding_noise_std(model: GPT) -> float:
    """The noise level: ``NOISE_SCALE`` standard deviations of the token embeddings."""
    return NOISE_SCALE * model.wte.weight.detach().float().std().item()


@torch.no_grad()
def trace_case(model: GPT, case: Case, noise_std: float, samples: int = 10, seed: int = 0) -> Trace:
    """Trace one case, averaging the corrupted runs over ``samples`` noise draws.

    Each draw runs one batch of ``T`` rows per layer: row ``t`` restores that layer's MLP
    output at token ``t`` from the clean run.
    """
    model.eval()
    ids = torch.tensor([case.ids], device=model.wte.weight.device)
    T, (start, end) = ids.size(1), case.span
    clean_out: dict[int, Tensor] = {}
    hooks = [
        block.mlp.register_forward_hook(
            lambda _m, _i, out, layer=i: clean_out.__setitem__(layer, out.detach())
        )
        for i, block in enumerate(model.blocks)
    ]
    try:
        clean = model(ids)[0][0, -1].float().softmax(-1)[case.target].item()
    finally:
        for h in hooks:
            h.remove()

    generator = torch.Generator().manual_seed(seed)
    corrupted = 0.0
    restored = torch.zeros(len(model.blocks), T)
    rows = torch.arange(T)
    for _ in range(samples):
        noise = torch.randn(end - start, model.config.n_embd, generator=generator) * noise_std
        noise = noise.to(ids.device)

        def corrupt(_m, _i, out: Tensor, noise: Tensor = noise) -> Tensor:
            out = out.clone()
            out[:, start:end] += noise.to(out.dtype)
            return out

        handle = model.wte.register_forward_hook(corrupt)
        try:
            corrupted += model(ids)[0][0, -1].float().softmax(-1)[case.target].item() / samples
            batch = ids.expand(T, T)
            for layer, block in enumerate(model.blocks):

                def restore(_m, _i, out: Tensor, layer: int = layer) -> Tensor:
                    out = out.clone()
                    out[rows, rows] = clean_out[layer][0].to(out.dtype)
                    return out

                h = block.mlp.register_forward_hook(restore)
                try:
                    probs = model(batch)[0][:, -1].float().softmax(-1)[:, case.target]
                finally:
                    h.remove()
                restored[layer] += probs.cpu() / samples
        finally:
            handle.remove()
    return Trace(clean=clean, corrupted=corrupted, restored=restored)


def token_roles(case: Case) -> list[str]:
    """Each token's role in ROME's figure: first/middle/last subject token, the first token
    after the subject, later tokens, and the last token (where the answer is read)."""
    start, end = case.span
    roles = []
    for t in range(len(case.ids)):
        if t == len(case.ids) - 1:
            roles.append("last token")
        elif t == end - 1:
            roles.append("last subject token")
        elif t == start:
            roles.append("first subject token")
        elif start < t < end:
            roles.append("middle subject tokens")
        elif t == end:
            roles.append("first subsequent token")
        elif t > end:
            roles.append("further tokens")
        else:
            roles.append("before the subject")
    return roles


ROLES = (
    "before the subject",
    "first subject token",
    "middle subject tokens",
    "last subject token",
    "first subsequent token",
    "further tokens",
    "last token",
)


def average_effects(cases: Sequence[Case], traces: Sequence[Trace]) -> Tensor:
    """Mean indirect effect (n_layer, len(ROLES)) over cases, tokens grouped by role (a role a
    case lacks, such as middle tokens of a one-token subject, does not count for it)."""
    if not traces:
        raise GenlabError("no traces to average")
    n_layer = traces[0].restored.size(0)
    total = torch.zeros(n_layer, len(ROLES))
    count = torch.zeros(len(ROLES))
    for case, trace in zip(cases, traces, strict=True):
        effect = trace.indirect_effect
        for j, role in enumerate(ROLES):
            cols = [t for t, r in enumerate(token_roles(case)) if r == role]
            if cols:
                total[:, j] += effect[:, cols].mean(-1)
                count[j] += 1
    return total / count.clamp(min=1)


def locate_layer(effects: Tensor) -> int:
    """The layer whose MLP at the last subject token restores the most (ROME's edit layer).

    The last layer is left out when there are others: its MLP writes after every attention
    layer, so what it writes at the subject never reaches the answer's position.
    """
    candidates = effects[:-1] if effects.size(0) > 1 else effects
    return int(candidates[:, ROLES.index("last subject token")].argmax())
