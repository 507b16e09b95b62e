"""Sampling from a language model: greedy, temperature, top-k, nucleus, penalties, stops.

Decoding strategies as commonly used with GPT-style models: temperature scaling, top-k
filtering (Fan et al., 2018), nucleus / top-p sampling (Holtzman et al., 2020, "The Curious Case
of Neural Text Degeneration") and the CTRL repetition penalty (Keskar et al., 2019).

Prompts of different lengths are left-padded and decoded together with one KV cache; rows leave
the batch as they finish. Every generated token comes with its log-probability under the model's
raw distribution (before temperature and filtering), which PPO, self-consistency and calibration
need. ``Decoder`` exposes the loop one step at a time, so that callers can watch tokens as they
come (streaming) and insert tokens into a sequence between steps (``force``): Toolformer pauses on
a tool call, runs the tool and inserts its result this way.

A ``logits_bias`` hook changes the raw logits before any choice is made, from each row's previous
token and its logits: a sampling watermark (Kirchenbauer et al., 2023) adds a bias to a keyed
green list this way. Reported log-probabilities stay the model's own.

``constraints`` give some rows a grammar (``constrained``: a JSON schema or a regex) whose
disallowed tokens get ``-inf`` after ``logits_bias`` and before the choice.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.core.errors import GenlabError
from genlab.methods.autoregressive.constrained import Constraint, allowed_mask
from genlab.methods.autoregressive.padding import left_pad
from genlab.nets.gpt import GPT, positions_from_mask

log = logging.getLogger(__name__)

# (previous token of each row (B,), raw next-token logits (B, V)) -> logits to choose from
LogitsBias = Callable[[Tensor, Tensor], Tensor]


class Detokenizer(Protocol):
    """What sampling needs of a tokenizer: turning ids into text (for stop strings)."""

    def decode(self, ids: Sequence[int], skip_special: bool = False) -> str: ...


@dataclass
class SamplingConfig:
    """How to pick each next token. ``temperature=0`` is greedy decoding."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0
    stop_ids: tuple[int, ...] = ()
    stop_strings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_new_tokens < 0:
            raise GenlabError("max_new_tokens must be >= 0")
        if self.temperature < 0:
            raise GenlabError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise GenlabError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise GenlabError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise GenlabError("repetition_penalty must be > 0 (1.0 disables it)")


@dataclass
class Generation:
    """One finished sequence: new tokens (the stop token included), their log-probabilities,
    the text (stop token and stop string excluded, when a tokenizer was given) and why it ended:
    ``"stop"`` (a stop token or string) or ``"length"`` (max_new_tokens or the context)."""

    prompt: list[int]
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    text: str | None = None
    finish_reason: str | None = None


def process_logits(logits: Tensor, history: Tensor | None, config: SamplingConfig) -> Tensor:
    """Apply repetition penalty, temperature, top-k and top-p to (B, V) logits.

    Filtered tokens get ``-inf``. ``history`` (B, L) holds ids already in each sequence (padding
    as -1) for the repetition penalty.
    """
    logits = logits.float()
    if config.repetition_penalty != 1.0 and history is not None:
        seen = torch.zeros_like(logits, dtype=torch.bool)
        valid = history >= 0
        seen.scatter_(1, history.clamp(min=0), valid)
        penalised = torch.where(
            logits > 0, logits / config.repetition_penalty, logits * config.repetition_penalty
        )
        logits = torch.where(seen, penalised, logits)
    if config.temperature > 0:
        logits = logits / config.temperature
    if config.top_k is not None and config.top_k < logits.size(-1):
        kth = torch.topk(logits, config.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if config.top_p is not None and config.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # drop a token when the tokens before it already cover top_p (the first always stays)
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= config.top_p
        drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


class Decoder:
    """A batch of sequences being generated, advanced one token per ``step()``.

    Rows that finish leave the batch (their cache rows are dropped). ``force(row, ids)`` makes
    a row take the given tokens next instead of sampling, one per step.

    A step costs one forward of one token per row plus the choice of the next tokens; what
    does not change between steps is prepared once (the padding mask is preallocated to its
    final width), and the host sees the tokens once per step. ``compile=True`` runs the
    one-token forward through ``torch.compile`` (see ``compiled``). ``kv_dtype`` is the KV
    cache's (default: the model's; ``KVCache`` says what a narrower one trades).

    ``logits_bias(prev, logits)`` changes each step's raw logits before the choice (greedy
    included); ``prev`` (B,) is each row's last token, the prompt's last at the first step and a
    forced token once it is taken.

    ``constraints`` maps a result index to its own ``Constraint`` (each holds one sequence's
    state): the tokens it does not allow get ``-inf`` after ``logits_bias``, and it advances with
    the token taken. A forced token goes through it too and must be allowed (``GenlabError``
    otherwise): force a tool's result after the constrained span's end token, not inside it.
    Other rows decode exactly as without constraints.
    """

    def __init__(
        self,
        model: GPT,
        prompts: Sequence[Sequence[int]],
        config: SamplingConfig,
        *,
        tokenizer: Detokenizer | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        num_samples: int = 1,
        compile: bool = False,
        logits_bias: LogitsBias | None = None,
        constraints: Mapping[int, Constraint] | None = None,
        kv_dtype: torch.dtype | None = None,
    ) -> None:
        if not prompts:
            raise GenlabError("no prompts to generate from")
        if any(len(p) == 0 for p in prompts):
            raise GenlabError("a prompt is empty: give at least one token (e.g. <|bos|>)")
        if config.stop_strings and tokenizer is None:
            raise GenlabError("stop strings need a tokenizer to decode the text")
        self.model = model
        self.config = config
        self.tokenizer = tokenizer
        device = model.wte.weight.device
        self.device = device
        if generator is None:
            generator = torch.Generator(device=device)
            generator.manual_seed(0 if seed is None else seed)
        self.generator = generator

        block = model.config.block_size - model.prefix_length  # a soft prompt takes its positions
        longest = max(len(p) for p in prompts)
        if longest >= block:
            raise GenlabError(
                f"prompt of {longest} tokens leaves no room in the model's context of {block}; "
                "shorten it"
            )
        self.max_new = min(config.max_new_tokens, block - longest)
        self.results = [Generation(prompt=list(p)) for p in prompts for _ in range(num_samples)]
        self._forced: dict[int, list[int]] = {}
        self._stop_ids = frozenset(config.stop_ids)
        self._forward = compiled(model) if compile else model
        self.logits_bias = logits_bias
        self.constraints = dict(constraints or {})
        outside = sorted(set(self.constraints) - set(range(len(self.results))))
        if outside:
            raise GenlabError(f"constraint for result {outside[0]}, which does not exist")
        if len({id(c) for c in self.constraints.values()}) < len(self.constraints):
            raise GenlabError("give each result its own Constraint: it holds one sequence's state")

        # Left-pad so that every prompt ends at the same column.
        B = len(prompts)
        ids, mask = left_pad(prompts)
        ids, mask = ids.to(device), mask.to(device)
        self.padded = bool((mask == 0).any())
        width = longest + self.max_new
        self.cache = model.new_cache(B, width, dtype=kv_dtype)
        self.rows = list(range(B))  # result index of each row
        # the padding mask of every column the cache will hold: generated tokens are real
        self.mask = torch.ones(B, width, dtype=torch.bool, device=device)
        self.mask[:, :longest] = mask.bool()
        self.history = torch.where(mask.bool(), ids, torch.full_like(ids, -1))
        # position id of each row's next token, kept only for padded rows (else the cache length)
        self.next_pos = mask.sum(-1)
        self.prev = torch.tensor([p[-1] for p in prompts], device=device)  # each row's last token
        # columns fed so far; the cache may hold more (a soft prompt in front of every row)
        self.length = longest

        self._was_training = model.training
        model.eval()
        with torch.inference_mode():
            logits, _ = model(
                ids,
                attention_mask=mask if self.padded else None,
                positions=positions_from_mask(mask) if self.padded else None,
                cache=self.cache,
                last_only=True,
            )
        self.logits = logits[:, -1]
        if num_samples > 1:
            self._select(torch.arange(B, device=device).repeat_interleave(num_samples))
            self.rows = list(range(B * num_samples))
        self.steps = 0

    @property
    def done(self) -> bool:
        return not self.rows

    def force(self, index: int, ids: Sequence[int]) -> None:
        """Make result ``index`` take ``ids`` as its next tokens (e.g. a tool's output)."""
        self._forced.setdefault(index, []).extend(int(i) for i in ids)

    def _select(self, keep: Tensor) -> None:
        self.cache.keep(keep)
        self.rows = [self.rows[r] for r in keep.tolist()]
        self.mask = self.mask[keep]
        self.history = self.history[keep]
        self.next_pos = self.next_pos[keep]
        self.prev = self.prev[keep]
        self.logits = self.logits[keep]

    def step(self) -> list[tuple[int, int, float]]:
        """Pick one token for every unfinished sequence; return ``(index, token, logprob)``."""
        if self.done:
            return []
        with torch.inference_mode():
            return self._step()

    def _step(self) -> list[tuple[int, int, float]]:
        cfg = self.config
        logprobs = F.log_softmax(self.logits.float(), dim=-1)
        logits = self.logits
        if self.logits_bias is not None:
            logits = self.logits_bias(self.prev, logits)
        allowed = self._allowed(logits.size(-1)) if self.constraints else None
        if allowed is not None:
            logits = logits.masked_fill(~allowed, float("-inf"))
        if cfg.temperature == 0:
            plain = cfg.repetition_penalty == 1.0
            tokens = (logits if plain else process_logits(logits, self.history, cfg)).argmax(-1)
        else:
            probs = process_logits(logits, self.history, cfg).softmax(-1)
            tokens = torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)
        if self._forced:
            for r, index in enumerate(self.rows):
                queue = self._forced.get(index)
                if queue:
                    tokens[r] = queue.pop(0)
        if allowed is not None:
            self._advance_constraints(tokens, allowed)
        token_lp = logprobs.gather(-1, tokens[:, None]).squeeze(-1)

        emitted: list[tuple[int, int, float]] = []
        finished: list[int] = []
        self.steps += 1
        for r, (index, tok, lp) in enumerate(
            zip(self.rows, tokens.tolist(), token_lp.tolist(), strict=True)
        ):
            gen = self.results[index]
            gen.tokens.append(tok)
            gen.logprobs.append(lp)
            emitted.append((index, tok, lp))
            stopped = tok in self._stop_ids or (
                bool(cfg.stop_strings) and self._hit_stop_string(gen)
            )
            if stopped and not self._forced.get(index):
                gen.finish_reason = "stop"
            elif len(gen.tokens) >= self.max_new:
                gen.finish_reason = "length"
            if gen.finish_reason is not None:
                finished.append(r)

        if len(finished) == len(self.rows):
            self._finish_all()
            return emitted
        self._advance(tokens, finished)
        return emitted

    def _allowed(self, vocab_size: int) -> Tensor | None:
        """(B, V) bool mask of the tokens each row may take, or None when no row is constrained."""
        rows = [(r, self.constraints[i]) for r, i in enumerate(self.rows) if i in self.constraints]
        if not rows:
            return None
        allowed = torch.ones(len(self.rows), vocab_size, dtype=torch.bool)
        for r, constraint in rows:
            allowed[r] = allowed_mask(constraint, vocab_size)
        return allowed.to(self.device)

    def _advance_constraints(self, tokens: Tensor, allowed: Tensor) -> None:
        """Move each row's constraint with its token, after checking them all (a forced token
        may be one its constraint does not allow)."""
        taken = allowed.gather(1, tokens[:, None]).squeeze(1).tolist()
        for r, index in enumerate(self.rows):
            if not taken[r]:
                raise GenlabError(
                    f"token {int(tokens[r])} forced on result {index} is not allowed by its "
                    "constraint; force tokens after the constrained span ends"
                )
        for index, tok in zip(self.rows, tokens.tolist(), strict=True):
            if index in self.constraints:
                self.constraints[index].advance(tok)

    def _advance(self, tokens: Tensor, finished: list[int]) -> None:
        """Feed the new tokens through the model, dropping rows that finished."""
        if finished:
            done = set(finished)
            keep = torch.tensor(
                [r for r in range(len(self.rows)) if r not in done], device=self.device
            )
            tokens = tokens[keep]
            self._select(keep)
        self.prev = tokens
        # Only what is used is kept up to date: the history when a repetition penalty reads it;
        # the padding mask (when prompts differ in length) is a view of the preallocated one.
        if self.config.repetition_penalty != 1.0:
            self.history = torch.cat([self.history, tokens[:, None]], dim=1)
        padded = self.padded
        logits, _ = self._forward(
            tokens[:, None],
            attention_mask=self.mask[:, : self.length + 1] if padded else None,
            positions=self.next_pos[:, None] if padded else None,
            cache=self.cache,
        )
        self.length += 1
        if padded:
            self.next_pos = self.next_pos + 1
        self.logits = logits[:, -1]

    def _hit_stop_string(self, gen: Generation) -> bool:
        assert self.tokenizer is not None
        text = self.tokenizer.decode(gen.tokens, skip_special=True)
        return any(s in text for s in self.config.stop_strings)

    def _finish_all(self) -> None:
        self.rows = []
        self.model.train(self._was_training)

    def finalize(self) -> list[Generation]:
        """Texts for all results (when a tokenizer was given), stop token/string removed."""
        self.model.train(self._was_training)
        if self.tokenizer is not None:
            for gen in self.results:
                ids = gen.tokens
                if gen.finish_reason == "stop" and ids and ids[-1] in self.config.stop_ids:
                    ids = ids[:-1]
                text = self.tokenizer.decode(ids, skip_special=True)
                for s in self.config.stop_strings:
                    cut = text.find(s)
                    if cut >= 0:
                        text = text[:cut]
                gen.text = text
        return self.results


def compiled(model: GPT) -> nn.Module:
    """``model`` under ``torch.compile`` (shapes dynamic: the cache grows by a column a step),
    or ``model`` itself, with one logged line, where that cannot work: on the CPU inductor
    needs a C++ compiler. Off by default: on a 2-core CPU compiling took 11-24 s for a gain
    within the noise (docs/benchmarks.md, Decoding), and its logits differ from eager ones in
    the last float bits."""
    device = model.wte.weight.device
    if device.type == "cpu" and shutil.which(os.environ.get("CXX", "g++")) is None:
        log.warning("no C++ compiler for torch.compile (set CXX): decoding without compiling")
        return model
    return torch.compile(model, dynamic=True)


def _config(
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    repetition_penalty: float,
    stop: Sequence[int | str] | None,
) -> SamplingConfig:
    stop = list(stop or [])
    return SamplingConfig(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        stop_ids=tuple(s for s in stop if isinstance(s, int)),
        stop_strings=tuple(s for s in stop if isinstance(s, str)),
    )


def generate(
    model: GPT,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    stop: Sequence[int | str] | None = None,
    seed: int | None = 0,
    *,
    tokenizer: Detokenizer | None = None,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    on_step: Callable[[Decoder, list[tuple[int, int, float]]], None] | None = None,
    compile: bool = False,
    logits_bias: LogitsBias | None = None,
    constraints: Mapping[int, Constraint] | None = None,
    kv_dtype: torch.dtype | None = None,
) -> list[Generation]:
    """Continue each prompt (a list of token ids); return one ``Generation`` per sample.

    ``stop`` mixes token ids (e.g. the end-of-turn id) and strings (need ``tokenizer``).
    ``num_samples`` draws that many continuations per prompt (prompt i's samples are results
    ``i*num_samples ... i*num_samples + num_samples - 1``), sharing one prefill. ``on_step`` is
    called after every step with the decoder and the tokens just emitted; it may call
    ``decoder.force(index, ids)``. The same seed gives the same output. ``compile``
    compiles the one-token step and ``logits_bias`` changes the logits before each choice
    (``Decoder``). ``constraints`` maps a result index (as above: prompt i's sample j is
    ``i*num_samples + j``) to its own ``Constraint``, which masks that row's logits (``Decoder``);
    a row may stop (``"length"``) before its constrained text is complete. ``kv_dtype`` is the
    KV cache's dtype (default: the model's).
    """
    config = _config(max_new_tokens, temperature, top_k, top_p, repetition_penalty, stop)
    decoder = Decoder(
        model,
        prompts,
        config,
        tokenizer=tokenizer,
        seed=seed,
        generator=generator,
        num_samples=num_samples,
        compile=compile,
        logits_bias=logits_bias,
        constraints=constraints,
        kv_dtype=kv_dtype,
    )
    while not decoder.done:
        emitted = decoder.step()
        if on_step is not None:
            on_step(decoder, emitted)
    return decoder.finalize()


def stream(
    model: GPT,
    prompt: Sequence[int],
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    stop: Sequence[int | str] | None = None,
    seed: int | None = 0,
    *,
    tokenizer: Detokenizer | None = None,
    logits_bias: LogitsBias | None = None,
) -> Iterator[tuple[int, float]]:
    """Yield ``(token, logprob)`` for one prompt as each token is chosen.

    The tokens are exactly those ``generate`` returns for the same arguments.
    """
    config = _config(max_new_tokens, temperature, top_k, top_p, repetition_penalty, stop)
    decoder = Decoder(
        model, [prompt], config, tokenizer=tokenizer, seed=seed, logits_bias=logits_bias
    )
    try:
        while not decoder.done:
            for _, tok, lp in decoder.step():
                yield tok, lp
    finally:
        model.train(decoder._was_training)
