"""SFT: the loss counts assistant tokens only, packing leaks nothing, user JSONL end to end."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from genlab.align.sft import (
    SFTConfig,
    conversation_example,
    encode,
    pack,
    pad_examples,
    sft,
    sft_step,
)
from genlab.core.errors import GenlabError
from genlab.data.records import read_conversations, split_records
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.methods.autoregressive.decoding import generate
from genlab.nets.gpt import IGNORE_INDEX as IGNORE
from genlab.nets.gpt import segment_positions

CONVERSATION = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "what is two plus two?"},
    {"role": "assistant", "content": "four"},
    {"role": "user", "content": "and again?"},
    {"role": "assistant", "content": "it is four"},
]


def test_targets_are_exactly_the_assistant_tokens_and_their_end_of_turn(tok):
    ids, mask = tok.render_chat(CONVERSATION)
    inputs, targets = conversation_example(tok, CONVERSATION)
    assert inputs == ids[:-1] and len(targets) == len(inputs)
    learned = [t for t in targets if t != IGNORE]
    expected = tok.encode("four") + [tok.eot_id] + tok.encode("it is four") + [tok.eot_id]
    assert learned == expected
    # user and system text, roles and the bos token are never targets
    for t, m, nxt in zip(targets, mask[1:], ids[1:], strict=True):
        assert (t != IGNORE) == bool(m) and t in (nxt, IGNORE)


def test_loss_is_the_mean_cross_entropy_over_assistant_tokens_only(tok, make_gpt):
    model = make_gpt()
    x, y = pad_examples([conversation_example(tok, CONVERSATION)], 64, tok.pad_id)
    loss, metrics = sft_step(model, (x, y))
    logits, _ = model(x)
    keep = y[0] != IGNORE
    manual = F.cross_entropy(logits[0][keep], y[0][keep])
    assert loss.item() == pytest.approx(manual.item(), rel=1e-5)
    expected = len(tok.encode("four")) + len(tok.encode("it is four")) + 2  # two <|eot|>
    assert metrics["assistant_tokens"].item() == keep.sum().item() == expected
    # changing what the user said changes the context but never adds a target
    other = [dict(m) for m in CONVERSATION]
    other[1]["content"] = "say something else entirely please"
    _, y2 = conversation_example(tok, other)
    assert [t for t in y2 if t != IGNORE] == [t for t in y[0].tolist() if t != IGNORE]


def test_packed_rows_compute_what_each_conversation_computes_alone(tok, make_gpt):
    model = make_gpt().eval()
    convs = [
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}],
        CONVERSATION,
        [{"role": "user", "content": "two?"}, {"role": "assistant", "content": "yes"}],
    ]
    examples = [conversation_example(tok, c) for c in convs]
    x, y, seg = pack(examples, 64, tok.pad_id)
    assert x.shape[0] == 1 and seg[0].max().item() == 2  # three conversations, one row
    with torch.no_grad():
        packed, _ = model(x, positions=segment_positions(seg), segment_ids=seg)
        start = 0
        for inputs, _ in examples:
            alone, _ = model(torch.tensor([inputs]))
            span = packed[0, start : start + len(inputs)]
            torch.testing.assert_close(span, alone[0], atol=1e-5, rtol=1e-5)
            start += len(inputs)
        # and the packed loss equals the token-weighted loss of the conversations alone
        loss_packed, _ = sft_step(model, (x, y, seg))
        loss_alone, _ = sft_step(model, pad_examples(examples, 64, tok.pad_id))
    assert loss_packed.item() == pytest.approx(loss_alone.item(), rel=1e-5)


def test_pack_starts_a_new_row_when_a_conversation_does_not_fit(tok):
    examples = [([1] * 30, [2] * 30), ([3] * 30, [4] * 30), ([5] * 10, [6] * 10)]
    x, y, seg = pack(examples, 50, pad_id=0)
    assert x.shape == (2, 50)
    assert seg[0].tolist() == [0] * 30 + [-1] * 20
    assert seg[1].tolist() == [0] * 30 + [1] * 10 + [-1] * 10
    assert (y[0, 30:] == IGNORE).all()
    with pytest.raises(GenlabError, match="does not fit"):
        pack([([1] * 60, [1] * 60)], 50, 0)


def test_encode_drops_conversations_longer_than_the_context(tok):
    long = [{"role": "user", "content": "hello " * 40}, {"role": "assistant", "content": "hi"}]
    short = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}]
    (x, _, _), dropped = encode(tok, [long, short], 32, packed=True, seed=0)
    assert dropped == 1 and x.shape == (1, 32)


def test_conversation_files_are_checked_line_by_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(GenlabError, match="no assistant message"):
        read_conversations(bad)
    bad.write_text('{"messages": []}\nnot json\n')
    with pytest.raises(GenlabError, match="bad.jsonl:2 is not valid JSON"):
        read_conversations(bad)


def test_sft_on_a_user_jsonl_learns_to_answer(tmp_path, tok, base, train_config):
    data = tmp_path / "chats.jsonl"
    record = {
        "messages": [
            {"role": "user", "content": "hello there"},
            {"role": "assistant", "content": "the answer is yes"},
        ]
    }
    data.write_text("\n".join(json.dumps(record) for _ in range(40)) + "\n")
    cfg = SFTConfig(base=str(base), out=str(tmp_path / "sft"), train=train_config(40, lr=1e-2))
    train, held = split_records(read_conversations(data), 0.05)
    metrics = sft(cfg, train, held)
    assert metrics["conversations"] == 38 and metrics["eval_loss"] < 0.5
    model, loaded_tok = load_gpt(tmp_path / "sft")
    assert loaded_tok.to_json() == tok.to_json()
    prompt = tok.render_prompt([{"role": "user", "content": "hello there"}])
    out = generate(model, [prompt], 10, temperature=0, stop=[tok.eot_id], tokenizer=tok)[0]
    assert out.text == "the answer is yes" and out.finish_reason == "stop"
