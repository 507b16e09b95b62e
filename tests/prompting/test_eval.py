"""``genlab eval`` end to end: a tiny GPT trained on a task answers it through the CLI, tasks from
a JSONL file, the JSON it writes, and one-line errors for bad task files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genlab.cli import main
from genlab.core.errors import GenlabError
from genlab.core.train_config import TrainConfig
from genlab.prompting.tasks import load_tasks, read_tasks
from genlab.recipes.pretrain import PretrainConfig, pretrain

pytestmark = pytest.mark.usefixtures("one_thread")

ANIMALS = {"cat": "meow", "dog": "woof", "cow": "moo", "duck": "quack", "owl": "hoot"}


def task_text(animal: str, sound: str) -> str:
    return f"Question: What does the {animal} say?\nAnswer: The answer is {sound}."


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer GPT pretrained on documents of solved animal-sound questions."""
    base = tmp_path_factory.mktemp("eval")
    docs = base / "docs.jsonl"
    items = list(ANIMALS.items())
    lines = [
        json.dumps({"text": "\n\n".join(task_text(*items[(i + k) % 5]) for k in range(3))})
        for i in range(300)
    ]
    docs.write_text("\n".join(lines))
    train = TrainConfig(
        max_steps=150, batch_size=16, lr=3e-3, warmup_steps=10, eval_every=150,
        eval_batches=1, checkpoint_every=150, progress=False, plots=False,
        tensorboard=False, seed=0,
    )  # fmt: skip
    cfg = PretrainConfig(
        out=str(base / "run"), preset="tiny", block_size=64, vocab_size=300, data=str(docs),
        train=train,
    )  # fmt: skip
    pretrain(cfg)
    return base / "run"


def write_tasks(path: Path, records: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_a_trained_model_answers_its_task_through_the_cli(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = write_tasks(
        tmp_path / "sounds.jsonl",
        [{"prompt": f"What does the {a} say?", "answer": s} for a, s in ANIMALS.items()],
    )
    out = tmp_path / "zero.json"
    main(["eval", "--model", str(trained), "--tasks", str(tasks), "--strategy", "zero-shot",
          "--device", "cpu", "--out", str(out)])  # fmt: skip
    report = json.loads(out.read_text())
    assert report["results"] == {"sounds": {"accuracy": 1.0, "ci": [1.0, 1.0], "n": 5}}
    assert "| sounds | 100.0 |" in capsys.readouterr().out
    # demonstrations from the file's other tasks; wrong labels in them are what the model copies
    main(["eval", "--model", str(trained), "--tasks", str(tasks), "--shots", "2",
          "--labels", "random", "--device", "cpu", "--out", str(out)])  # fmt: skip
    assert 0.0 <= json.loads(out.read_text())["results"]["sounds"]["accuracy"] <= 1.0


def test_bad_task_files_name_the_line(tmp_path: Path) -> None:
    bad = write_tasks(tmp_path / "t.jsonl", [{"prompt": "a?", "answer": "b"}, {"prompt": "c?"}])
    with pytest.raises(GenlabError, match=r"t\.jsonl:2 needs a non-empty string 'answer'"):
        read_tasks(bad)
    odd = write_tasks(tmp_path / "m.jsonl", [{"prompt": "a?", "answer": "b", "match": "fuzzy"}])
    with pytest.raises(GenlabError, match=r"m\.jsonl:1: match 'fuzzy' is unknown"):
        read_tasks(odd)
    steps = write_tasks(
        tmp_path / "s.jsonl", [{"prompt": "a?", "answer": "b", "subquestions": [1]}]
    )
    with pytest.raises(GenlabError, match=r"s\.jsonl:1: steps must be"):
        read_tasks(steps)
    with pytest.raises(GenlabError, match="unknown task family 'algebra'"):
        load_tasks("addition,algebra")
    with pytest.raises(GenlabError, match="not 'train'"):
        load_tasks("addition", split="train")


def test_tinyworld_questions_and_demonstrations_never_share_a_split() -> None:
    questions, pool = load_tasks("addition,multi_hop", "test", n_per_family=20)
    assert [q.family for q in questions] == ["addition"] * 20 + ["multi_hop"] * 20
    assert not {q.prompt for q in questions} & {p.prompt for p in pool}
