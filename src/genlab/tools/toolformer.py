"""Toolformer's annotation: the model proposes tool calls in text, and keeps those that help.

Schick et al., 2023, "Toolformer: Language Models Can Teach Themselves to Use Tools", section 2:

1. **Sample positions.** For every position ``i`` of a text, the model's probability that a call
   starts there, ``p_i = P(<|tool_call|> | x_1..x_{i-1})``; the ``top_k`` positions with
   ``p_i >= tau_s`` are candidates.
2. **Sample calls.** At each candidate, ``samples`` calls drawn from the model given the text so
   far and ``<|tool_call|>``, each ending with ``<|/tool_call|>``, constrained to the call
   syntax ``NAME(ARGUMENTS)`` of the given tools (the paper discards calls that do not parse).
3. **Execute** every call (``genlab.tools.toolbox.run_call``): a result, or an error text.
4. **Filter.** With ``L(z)`` the weighted loss of the tokens from ``i`` on given prefix ``z``
   (weights ``1, .8, .6, .4, .2`` over the next five tokens, normalised), keep a call when
   ``min(L(no call), L(call with an empty result)) - L(call with its result) >= tau_f``: its
   result, not the call alone, makes the text easier to predict.

The model that proposes calls only needs to know the call syntax; the paper shows it a few
examples in a prompt, and a model too small to learn in context sees them in training
(``genlab.recipes.toolformer``). Every executed call is returned with its three losses, so the
keep rate at any ``tau_f`` is read off the same annotation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.constrained import regex_constraint
from genlab.methods.autoregressive.decoding import generate
from genlab.methods.autoregressive.scoring import continuation_logprobs
from genlab.tools.base import Tool, parse_call
from genlab.tools.inserted import call_ids
from genlab.tools.toolbox import run_call

WEIGHTS = (1.0, 0.8, 0.6, 0.4, 0.2)  # the paper's w_t = max(0, 1 - 0.2 t), t = 0..4


@dataclass(frozen=True)
class AnnotateConfig:
    """Toolformer's sampling and filtering settings (the paper's names)."""

    top_k: int = 5  # candidate positions per text
    tau_s: float = 0.05  # least probability of a call at a candidate position
    samples: int = 6  # calls sampled per position (m)
    tau_f: float = 3.0  # least loss reduction of a kept call, in nats
    max_call_tokens: int = 32  # a call longer than this is dropped
    temperature: float = 1.0  # of the call sampling
    batch: int = 64  # texts per forward when scoring and sampling


@dataclass(frozen=True)
class Candidate:
    """One executed call at one position of one text, and the losses the filter compares."""

    text: int  # index of the text
    position: int  # the call goes before token ``position`` of the text
    probability: float  # p_i, the model's probability of a call there
    tool: str
    call: str
    result: str
    loss_plus: float  # L(call with its result)
    loss_none: float  # L(no call)
    loss_empty: float  # L(call with an empty result)

    @property
    def gain(self) -> float:
        """``L- - L+``: how much the result lowers the loss (the filter keeps gain >= tau_f)."""
        return min(self.loss_none, self.loss_empty) - self.loss_plus

    @property
    def executed(self) -> bool:
        return not self.result.startswith("error:")

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "gain": self.gain}


def call_pattern(tools: Mapping[str, Tool]) -> str:
    """The syntax of a call to one of ``tools``, ``NAME(ARGUMENTS)`` on one line, the arguments'
    parentheses balanced (two levels deep): sampled calls are constrained to it
    (``genlab.methods.autoregressive.constrained``), so every one parses, and the call ends at
    its closing parenthesis. Length is bounded by ``max_call_tokens``, not by the pattern: a
    counted repetition such as ``{1,60}`` multiplies the DFA's states and takes minutes to index.
    """
    names = "|".join(re.escape(name) for name in sorted(tools))
    flat = r"[^\n()]"
    nested = rf"(?:{flat}|\((?:{flat}|\({flat}*\))*\))"
    return rf"(?:{names})\({nested}+\)"


@torch.inference_mode()
def call_probabilities(
    model: nn.Module, tokenizer: Tokenizer, texts: Sequence[Sequence[int]], batch_size: int = 64
) -> list[torch.Tensor]:
    """``p_i`` for every position ``i`` of each text (ids without ``<|bos|>``): the probability
    that ``<|tool_call|>`` comes before token ``i``."""
    block = model.config.block_size  # type: ignore[union-attr]
    out: list[torch.Tensor] = []
    device = next(model.parameters()).device
    for start in range(0, len(texts), batch_size):
        rows = [[tokenizer.bos_id, *t][:block] for t in texts[start : start + batch_size]]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tokenizer.pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        logits, _ = model(ids.to(device))
        p = logits.float().softmax(-1)[..., tokenizer.tool_call_id].cpu()
        out += [p[i, : len(r) - 1] for i, r in enumerate(rows)]
    return out


def candidate_positions(p: torch.Tensor, top_k: int, tau_s: float) -> list[int]:
    """The ``top_k`` positions with ``p_i >= tau_s``, most probable first (never position 0:
    a call needs some text before it)."""
    p = p.clone()
    p[:1] = 0.0
    order = torch.argsort(p, descending=True, stable=True)[:top_k]
    return [int(i) for i in order if p[i] >= tau_s]


def weighted_loss(logprobs: torch.Tensor) -> float:
    """The paper's weighted loss of the tokens that follow a position (at most five)."""
    n = min(len(logprobs), len(WEIGHTS))
    w = torch.tensor(WEIGHTS[:n])
    return float(-(w * logprobs[:n].detach().float()).sum() / w.sum())


@torch.inference_mode()
def annotate(
    model: nn.Module,
    tokenizer: Tokenizer,
    texts: Sequence[Sequence[int]],
    tools: Mapping[str, Tool],
    config: AnnotateConfig,
    seed: int = 0,
) -> list[Candidate]:
    """Every executed call the model proposes in ``texts`` (ids without ``<|bos|>``), with the
    losses the filter compares (steps 1-4 of the module docstring; keep ``gain >= tau_f``).
    ``seed`` decides the sampled calls."""
    cfg = config
    probs = call_probabilities(model, tokenizer, texts, cfg.batch)
    # room after a position for the call, its result and the five tokens the filter scores
    room = model.config.block_size - cfg.max_call_tokens - 32  # type: ignore[union-attr]
    spots = [
        (t, i, float(probs[t][i]))
        for t in range(len(texts))
        for i in candidate_positions(probs[t][:room], cfg.top_k, cfg.tau_s)
    ]
    if not spots:
        return []
    prefixes = [[tokenizer.bos_id, *texts[t][:i], tokenizer.tool_call_id] for t, i, _ in spots]
    calls: list[tuple[int, str]] = []  # (spot, call text), distinct per spot
    pattern = call_pattern(tools)
    for start in range(0, len(prefixes), cfg.batch):
        chunk = prefixes[start : start + cfg.batch]
        end = [tokenizer.tool_call_end_id]
        gens = generate(
            model,
            chunk,
            max_new_tokens=cfg.max_call_tokens,
            temperature=cfg.temperature,
            stop=end,
            seed=seed + start,
            tokenizer=tokenizer,
            num_samples=cfg.samples,
            constraints={
                r: regex_constraint(tokenizer, pattern, end_ids=end)
                for r in range(len(chunk) * cfg.samples)
            },
        )
        for g, gen in enumerate(gens):
            spot = start + g // cfg.samples
            text = gen.text or ""
            if gen.finish_reason == "stop" and parse_call(text) and (spot, text) not in calls:
                calls.append((spot, text))
    results = [run_call(tools, text) for _, text in calls]

    def losses(inserted: Sequence[list[int]], which: Sequence[int]) -> list[float]:
        contexts, following = [], []
        for ins, s in zip(inserted, which, strict=True):
            t, i, _ = spots[s]
            contexts.append([tokenizer.bos_id, *texts[t][:i], *ins])
            following.append(list(texts[t][i : i + len(WEIGHTS)]))
        scores = continuation_logprobs(model, contexts, following, cfg.batch)
        return [weighted_loss(s) for s in scores]

    spot_of = [s for s, _ in calls]
    with_result = [call_ids(tokenizer, c, r) for (_, c), r in zip(calls, results, strict=True)]
    plus = losses(with_result, spot_of)
    empty = losses([call_ids(tokenizer, c, None) for _, c in calls], spot_of)
    none = losses([[] for _ in spots], range(len(spots)))
    out = []
    for k, ((s, call), result) in enumerate(zip(calls, results, strict=True)):
        t, i, p = spots[s]
        parsed = parse_call(call)
        assert parsed is not None
        out.append(Candidate(t, i, p, parsed[0], call, result, plus[k], none[s], empty[k]))
    return out


def keep_rate(candidates: Sequence[Candidate], tau_f: float) -> float:
    """The share of executed calls the filter keeps at ``tau_f``."""
    return sum(c.gain >= tau_f for c in candidates) / max(len(candidates), 1)


def kept_calls(candidates: Sequence[Candidate], tau_f: float) -> dict[int, tuple[int, str, str]]:
    """Per text, the call to insert as ``(position, call, result)``: the executed call with the
    largest ``gain >= tau_f``. One per text: each of TinyWorld's texts states one result."""
    best: dict[int, Candidate] = {}
    for c in candidates:
        if c.executed and c.gain >= tau_f and (c.text not in best or c.gain > best[c.text].gain):
            best[c.text] = c
    return {t: (c.position, c.call, c.result) for t, c in sorted(best.items())}
