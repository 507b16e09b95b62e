"""``genlab demo --preset smoke``: every stage end to end, a complete report, resume."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from genlab.cli import main
from genlab.core.errors import GenlabError
from genlab.recipes.chatgpt import EVALUATED_MODELS, STAGES, preset_config, run_chatgpt

MODEL_KEYS = (
    "accuracy_greedy",
    "accuracy_sampled",
    "judge_greedy",
    "judge_sampled",
    "accuracy_by_family",
    "kl_to_sft",
    "reward_sampled",
)


@pytest.mark.slow
def test_smoke_demo_runs_end_to_end_and_writes_a_complete_report(tmp_path, capsys):
    out = tmp_path / "demo"
    main(["demo", "--preset", "smoke", "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert "chat with the result" in printed and f"genlab chat {out / 'ppo'}" in printed

    report = json.loads((out / "report.json").read_text())
    assert report["preset"] == "smoke" and report["command"].startswith("genlab demo")
    assert set(report["stages"]) == set(STAGES)
    for name in STAGES:
        assert report["stages"][name]["seconds"] > 0 and report["stages"][name]["metrics"]
    assert 0.0 <= report["stages"]["reward"]["metrics"]["test_accuracy"] <= 1.0
    assert "kl" in report["stages"]["ppo"]["metrics"]
    models = report["evaluation"]["models"]
    assert set(models) == set(EVALUATED_MODELS)
    for name, m in models.items():
        assert all(k in m for k in MODEL_KEYS), name
        assert set(m["accuracy_by_family"]) == set(report["families"])
        if name != "sft":
            assert 0.0 <= m["win_rate_vs_sft_sampled"] <= 1.0
    assert models["sft"]["kl_to_sft"] == 0.0 and models["pretrained"]["kl_to_sft"] is None
    assert models["ppo"]["kl_to_sft"] is not None and models["dpo"]["kl_to_sft"] is not None
    assert models["best_of_n"]["kl_to_sft"] == pytest.approx(math.log(8) - 7 / 8)  # analytic
    # per-item outcomes behind every rate, and the goal figures with intervals over them
    ev, figures = report["evaluation"], report["figures"]
    assert ev["split"] == "test"
    items = ev["outcomes"]["models"]
    assert len(items["sft"]["exact_greedy"]) == ev["prompts"]
    assert len(items["ppo"]["win_vs_sft_sampled"]) == ev["prompts"] * ev["settings"]["samples"]
    pairs = ev["outcomes"]["reward_pairs"]
    assert sum(pairs) / len(pairs) == report["stages"]["reward"]["metrics"]["test_accuracy"]
    assert figures["sft_exact"]["mean"] == models["sft"]["accuracy_greedy"]
    assert figures["dpo_win"]["mean"] == pytest.approx(models["dpo"]["win_rate_vs_sft_sampled"])
    assert all(f["low"] - 1e-12 <= f["mean"] <= f["high"] + 1e-12 for f in figures.values())
    assert set(report["goals_met"]) == {"sft", "reward", "ppo", "dpo"}
    assert all(isinstance(met, bool) for met in report["goals_met"].values())
    for plot in report["plots"]:
        assert (out / plot).stat().st_size > 1000
    md = (out / "report.md").read_text()
    assert "| ppo |" in md and "| best_of_n |" in md and "## Goals" in md and "genlab chat" in md
    assert "test split" in md and "% [" in md  # the goal table's intervals
    answers = (out / "answers.jsonl").read_text().splitlines()
    assert len(answers) == report["evaluation"]["prompts"]
    assert "plots/overoptimisation.png" in report["plots"]
    assert report["ppo_stop"].startswith(("Ran all", "Stopped at")) and report["ppo_stop"] in md


@pytest.mark.slow
def test_a_finished_demo_resumes_without_retraining_and_refuses_to_overwrite(tmp_path):
    cfg = preset_config("smoke", str(tmp_path / "demo"), progress=False)
    first = run_chatgpt(cfg)
    mtime = (tmp_path / "demo" / "sft" / "model.safetensors").stat().st_mtime_ns
    again = run_chatgpt(cfg, resume=True)
    assert (tmp_path / "demo" / "sft" / "model.safetensors").stat().st_mtime_ns == mtime
    assert again["stages"] == first["stages"]
    assert again["evaluation"]["models"] == first["evaluation"]["models"]  # seeded evaluation
    with pytest.raises(GenlabError, match="--resume"):
        run_chatgpt(cfg)
    with pytest.raises(GenlabError, match="same --preset and --seed"):
        run_chatgpt(replace(cfg, seed=1), resume=True)


def test_unknown_preset_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--preset", "huge", "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2 and "unknown demo preset" in capsys.readouterr().err


def test_unknown_eval_split_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--preset", "smoke", "--out", str(tmp_path / "x"), "--eval-split", "train"])
    assert exit_info.value.code == 2 and "unknown eval split" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before anything ran
