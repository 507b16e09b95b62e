"""The prompting experiments at toy size: a two-rung ladder trained for a few steps, then each
experiment's rows, page, JSON and figure; the ladder is trained once and reused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genlab.core.errors import GenlabError
from genlab.recipes.experiments import (
    chain_of_thought,
    icl_wrong_labels,
    instruction_tuning,
    least_to_most,
    prompt_search,
    self_consistency,
)
from genlab.recipes.experiments.ladder import LadderConfig, ladder_documents, ladder_runs

pytestmark = pytest.mark.usefixtures("one_thread")


def check_page(out: Path, name: str, rows: list, phrase: str) -> None:
    page = (out / f"{name}.md").read_text()
    assert phrase in page and "95%" in page and "machine load" in page
    assert len(json.loads((out / f"{name}.json").read_text())) == len(rows)
    assert (out / f"{name}.png").stat().st_size > 1000


def test_the_ladder_is_trained_once_and_its_corpus_holds_every_layout(ladder) -> None:
    runs = ladder_runs(ladder)  # reused: nothing retrains
    assert list(runs) == ["xs", "s"] and all(
        (p / "model.safetensors").is_file() for p in runs.values()
    )
    docs = "\n".join(ladder_documents(ladder.budget()))
    for marker in ("Answer: The answer is", "Let's think step by step.", "Subquestions: ", "\nQ: "):
        assert marker in docs
    with pytest.raises(GenlabError, match="unknown ladder preset 'huge'"):
        LadderConfig(preset="huge").rungs()


def test_wrong_labels_and_chain_of_thought_pages(ladder, tmp_path: Path) -> None:
    rows = icl_wrong_labels.run_experiment(
        icl_wrong_labels.WrongLabelsConfig(
            n_per_family=4, shots=2, device="cpu", out_dir=str(tmp_path), ladder=ladder
        )
    )
    assert [(r["rung"], r["arm"]) for r in rows[:3]] == [("xs", a) for a in icl_wrong_labels.ARMS]
    assert all(r["n"] == 12 and r["low"] <= r["accuracy"] <= r["high"] for r in rows)
    check_page(tmp_path, icl_wrong_labels.NAME, rows, "gold labels - random labels [95%]")
    rows = chain_of_thought.run_experiment(
        chain_of_thought.ChainOfThoughtConfig(
            families=("addition", "multi_hop"), n_per_family=3, shots=1, reasoning_tokens=8,
            device="cpu", out_dir=str(tmp_path), ladder=ladder,
        )
    )  # fmt: skip
    assert len(rows) == 2 * len(chain_of_thought.ARMS)
    check_page(tmp_path, chain_of_thought.NAME, rows, "few-shot CoT - direct [95%]")


def test_self_consistency_scores_votes_of_each_size(ladder, tmp_path: Path) -> None:
    rows = self_consistency.run_experiment(
        self_consistency.SelfConsistencyConfig(
            families=("addition",), n_per_family=3, samples=(1, 3), shots=1,
            reasoning_tokens=8, device="cpu", out_dir=str(tmp_path), ladder=ladder,
        )
    )  # fmt: skip
    assert [(r["rung"], r["mode"]) for r in rows] == [("s", "CoT"), ("s", "direct")]
    assert all(1 <= r["distinct"] <= 3 and 0 < r["share"] <= 1 for r in rows)
    check_page(tmp_path, self_consistency.NAME, rows, "vote of 3 %")


def test_least_to_most_asks_long_questions_with_short_demonstrations(ladder, tmp_path) -> None:
    cfg = least_to_most.LeastToMostConfig(
        families=("sort_list", "multi_hop"), n_per_family=3, shots=1, draw=300,
        reasoning_tokens=8, device="cpu", out_dir=str(tmp_path), ladder=ladder,
    )  # fmt: skip
    questions, pool, spans = least_to_most.short_and_long(cfg)
    for family, (short, long) in spans.items():
        assert long > short
        assert {least_to_most.length_of(e) for e in pool if e.family == family} == {short}
        assert min(least_to_most.length_of(e) for e in questions if e.family == family) == long
    rows = least_to_most.run_experiment(cfg)
    check_page(tmp_path, least_to_most.NAME, rows, "least-to-most - few-shot CoT [95%]")


def test_instruction_tuning_tunes_each_rung_without_the_held_out_families(ladder, tmp_path) -> None:
    cfg = instruction_tuning.InstructionTuningConfig(
        seen=("addition",), n_per_family=3, sft_steps=2, n_train=64, device="cpu",
        out_dir=str(tmp_path), ladder=ladder,
    )  # fmt: skip
    assert not set(cfg.held_out) & set(cfg.tuned())
    rows = instruction_tuning.run_experiment(cfg)
    assert {r["group"] for r in rows} == {"held-out", "seen"} and len(rows) == 2 * 2 * 3
    record = json.loads(
        next(
            Path(ladder.sweep_dir, instruction_tuning.NAME).glob("rung=xs*/run/tinyworld.json")
        ).read_text()
    )
    assert not set(record["families"]) & set(cfg.held_out)
    check_page(
        tmp_path, instruction_tuning.NAME, rows, "after tuning, zero-shot - before, zero-shot [95%]"
    )


def test_prompt_search_scores_every_arm_on_the_test_pairs(ladder, tmp_path: Path) -> None:
    cfg = prompt_search.PromptSearchConfig(
        tasks=("reverse",), n_train=40, n_valid=4, n_test=5, candidates=2, keep=1,
        prompt_tokens=2, soft_steps=2, device="cpu", out_dir=str(tmp_path), ladder=ladder,
    )  # fmt: skip
    train = prompt_search.pairs("reverse", "train", 40, 0, 0)
    assert all(p.input.strip("'")[::-1] == p.output for p in train)
    [row] = prompt_search.run_experiment(cfg)
    assert row["instructions"]["hand-written"] == "Spell this word backwards:"
    assert all(0 <= row[arm][1] <= row[arm][0] <= row[arm][2] <= 1 for arm in prompt_search.ARMS)
    check_page(tmp_path, prompt_search.NAME, [row], "soft prompt %")


def test_the_suite_runs_every_part_on_one_ladder_and_writes_its_page(
    ladder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from genlab.recipes.experiments import prompting_all

    seen = []
    for module in prompting_all.SUITE:
        monkeypatch.setattr(
            module, "run_experiment", lambda cfg, command: seen.append((cfg, command)) or []
        )
    cfg = prompting_all.PromptingAllConfig(
        seed=3, device="cpu", out_dir=str(tmp_path), ladder=ladder
    )
    done = prompting_all.run_experiment(cfg, "genlab experiment prompting-all --seed 3")
    assert len(seen) == 6 and all(c.ladder is ladder and c.seed == 3 for c, _ in seen)
    assert all(c.out_dir == str(tmp_path) for c, _ in seen) and done["minutes"] >= 0
    page = (tmp_path / "prompting_all.md").read_text()
    assert "[icl_wrong_labels](icl_wrong_labels.md)" in page and "90 minutes" in page
