"""Log-probabilities as the OpenAI API shows them, and the prompt's own (``echo``) from the one
scorer.

Chat completions list an entry per token, ``{token, logprob, bytes, top_logprobs}``; (legacy)
completions give parallel lists, ``{tokens, token_logprobs, top_logprobs, text_offset}``, with
``top_logprobs`` a ``{token: logprob}`` dict per token. Generated tokens are scored by the engine
as it picks them; an echoed prompt is scored here by ``token_logprobs``, the scorer DPO, PPO and
evaluation use, so ``echo`` gives exactly what genlab's own scoring of that text gives. Every
log-prob is under the model's raw distribution (no temperature, no top-p).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from genlab.data.tokenizer import Tokenizer
from genlab.methods.autoregressive.scoring import token_logprobs
from genlab.nets.gpt import GPT
from genlab.serve.sequences import Event, Scores


class TokenTable:
    """Each id's bytes and its text as a log-prob entry names it.

    A byte-level token may hold part of a UTF-8 character; its text is then written as OpenAI
    writes such tokens, ``bytes:\\xe2\\x80``, and ``bytes`` gives the exact bytes.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.bytes: list[bytes] = tokenizer.token_bytes  # the table its stream decoder reads
        special = set(tokenizer.special.values())
        # The longest text one token covers: text of more UTF-8 bytes than ``n`` times this
        # cannot be fewer than ``n`` tokens. (Special tokens never come from text.)
        self.longest = max(len(b) for i, b in enumerate(self.bytes) if i not in special)

    def text(self, token: int) -> str:
        raw = self.bytes[token]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)

    def entry(self, token: int, logprob: float) -> dict[str, Any]:
        """``{token, logprob, bytes}`` (a chat log-prob entry, or one of its alternatives)."""
        return {"token": self.text(token), "logprob": logprob, "bytes": list(self.bytes[token])}

    def chat(self, events: Sequence[Event], skip: frozenset[int]) -> dict[str, Any]:
        """A chat choice's ``logprobs``: one entry per token the ``events`` chose, but those in
        ``skip`` (the end of turn: not part of the message)."""
        content = [
            {
                **self.entry(e.token, e.logprob),
                "top_logprobs": [self.entry(i, lp) for i, lp in e.top_logprobs],
            }
            for e in events
            if e.token is not None and e.logprob is not None and e.token not in skip
        ]
        return {"content": content, "refusal": None}


class LegacyLogprobs:
    """A completion choice's ``logprobs`` (parallel lists), built token by token.

    ``text_offset`` counts characters of the choice's text (the echoed prompt's included) before
    each token. A stream sends what came since the last ``take()``; offsets stay absolute.
    """

    def __init__(self, table: TokenTable, tokenizer: Tokenizer) -> None:
        self.table = table
        self._decoder = tokenizer.stream_decoder(skip_special=True)
        self._offset = 0
        self._lists: dict[str, list[Any]] = {}
        self.take()

    def add(self, token: int, scores: Scores | None) -> None:
        """Token ``token`` with its ``(logprob, alternatives)``; None for an unscored token (an
        echoed prompt's first)."""
        text = self.table.text
        self._lists["tokens"].append(text(token))
        self._lists["token_logprobs"].append(None if scores is None else scores[0])
        top = None if scores is None else {text(i): lp for i, lp in scores[1]}
        self._lists["top_logprobs"].append(top)
        self._lists["text_offset"].append(self._offset)
        self._offset += len(self._decoder.push(token))

    def add_events(self, events: Sequence[Event]) -> None:
        for e in events:
            if e.token is not None and e.logprob is not None:
                self.add(e.token, (e.logprob, e.top_logprobs))

    def take(self) -> dict[str, list[Any]]:
        """The lists since the last call."""
        taken = self._lists
        self._lists = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        return taken


@torch.inference_mode()
def score_prompt(
    model: GPT, prompt: Sequence[int], start: int, top: int, vocab: int
) -> list[Scores | None]:
    """Each token of ``prompt[start:]`` scored given the tokens before it, with its ``top``
    likeliest alternatives among the first ``vocab`` ids (those with text); the first is None
    (OpenAI's ``echo`` scores no first token).

    ``token_logprobs`` scores the tokens; the alternatives come from the same forward pass's
    hidden states through the model's head.
    """
    if len(prompt) - start <= 1:  # nothing scored: no token, or only the unscored first
        return [None] * (len(prompt) - start)
    device = model.wte.weight.device
    ids = torch.tensor([list(prompt)], device=device)
    scored = token_logprobs(model, ids[:, :-1], ids[:, 1:], hidden=top > 0)
    logprobs = scored.logprobs[0].tolist()
    alternatives: list[tuple[tuple[int, float], ...]] = [()] * len(logprobs)
    if top > 0:
        assert scored.hidden is not None
        logp = F.log_softmax(model.lm_head(scored.hidden[0]).float(), -1)
        values, indices = logp[:, :vocab].topk(top)
        alternatives = [
            tuple(zip(i, v, strict=True))
            for i, v in zip(indices.tolist(), values.tolist(), strict=True)
        ]
    # logprobs[j] scores prompt[j + 1]
    out: list[Scores | None] = [None]
    out += [(logprobs[j - 1], alternatives[j - 1]) for j in range(start + 1, len(prompt))]
    return out
