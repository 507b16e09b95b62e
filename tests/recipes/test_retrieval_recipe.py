"""Retrieval with citations end to end at toy size: the demonstrations' layout and loss mask,
the recipe's run folder, ``genlab chat --retrieve`` on it, and the experiment's page.

What a model that learned the layout does with it is tested in tests/tools/test_cited_answers.py;
here the chain runs for a few steps on a toy ladder rung and every file it promises is checked.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from genlab.align.sft import conversation_example
from genlab.cli import app
from genlab.cli.chat import trained_k
from genlab.core.errors import GenlabError
from genlab.data.tinyworld.documents import DOCUMENTS_DIR, DocumentsConfig, fact_documents
from genlab.methods.autoregressive.checkpoint import load_gpt
from genlab.nets.gpt import IGNORE_INDEX
from genlab.recipes.experiments import retrieval as experiment
from genlab.recipes.experiments.ladder import LadderConfig, ladder_runs
from genlab.recipes.retrieval import (
    NOT_FOUND,
    SETTINGS_FILE,
    RetrievalConfig,
    demonstration,
    retrieval,
)
from genlab.tools.retrieval import INDEX_DIR, Retriever, documents_index

pytestmark = pytest.mark.usefixtures("one_thread")

DOCS = DocumentsConfig(size=8, per_paragraph=2)


def tiny(ladder: LadderConfig, out: str = "runs/retrieval") -> RetrievalConfig:
    base = str(ladder_runs(ladder, rungs=["xs"])["xs"])
    cfg = RetrievalConfig(base=base, out=out, k=2, worlds=1)
    cfg.documents = DOCS
    cfg.train.max_steps, cfg.train.warmup_steps, cfg.train.device = 3, 1, "cpu"
    cfg.train.progress, cfg.train.tensorboard, cfg.train.plots = False, False, False
    return cfg


def test_a_demonstration_searches_reads_and_cites_and_only_the_assistant_learns(ladder, tmp_path):
    _, tok = load_gpt(tiny(ladder).base)
    docs = fact_documents(DOCS)
    (tmp_path / "d.md").write_text("\n\n".join(p.text for p in docs.paragraphs))
    retriever = Retriever.build(tmp_path)
    questions = docs.questions("train")
    q = next(q for q in questions if q.evidence)
    messages = demonstration(q, retriever, 2, "relation")
    query = f"{q.relation.replace('_', ' ')} {q.subject}"
    assert messages[1]["tool_call"] == f"search({query})"
    found = retriever.search(query, 2)
    n = next(i for i, p in enumerate(found, 1) if q.evidence in p.text)
    assert messages[-1]["content"] == f"The answer is {q.example.answer} [{n}]."
    assert messages[2]["content"].startswith("[1] ")

    ids, mask = tok.render_chat(messages)
    opened, closed = ids.index(tok.tool_result_id), ids.index(tok.tool_result_end_id)
    assert not any(mask[opened : closed + 1])  # the passages are context, never targets
    assert ids[closed + 1] == tok.assistant_id and mask[closed + 1] == 0
    assert tok.decode([t for t, m in zip(ids, mask, strict=True) if m]) == (
        f"<|tool_call|>search({query})<|/tool_call|>The answer is {q.example.answer} [{n}].<|eot|>"
    )
    inputs, targets = conversation_example(tok, messages)
    assert sum(t != IGNORE_INDEX for t in targets) == sum(mask[1:])

    withheld = next(q for q in questions if not q.evidence)
    assert demonstration(withheld, retriever, 2, "relation")[-1]["content"] == NOT_FOUND
    assert (
        demonstration(q, retriever, 2, "question")[1]["tool_call"] == f"search({q.example.prompt})"
    )


def test_the_recipe_writes_documents_index_and_model_and_chat_answers_from_them(ladder, tmp_path):
    run = tmp_path / "run"
    metrics = retrieval(tiny(ladder, str(run)))
    practice = fact_documents(replace(DOCS, seed=DOCS.seed + 1)).questions("all")
    asked = len(fact_documents(DOCS).questions("train")) + len(practice)
    assert metrics["conversations"] == asked and metrics["dropped"] == 0
    assert (run / "model.safetensors").is_file()
    assert Retriever.saved_in(run / DOCUMENTS_DIR / INDEX_DIR)
    assert json.loads((run / SETTINGS_FILE).read_text())["k"] == 2
    question = fact_documents(DOCS).questions("test")[0].example.prompt
    assert trained_k(run) == 2 and trained_k(tmp_path) == 3  # chat's default --passages
    args = ["chat", str(run), "--retrieve", str(run / DOCUMENTS_DIR)]
    result = CliRunner().invoke(app, [*args, "-m", question, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) >= 2 and lines[1].startswith(("  call: ", "  [", "  (no search"))
    passages = documents_index(run / DOCUMENTS_DIR).passages
    assert len(passages) == len(fact_documents(DOCS).paragraphs)
    missing = CliRunner().invoke(app, ["chat", str(run), "--retrieve", str(tmp_path / "no")])
    assert "documents folder not found" in str(missing.exception)


def test_bad_settings_are_one_line_errors(ladder, tmp_path):
    with pytest.raises(GenlabError, match="--query must be one of relation, question"):
        retrieval(replace(tiny(ladder), query="keywords"))
    same = experiment.RetrievalExperimentConfig(ladder=ladder)
    same.retrieval.documents = replace(DOCS, seed=0)
    with pytest.raises(GenlabError, match="must not be one the model reads about"):
        experiment.run_experiment(same)


def test_the_experiment_page(ladder, tmp_path):
    cfg = experiment.RetrievalExperimentConfig(
        rung="xs", device="cpu", out_dir=str(tmp_path / "docs"), retrieval=tiny(ladder),
        ladder=ladder,
    )  # fmt: skip
    results = experiment.run_experiment(cfg, command="genlab experiment retrieval")
    for measure in (*experiment.MEASURES, "found", "closed_book"):
        mean, low, high = results[measure]
        assert 0 <= low <= mean <= high <= 1
    assert results["split"] == "test" and results["searches_per_answer"] >= 0
    page = (tmp_path / "docs" / "retrieval.md").read_text()
    for phrase in ("cites a passage with the answer", "closed-book", "query", "goal", "95%"):
        assert phrase in page
    assert (tmp_path / "docs" / "retrieval.png").stat().st_size > 1000
    again = experiment.run_experiment(cfg)  # the retrieval run is reused
    assert again["correct"] == results["correct"]
