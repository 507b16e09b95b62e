"""Toolformer end to end at toy size: the recipe's files, the CLI verbs, the experiment's page.

What the steps compute is tested on a model that learned the calculator
(tests/tools/test_toolformer_annotation.py); here the whole chain runs for a few steps on a
two-rung ladder and every file it promises is checked against the others.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genlab.cli import main
from genlab.core.errors import GenlabError
from genlab.data.tinyworld import World
from genlab.recipes.experiments import toolformer as experiment
from genlab.recipes.experiments.ladder import ladder_runs
from genlab.recipes.toolformer import (
    ANNOTATIONS,
    SUMMARY,
    TOOLS_FILE,
    ToolformerConfig,
    demonstrations,
)
from genlab.tools.toolbox import run_call, toolbox
from genlab.tools.toolformer import AnnotateConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**changes) -> ToolformerConfig:
    cfg = ToolformerConfig(
        questions=6, prose=3, demonstrations=2, annotator_steps=3,
        annotate=AnnotateConfig(top_k=2, tau_s=0.0, samples=2, max_call_tokens=40, tau_f=-100.0),
    )  # fmt: skip
    cfg.train.max_steps, cfg.train.device, cfg.train.progress = 3, "cpu", False
    cfg.train.tensorboard, cfg.train.plots = False, False
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


def test_demonstrations_put_the_right_call_before_the_answer():
    world = World(0)
    tools = toolbox(["calculator", "calendar", "lookup"], world=world)
    demos = demonstrations(world, ["calculator", "calendar", "lookup"], 5, 0)
    assert len(demos) == 15
    for before, call, result, after in demos:
        assert before.startswith("Question: ") and before.endswith("Answer: The answer is")
        assert run_call(tools, call) == result and after == f" {result}."


def test_the_recipe_writes_annotator_annotations_summary_and_model(ladder, tmp_path):
    base = ladder_runs(ladder)["xs"]
    out = tmp_path / "tf"
    main(
        ["toolformer", "--base", str(base), "--out", str(out), "--questions", "6",
         "--prose", "3", "--demonstrations", "2", "--annotator-steps", "3", "--tau-s", "0",
         "--tau-f", "-100", "--samples", "2", "--max-call-tokens", "40", "--max-steps", "3",
         "--device", "cpu", "--no-progress", "--no-tensorboard", "--no-plots", "--seed", "1"]
    )  # fmt: skip
    assert (out / "annotator" / "model.safetensors").is_file()
    assert (out / "model.safetensors").is_file()
    about = json.loads((out / TOOLS_FILE).read_text())
    assert about["tools"] == ["calculator", "calendar", "lookup"] and about["world"] == 0
    rows = [json.loads(line) for line in (out / ANNOTATIONS).read_text().splitlines()]
    summary = json.loads((out / SUMMARY).read_text())
    proposed = sum(c["proposed"] for c in summary["per_tool"].values())
    assert proposed == len(rows) > 0
    for row in rows:  # every call parses (the syntax is constrained) and its gain is consistent
        assert row["call"].startswith(f"{row['tool']}(") and row["call"].endswith(")")
        assert row["gain"] == pytest.approx(
            min(row["loss_none"], row["loss_empty"]) - row["loss_plus"]
        )
    executed = sum(not r["result"].startswith("error:") for r in rows)
    assert summary["keep_rate"]["0.0"] == pytest.approx(
        sum(r["gain"] >= 0 for r in rows if not r["result"].startswith("error:")) / max(executed, 1)
    )
    main(["generate", "-c", str(out), "--tools", "run", "-p", "Question: What is 2 + 3?\nAnswer:",
          "--max-new-tokens", "6", "--temperature", "0"])  # fmt: skip


def test_bad_tools_are_refused_in_one_line(ladder, capsys):
    with pytest.raises(GenlabError, match="comma-separated list of: calculator"):
        tiny(tools="calculator,abacus").tool_names()
    base = ladder_runs(ladder)["xs"]  # a run that never learned tools
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "-c", str(base), "--tools", "run", "-p", "Hi"])
    assert exit_.value.code == 2
    assert "has no tools.json: name the tools" in capsys.readouterr().err


def test_the_experiment_page(ladder, tmp_path):
    cfg = experiment.ToolformerExperimentConfig(
        n_per_group=4, max_new_tokens=8, device="cpu", out_dir=str(tmp_path / "docs"),
        toolformer=tiny(), ladder=ladder,
    )  # fmt: skip
    rows = experiment.run_experiment(cfg, command="genlab experiment toolformer")
    assert len(rows) == 2 * 3 * len(experiment.GROUPS)  # rungs x arms x groups
    assert all(r["n"] == 4 and 0 <= r["accuracy"] <= 1 for r in rows)
    assert all(r["calls_per_answer"] == 0 for r in rows if r["arm"] != experiment.ARMS[2])
    page = (tmp_path / "docs" / "toolformer.md").read_text()
    for phrase in ("### arithmetic (3-digit)", "### The filter", "keep % at tau_f", "95%"):
        assert phrase in page
    assert "goal at the largest rung (s)" in page
    assert (tmp_path / "docs" / "toolformer.png").stat().st_size > 1000
    assert len(json.loads((tmp_path / "docs" / "toolformer.json").read_text())) == len(rows)
    again = experiment.run_experiment(cfg, command="")  # the Toolformer runs are reused
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]


def test_the_runs_are_points_of_a_sweep(ladder, tmp_path):
    cfg = experiment.ToolformerExperimentConfig(toolformer=tiny(), ladder=ladder)
    runs = experiment.toolformer_runs(cfg, {"xs": ladder_runs(ladder)["xs"]})
    assert Path(runs["xs"]).name == "run" and (Path(runs["xs"]) / SUMMARY).is_file()
