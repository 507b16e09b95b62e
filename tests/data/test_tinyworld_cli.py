"""``genlab data tinyworld``: writes every file and the dataset card, byte-for-byte deterministic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genlab.cli import main
from genlab.data.tinyworld import DEFAULT_HELD_OUT, Example

SMALL = [
    "--size",
    "16",
    "--corpus-chars",
    "30000",
    "--train-per-family",
    "12",
    "--eval-per-family",
    "4",
    "--demonstrations",
    "30",
    "--pairs",
    "30",
    "--tool-docs",
    "6",
]
FILES = [
    "README.md",
    "manifest.json",
    "corpus.txt",
    "facts.jsonl",
    "tasks/train.jsonl",
    "tasks/validation.jsonl",
    "tasks/test.jsonl",
    "tasks/held_out.jsonl",
    "demonstrations.jsonl",
    "preferences.jsonl",
    "tool_text.txt",
]


def write(out: Path, seed: int = 0) -> None:
    main(["data", "tinyworld", "--out", str(out), "--seed", str(seed), *SMALL])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def contents(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in FILES}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tw") / "data"
    write(out)
    return out


def test_writes_every_file_with_consistent_counts(written, capsys):
    for name in FILES:
        assert (written / name).is_file(), name
    manifest = json.loads((written / "manifest.json").read_text())
    counts = manifest["counts"]
    corpus = (written / "corpus.txt").read_text()
    assert len(corpus.split("\n\n")) == counts["corpus_documents"]
    assert len(corpus) - 1 == counts["corpus_characters"] >= 30000
    facts = read_jsonl(written / "facts.jsonl")
    assert len(facts) == counts["facts"] and sum(f["corpus_count"] for f in facts) > 0
    train = [Example.from_dict(d) for d in read_jsonl(written / "tasks/train.jsonl")]
    assert len(train) == sum(counts["tasks"]["train"].values()) == 12 * 15
    assert all(e.check(e.answer) for e in train)
    assert not {e.family for e in train} & set(DEFAULT_HELD_OUT)
    held = read_jsonl(written / "tasks/held_out.jsonl")
    assert {d["family"] for d in held} == set(DEFAULT_HELD_OUT)
    pairs = read_jsonl(written / "preferences.jsonl")
    assert len(pairs) == 30 and all(set(p) == {"prompt", "chosen", "rejected"} for p in pairs)
    demos = read_jsonl(written / "demonstrations.jsonl")
    assert len(demos) == 30 and all(len(d["messages"]) == 2 for d in demos)
    assert len((written / "tool_text.txt").read_text().splitlines()) == 6
    assert manifest["config"]["size"] == 16


def test_dataset_card(written):
    card = (written / "README.md").read_text()
    assert card.startswith("# TinyWorld (seed 0, size 16)")
    assert "## The judge's rules" in card and "0.6 * correct" in card
    assert "Pleasantries:" in card and "Rude phrases:" in card
    for family in ("fact_question", "day_of_week", "cipher_from"):
        assert f"| {family} |" in card
    counts = json.loads((written / "manifest.json").read_text())["counts"]
    assert f"{counts['corpus_documents']} documents" in card
    assert "held out" in card and "A preference pair:" in card


def test_same_seed_same_bytes_different_seed_differs(written, tmp_path):
    write(tmp_path / "again")
    assert contents(tmp_path / "again") == contents(written)
    write(tmp_path / "other", seed=1)
    other = contents(tmp_path / "other")
    for name in ("corpus.txt", "facts.jsonl", "tasks/train.jsonl", "preferences.jsonl"):
        assert other[name] != contents(written)[name], name


@pytest.mark.slow
def test_same_bytes_in_another_process_with_another_hash_seed(written, tmp_path):
    """No set or dict ordering leaks into the output: PYTHONHASHSEED changes nothing."""
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    code = (
        "import sys; from genlab.cli import main; "
        "main(['data', 'tinyworld', '--out', sys.argv[1], '--seed', '0', *sys.argv[2:]])"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "p"), *SMALL], env=env, check=True)
    assert contents(tmp_path / "p") == contents(written)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--held-out", "nope"], "nope"),
        (["--noise", "1.5"], "noise"),
        (["--size", "2"], "at least 4"),
        (["--pairs", "-1"], "pairs"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        main(["data", "tinyworld", "--out", str(tmp_path / "x"), *args])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
