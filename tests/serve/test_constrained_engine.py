"""Constraints in the engine: a row's grammar masks its logits, its neighbours decode as alone,
and a tool call's text goes to its own channel."""

from __future__ import annotations

import torch
from test_engine import GREEDY, SAMPLED, Recorder, prompt, run_alone

from genlab.serve.engine import Engine, SequenceRequest


class Digits:
    """A test-only Constraint: ``length`` tokens of digits, then the end token."""

    def __init__(self, tokenizer, length: int) -> None:
        self.digits = torch.tensor(
            [tokenizer.decode([i]).isdigit() for i in range(tokenizer.vocab_size)]
        )
        self.end = torch.zeros(tokenizer.vocab_size, dtype=torch.bool)
        self.end[tokenizer.eot_id] = True
        self.left = length

    def allowed(self) -> torch.Tensor:
        return self.digits if self.left else self.end

    def advance(self, token: int) -> None:
        assert bool(self.allowed()[token]), token
        self.left = max(0, self.left - 1)

    def is_complete(self) -> bool:
        return self.left == 0


class Forced:
    """A test-only Constraint that allows exactly the tokens ``ids``, in order."""

    def __init__(self, ids: list[int], vocab: int) -> None:
        self.ids, self.vocab = ids, vocab

    def allowed(self) -> torch.Tensor:
        mask = torch.zeros(self.vocab, dtype=torch.bool)
        mask[self.ids[0]] = True
        return mask

    def advance(self, token: int) -> None:
        assert token == self.ids.pop(0)

    def is_complete(self) -> bool:
        return not self.ids


def test_a_constrained_row_follows_its_grammar_and_leaves_others_alone(model, tokenizer):
    ids = prompt(tokenizer, "the cat sat on")
    free = SequenceRequest(ids, max_tokens=20, seed=1, **SAMPLED)
    greedy = SequenceRequest(prompt(tokenizer, "hello"), max_tokens=20, **GREEDY)
    engine = Engine(model, tokenizer)
    recs = [Recorder() for _ in range(4)]
    engine.submit([free], recs[0])
    for seed, rec in zip((0, 1), recs[1:3], strict=True):
        digits = SequenceRequest(
            ids, max_tokens=20, seed=seed, constraint=Digits(tokenizer, 6), **SAMPLED
        )
        engine.submit([digits], rec)
    engine.submit([greedy], recs[3])
    while engine.step():
        pass
    for rec in recs[1:3]:
        assert len(rec.text()) >= 6 and rec.text().isdigit()
        assert rec.finish() == "stop" and len(rec.tokens()) == 7  # six digit tokens, <|eot|>
    assert recs[1].text() != recs[2].text()
    assert recs[0].tokens() == run_alone(model, tokenizer, free).tokens()
    assert recs[3].tokens() == run_alone(model, tokenizer, greedy).tokens()


def test_a_tool_call_has_its_own_channel_and_finish(model, tokenizer):
    call = '{"name": "add", "arguments": {"a": 2}}'
    forced = [
        *tokenizer.encode("Let me add."),
        tokenizer.tool_call_id,
        *tokenizer.encode(call),
        tokenizer.tool_call_end_id,
    ]
    request = SequenceRequest(
        prompt(tokenizer, "what is 2+3?"),
        max_tokens=60,
        stop=("arguments",),  # a stop string does not cut the call
        constraint=Forced(list(forced), tokenizer.vocab_size),
        call_id=tokenizer.tool_call_id,
        stop_ids=(tokenizer.tool_call_end_id,),
        **GREEDY,
    )
    rec = run_alone(model, tokenizer, request)
    assert rec.tokens() == forced and rec.finish() == "tool_calls"
    assert rec.text() == "Let me add."
    opening = next(e for e in rec.events if e.call is not None)
    assert opening.token == tokenizer.tool_call_id and opening.call == ""
    assert "".join(e.call or "" for e in rec.events) == call
    assert all(e.call is None for e in rec.events[: rec.events.index(opening)])
    assert rec.events[-1].completion_tokens == len(forced)
