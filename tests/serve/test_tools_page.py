"""docs/tools.md's function-calling example runs as written against a served model."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch

from genlab.nets.gpt import GPT, GPTConfig
from genlab.serve.api import create_app
from genlab.serve.engine import Engine

PAGE = Path(__file__).resolve().parents[2] / "docs" / "tools.md"
URL = "http://127.0.0.1:8000/v1"


def openai_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    [example] = [b for b in blocks if "from openai import OpenAI" in b]
    assert URL in example
    return example


@pytest.mark.usefixtures("one_thread")
def test_the_openai_example_runs_as_written(tokenizer, live_server, capsys):
    torch.manual_seed(0)  # a random model: the grammar alone makes its call parse
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=1024, n_layer=2, n_head=2, n_embd=32
    )
    engine = Engine(GPT(config).eval(), tokenizer, max_batch=4)
    live = live_server(create_app(engine, model_id="tiny"), engine)
    exec(compile(openai_example().replace(URL, f"{live.url}/v1"), str(PAGE), "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] in ("weather Paris", "weather Rome")
    answer = ast.literal_eval(lines[-1])  # the schema's object, printed
    assert list(answer) == ["answer"] and len(answer["answer"]) <= 8
