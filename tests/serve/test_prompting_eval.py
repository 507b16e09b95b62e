"""``genlab eval --model http://...`` against ``genlab serve``: the ``openai`` client's answers are
the run folder's answers (greedy), many samples are split over requests, and the CLI reports."""

from __future__ import annotations

import json
from pathlib import Path

from genlab.cli import main
from genlab.data.tinyworld.families.base import Example
from genlab.prompting import LocalLM, OpenAILM, PromptSettings, answer
from references import require

require("openai")

QUESTIONS = [
    Example("chat", "the cat sat on the", "mat"),
    Example("chat", "hello there! how are", "you"),
    Example("chat", "a small model writes", "stories"),
]


def test_a_server_answers_as_the_run_folder_does(open_server, run_dir: Path) -> None:
    settings = PromptSettings("few-shot", shots=2, max_tokens=6)
    served = answer(OpenAILM(open_server.url), QUESTIONS, QUESTIONS, settings)
    local = answer(LocalLM(run_dir, device="cpu"), QUESTIONS, QUESTIONS, settings)
    assert [o.completions for o in served] == [o.completions for o in local]
    assert [o.answer for o in served] == [o.answer for o in local]


def test_more_samples_than_one_request_allows_are_split(open_server) -> None:
    lm = OpenAILM(open_server.url, max_n=16)
    texts = lm.generate_until(["the cat", "hello"], ["\n"], 4, temperature=1.0, n=20, seed=3)
    assert [len(t) for t in texts] == [20, 20]
    assert lm.model == lm.client.models.list().data[0].id


def test_the_cli_evaluates_a_url(open_server, tmp_path: Path) -> None:
    tasks = tmp_path / "chat.jsonl"
    tasks.write_text("\n".join(json.dumps(e.to_dict()) for e in QUESTIONS))
    out = tmp_path / "r.json"
    main(["eval", "--model", open_server.url, "--tasks", str(tasks), "--strategy", "zero-shot",
          "--max-tokens", "4", "--out", str(out)])  # fmt: skip
    report = json.loads(out.read_text())
    assert report["results"]["chat"]["n"] == 3 and report["model"] == open_server.url


def test_a_chat_endpoint_answers_as_the_run_folder_in_chat_mode(open_server, run_dir) -> None:
    settings = PromptSettings("instruction", reasoning_tokens=6)
    served = answer(OpenAILM(open_server.url, chat=True), QUESTIONS, [], settings)
    local = answer(LocalLM(run_dir, device="cpu", chat=True), QUESTIONS, [], settings)
    assert [o.completions for o in served] == [o.completions for o in local]
