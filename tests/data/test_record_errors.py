"""A user's JSONL with a problem fails in one line naming ``file:line`` (the physical line,
blank lines counted), from the Python API and from the CLI; a byte-order mark is accepted."""

import codecs
import json

import pytest

from genlab.cli import main
from genlab.core.errors import GenlabError
from genlab.data.loaders import iter_texts
from genlab.data.records import read_comparisons, read_conversations, read_prompts

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
WIZARD = {"messages": [{"role": "wizard", "content": "hi"}, {"role": "assistant", "content": "yo"}]}


def jsonl(path, *lines, prefix: bytes = b""):
    """Write ``lines`` (records, raw bytes, or "" for a blank line) one per line."""
    encoded = [
        ln if isinstance(ln, bytes) else json.dumps(ln).encode() if ln else b"" for ln in lines
    ]
    path.write_bytes(prefix + b"\n".join(encoded) + b"\n")
    return path


def one_line(fn, match: str) -> str:
    with pytest.raises(GenlabError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_bad_role_is_named_by_file_and_physical_line(tmp_path):
    path = jsonl(tmp_path / "sft.jsonl", GOOD, "", "", WIZARD)
    msg = one_line(lambda: read_conversations(path), "message 0 has role 'wizard'")
    assert msg.startswith(f"{path}:4: ")


def test_comparison_and_prompt_messages_are_checked_at_their_line(tmp_path):
    bad_prompt = [{"role": "wizard", "content": "hi"}]
    pairs = jsonl(
        tmp_path / "pairs.jsonl",
        {"prompt": "q", "chosen": "a", "rejected": "b"},
        "",
        {"prompt": bad_prompt, "chosen": "a", "rejected": "b"},
    )
    one_line(lambda: read_comparisons(pairs), f"^{pairs}:3: message 0 has role 'wizard'")
    prompts = jsonl(tmp_path / "prompts.jsonl", "", {"prompt": bad_prompt})
    one_line(lambda: read_prompts(prompts), f"^{prompts}:2: message 0 has role")
    empty = jsonl(tmp_path / "empty.jsonl", {"messages": [{"role": "assistant", "content": "a"}]})
    one_line(lambda: read_prompts(empty), f"^{empty}:1: a prompt must be")


def test_bytes_that_are_not_utf8_are_named_by_line(tmp_path):
    path = jsonl(tmp_path / "latin1.jsonl", GOOD, "", '{"messages": "caf\xe9"}'.encode("latin-1"))
    msg = one_line(lambda: read_conversations(path), "is not UTF-8")
    assert msg.startswith(f"{path}:3 ") and "0xe9" in msg and "save the file as UTF-8" in msg
    texts = jsonl(tmp_path / "texts.jsonl", {"text": "a"}, b"\xff\xfe")
    one_line(lambda: list(iter_texts(texts)), f"^{texts}:2 is not UTF-8")


def test_a_byte_order_mark_at_the_start_is_accepted(tmp_path):
    path = jsonl(tmp_path / "bom.jsonl", GOOD, GOOD, prefix=codecs.BOM_UTF8)
    assert read_conversations(path) == [GOOD["messages"]] * 2
    text = tmp_path / "bom.txt"
    text.write_bytes(codecs.BOM_UTF8 + b"hello")
    assert list(iter_texts(text)) == ["hello"]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ((GOOD, "", WIZARD), ":3: message 0 has role 'wizard'"),
        ((GOOD, b"\x80\x81"), ":2 is not UTF-8"),
    ],
)
def test_the_cli_prints_one_line_and_exits_2(tmp_path, capsys, lines, message):
    path = jsonl(tmp_path / "bad.jsonl", *lines)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        main(["sft", "--data", str(path), "--base", str(tmp_path / "base"), "--out", str(out)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("genlab: error: ") and f"{path}{message}" in err
