"""Continuous batching: a request's tokens do not depend on who else is in the batch."""

from __future__ import annotations

import threading

import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.methods.autoregressive.decoding import generate
from genlab.nets.gpt import GPT, GPTConfig
from genlab.serve.engine import Engine, EngineFull, Event, SequenceRequest

GREEDY = {"temperature": 0.0}
SAMPLED = {"temperature": 0.9, "top_p": 0.95}


class Recorder:
    """Collects the events of one submission, per sequence."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def tokens(self, index: int = 0) -> list[int]:
        return [e.token for e in self.events if e.index == index and e.token is not None]

    def text(self, index: int = 0) -> str:
        return "".join(e.text for e in self.events if e.index == index)

    def finish(self, index: int = 0) -> str | None:
        final = [e for e in self.events if e.index == index and e.finish_reason]
        assert len(final) <= 1
        return final[0].finish_reason if final else None


def run_alone(model, tokenizer, request: SequenceRequest) -> Recorder:
    engine = Engine(model, tokenizer)
    rec = Recorder()
    engine.submit([request], rec)
    while engine.step():
        pass
    return rec


def prompt(tokenizer, text: str) -> list[int]:
    return [tokenizer.bos_id, *tokenizer.encode(text)]


@pytest.mark.parametrize("settings", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_alone_matches_library_generate(model, tokenizer, settings):
    ids = prompt(tokenizer, "the cat sat on")
    rec = run_alone(model, tokenizer, SequenceRequest(ids, max_tokens=30, seed=5, **settings))
    stops = [tokenizer.eot_id, tokenizer.eos_id, tokenizer.bos_id]
    (ref,) = generate(model, [ids], max_new_tokens=30, stop=stops, seed=5, **settings)
    assert rec.tokens() == ref.tokens
    assert rec.finish() == ref.finish_reason


def test_a_bf16_cache_gives_generates_tokens_with_that_cache(model, tokenizer):
    """``kv_dtype``: alone or beside another request, a request gets what ``generate`` gives
    with the same cache dtype."""
    ids, other = prompt(tokenizer, "the cat sat on"), prompt(tokenizer, "hello there! how are")
    stops = [tokenizer.eot_id, tokenizer.eos_id, tokenizer.bos_id]
    engine = Engine(model, tokenizer, kv_dtype=torch.bfloat16)
    recs = [Recorder(), Recorder()]
    engine.submit([SequenceRequest(ids, max_tokens=30, seed=5, **SAMPLED)], recs[0])
    engine.step()
    engine.submit([SequenceRequest(other, max_tokens=12, **GREEDY)], recs[1])
    while engine.step():
        assert engine.batch.cache.k.dtype == torch.bfloat16
    for rec, p, n, settings, seed in (
        (recs[0], ids, 30, SAMPLED, 5),
        (recs[1], other, 12, GREEDY, 0),
    ):
        (ref,) = generate(model, [p], max_new_tokens=n, stop=stops, seed=seed,
                          kv_dtype=torch.bfloat16, **settings)  # fmt: skip
        assert rec.tokens() == ref.tokens


def test_requests_joining_and_leaving_get_the_tokens_they_get_alone(model, tokenizer):
    short = prompt(tokenizer, "hi")
    long = prompt(tokenizer, "a small model writes small stories about cats, dogs and code")
    plan = {  # step at which it joins: requests
        0: [SequenceRequest(short, max_tokens=40, seed=1, **SAMPLED)],
        3: [
            SequenceRequest(prompt(tokenizer, "def add(a"), max_tokens=6, **GREEDY),  # leaves early
            SequenceRequest(short, max_tokens=25, seed=2, **SAMPLED),
        ],
        # longer than the batch's cache at that point: the running rows are shifted right
        7: [SequenceRequest(long, max_tokens=30, **GREEDY)],
        12: [SequenceRequest(long, max_tokens=20, seed=3, **SAMPLED)],
    }
    engine = Engine(model, tokenizer, max_batch=4)
    submitted: list[tuple[SequenceRequest, Recorder]] = []
    joins = []  # whether each request joining a running batch was longer than its cache
    step = 0
    while True:
        for request in plan.get(step, []):
            if engine.batch.cache is not None:
                joins.append(len(request.prompt) > engine.batch.cache.length)
            rec = Recorder()
            engine.submit([request], rec)
            submitted.append((request, rec))
        if not engine.step() and step > max(plan):
            break
        step += 1
        if engine.rows:
            # right-aligned rows: the longest one fills the cache
            longest = max(len(r.prompt) + len(r.tokens) for r in engine.rows)
            assert engine.batch.mask.shape[1] == engine.batch.cache.length >= longest
            assert engine.batch.mask.sum(-1).tolist() == [
                len(r.prompt) + len(r.tokens) for r in engine.rows
            ]
    assert len(submitted) == 5
    assert set(joins) == {False, True}  # both ways of joining happened
    for request, rec in submitted:
        alone = run_alone(model, tokenizer, request)
        assert rec.tokens() == alone.tokens()
        assert rec.text() == alone.text()
        assert rec.finish() == alone.finish()


def test_the_batch_is_capped_and_waiting_requests_join_later(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch=2, max_queue=1)
    recs = [Recorder() for _ in range(3)]
    for rec in recs:
        engine.submit([SequenceRequest(prompt(tokenizer, "hello"), max_tokens=5, **GREEDY)], rec)
    with pytest.raises(EngineFull):
        engine.submit([SequenceRequest([1], max_tokens=5)], Recorder())
    engine.step()
    assert len(engine.rows) == 2 and engine.stats()["waiting"] == 1
    while engine.step():
        pass
    assert [r.tokens() for r in recs[1:]] == [recs[0].tokens()] * 2
    assert engine.stats() == {
        "running": 0,
        "waiting": 0,
        "finished": 3,
        "cancelled": 0,
        "failed": 0,
        "generated_tokens": 15,
    }


def test_cancelled_sequences_leave_the_batch(model, tokenizer):
    engine = Engine(model, tokenizer)
    keep, gone, never = Recorder(), Recorder(), Recorder()
    ids = prompt(tokenizer, "the dog")
    engine.submit([SequenceRequest(ids, max_tokens=20, **GREEDY)], keep)
    ticket = engine.submit([SequenceRequest(ids, max_tokens=20, **GREEDY)] * 2, gone)
    engine.submit([SequenceRequest(ids, max_tokens=20)], never).cancel()  # before admission
    for _ in range(4):
        engine.step()
    ticket.cancel()
    engine.step()
    assert len(engine.rows) == 1
    while engine.step():
        pass
    assert gone.finish(0) == gone.finish(1) == never.finish() == "cancelled"
    assert len(gone.tokens(0)) == 4 and never.tokens() == []
    assert keep.tokens() == run_alone(model, tokenizer, SequenceRequest(ids, 20, 0.0)).tokens()
    assert engine.stats()["cancelled"] == 3


def test_stop_strings_end_the_text_before_them(model, tokenizer):
    ids = prompt(tokenizer, "hello")
    free = run_alone(model, tokenizer, SequenceRequest(ids, max_tokens=40, **GREEDY))
    text = free.text()
    stop = text[10:13]  # a stop string that the free run writes
    assert len(stop) == 3
    rec = run_alone(model, tokenizer, SequenceRequest(ids, max_tokens=40, stop=(stop,), **GREEDY))
    assert rec.finish() == "stop"
    assert rec.text() == text[: text.index(stop)]
    # no piece sent before the end held a stop string's start that then completed
    assert all(stop not in e.text for e in rec.events)


def test_stop_token_ends_a_sequence_without_its_text(model, tokenizer):
    ids = prompt(tokenizer, "hello")
    free = run_alone(model, tokenizer, SequenceRequest(ids, max_tokens=12, **GREEDY))
    stop_token = free.tokens()[5]
    engine = Engine(model, tokenizer, stop_ids=[stop_token])
    rec = Recorder()
    engine.submit([SequenceRequest(ids, max_tokens=12, **GREEDY)], rec)
    while engine.step():
        pass
    first = free.tokens().index(stop_token)
    assert rec.tokens() == free.tokens()[: first + 1]
    assert rec.finish() == "stop"
    assert rec.text() == tokenizer.decode(free.tokens()[:first], skip_special=True)
    assert rec.events[-1].completion_tokens == first + 1


def test_generation_stops_at_the_models_context(model, tokenizer):
    engine = Engine(model, tokenizer, stop_ids=())
    rec = Recorder()
    ids = tokenizer.encode("the cat sat on the mat. " * 30)[: model.config.block_size - 3]
    engine.submit([SequenceRequest(ids, max_tokens=50, **GREEDY)], rec)
    while engine.step():
        pass
    assert len(rec.tokens()) == 3 and rec.finish() == "length"


def test_bad_requests_are_refused(model, tokenizer):
    engine = Engine(model, tokenizer)
    too_long = [tokenizer.bos_id] * model.config.block_size
    with pytest.raises(GenlabError, match="context"):
        engine.submit([SequenceRequest(too_long, max_tokens=1)], Recorder())
    with pytest.raises(GenlabError, match="empty"):
        engine.submit([SequenceRequest([], max_tokens=1)], Recorder())
    with pytest.raises(GenlabError, match="token ids"):
        engine.submit([SequenceRequest([10**6], max_tokens=1)], Recorder())
    assert engine.load() == 0


def test_background_thread_serves_submissions(model, tokenizer):
    engine = Engine(model, tokenizer)
    done = threading.Event()
    rec = Recorder()

    def listen(event: Event) -> None:
        rec(event)
        if event.finish_reason:
            done.set()

    engine.start()
    try:
        ids = prompt(tokenizer, "the cat")
        engine.submit([SequenceRequest(ids, max_tokens=8, **GREEDY)], listen)
        assert done.wait(10)
    finally:
        engine.stop()
    assert rec.tokens() == run_alone(model, tokenizer, SequenceRequest(ids, 8, 0.0)).tokens()


def test_ids_past_the_tokenizers_vocabulary_are_never_chosen(tokenizer):
    torch.manual_seed(0)
    padded = GPT(
        GPTConfig(
            vocab_size=tokenizer.vocab_size + 2000, block_size=64, n_layer=1, n_head=1, n_embd=16
        )
    )
    # random weights: without the cut, most of the sampled ids would be padding without text
    rec = run_alone(padded, tokenizer, SequenceRequest([tokenizer.bos_id], 40, 2.0, seed=0))
    assert rec.tokens() and max(rec.tokens()) < tokenizer.vocab_size


def test_padding_is_trimmed_so_a_short_row_outlives_a_long_one(model, tokenizer):
    # Admitted together, the short prompt is padded to the long one's 100 columns; after the
    # long one leaves, the short one generates 250 tokens: 350 columns unless the padding goes.
    long = tokenizer.encode("the cat sat on the mat. " * 20)[:100]
    short = [tokenizer.bos_id, *tokenizer.encode("hi")]
    engine = Engine(model, tokenizer, stop_ids=())
    a, b = Recorder(), Recorder()
    engine.submit([SequenceRequest(long, max_tokens=5, **GREEDY)], a)
    engine.submit([SequenceRequest(short, max_tokens=250, seed=4, **SAMPLED)], b)
    while engine.step():
        assert engine.batch.cache is None or engine.batch.cache.length < model.config.block_size
    assert len(a.tokens()) == 5 and len(b.tokens()) == 250 and b.finish() == "length"
    alone = Engine(model, tokenizer, stop_ids=())
    c = Recorder()
    alone.submit([SequenceRequest(short, max_tokens=250, seed=4, **SAMPLED)], c)
    while alone.step():
        pass
    assert b.tokens() == c.tokens()
