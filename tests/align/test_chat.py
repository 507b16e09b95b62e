"""``genlab chat``: one answer for scripts, and the interactive loop with /reset and /quit."""

from __future__ import annotations

import json

import pytest

from genlab.align.sft import SFTConfig, sft
from genlab.cli import main
from genlab.cli.chat import fit_prompt
from genlab.data.records import read_conversations, split_records


@pytest.fixture
def chat_model(tmp_path, base, train_config):
    """A tiny model fine-tuned to answer "hello there" with "the answer is yes"."""
    data = tmp_path / "chats.jsonl"
    record = {
        "messages": [
            {"role": "user", "content": "hello there"},
            {"role": "assistant", "content": "the answer is yes"},
        ]
    }
    data.write_text("".join(json.dumps(record) + "\n" for _ in range(20)))
    cfg = SFTConfig(base=str(base), out=str(tmp_path / "chat"), train=train_config(40, lr=1e-2))
    train, held = split_records(read_conversations(data), 0.1)
    sft(cfg, train, held)
    return tmp_path / "chat"


def test_message_answers_once(chat_model, capsys):
    main(["chat", str(chat_model), "--message", "hello there", "--max-new-tokens", "12"])
    assert capsys.readouterr().out == "the answer is yes\n"


def test_interactive_chat_keeps_resets_and_quits(chat_model, capsys, monkeypatch):
    lines = iter(["hello there", "/reset", "/nope", "hello there", "/quit", "never read"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    main(["chat", str(chat_model), "--max-new-tokens", "12", "--system", "be brief"])
    out = capsys.readouterr().out
    assert out.count("assistant> ") == 2 and "(conversation reset)" in out
    assert "unknown command /nope" in out
    assert next(lines) == "never read"  # /quit left the loop


def test_end_of_input_leaves_quietly(chat_model, monkeypatch):
    def eof(prompt=""):
        raise EOFError

    monkeypatch.setattr("builtins.input", eof)
    main(["chat", str(chat_model)])


def test_long_conversations_drop_their_oldest_turns_but_keep_the_system_prompt(tok):
    system = {"role": "system", "content": "be brief"}
    turns = [{"role": "user", "content": f"question number {i} " * 3} for i in range(6)]
    ids, kept = fit_prompt(tok, [system, *turns], 80)
    assert len(ids) <= 80 and kept[0] == system and kept[-1] == turns[-1]
    assert len(kept) < 7


def test_a_message_too_long_for_the_context_is_a_one_line_error(chat_model, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["chat", str(chat_model), "--message", "hello " * 100])
    assert exit_info.value.code == 2
    assert "write a shorter one" in capsys.readouterr().err
