"""The demo over seeds: goal figures from per-item outcomes, the goal checks, the aggregation
over seeds' reports, the benchmarks page's section, and ``genlab demo --seeds 2`` end to end."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from genlab.cli import main
from genlab.core.errors import GenlabError
from genlab.recipes.chatgpt import aggregate, write_section
from genlab.recipes.chatgpt.evaluate import EvalSettings
from genlab.recipes.chatgpt.report import check_goals, goal_figures, goals_met
from genlab.recipes.chatgpt.seeds import MARKERS


def outcomes(sft_exact, exact, win, pairs, kl=(0.5,)) -> dict:
    """One seed's per-item outcomes: ``exact``, ``win`` and ``kl`` for PPO, DPO and best-of-n."""
    compared = {
        "exact_greedy": list(exact),
        "exact_sampled": list(exact),
        "win_vs_sft_sampled": list(win),
        "kl_to_sft": list(kl),
    }
    return {
        "models": {"sft": {"exact_greedy": list(sft_exact), "exact_sampled": list(sft_exact)}}
        | {name: compared for name in ("ppo", "dpo", "best_of_n")},
        "reward_pairs": list(pairs),
    }


def fake_report(seed: int, items: dict) -> dict:
    """A seed's report.json as run_chatgpt writes it, with only what aggregation reads."""
    figures = goal_figures([items])
    goals = check_goals(figures)
    sft = {"accuracy_by_family": {"sentiment": 0.9}, "perfect_share_sampled": 0.5}
    machine = {"device": "cpu", "cpu_count": 2, "torch_threads": 2, "load_average": [1.0] * 3}
    return {
        "preset": "smoke",
        "seed": seed,
        "total_seconds": 60.0,
        "machine_start": machine,
        "machine": machine,
        "config": {"out": f"runs/x/seed-{seed}"},
        "evaluation": {
            "split": "test",
            "prompts": len(items["models"]["sft"]["exact_greedy"]),
            "settings": asdict(EvalSettings()),
            "models": {"sft": sft},
            "outcomes": items,
        },
        "figures": {k: v.to_dict() for k, v in figures.items()},
        "goals": goals,
        "goals_met": goals_met(goals),
    }


def test_exact_may_fall_at_most_one_point_below_sft():
    sft = [1.0] * 85 + [0.0] * 15  # 85%
    for correct, met in ((85, True), (84, True), (83, False)):  # 0, -1, -2 points
        exact = [1.0] * correct + [0.0] * (100 - correct)
        figures = goal_figures([outcomes(sft, exact, [1.0] * 100, [1.0] * 10)])
        rows = {r["figure"]: r for r in check_goals(figures)}
        assert figures["ppo_exact_vs_sft"].mean == pytest.approx((correct - 85) / 100)
        assert rows["ppo_exact_vs_sft"]["met"] is met and goals_met(rows.values())["ppo"] is met
        assert rows["best_of_n_exact_vs_sft"]["met"] is None  # a baseline: no goal
    # over seeds, -2 and 0 points average to exactly -1 point: met
    two = [outcomes(sft, [1.0] * 83 + [0.0] * 17, [1.0] * 100, [1.0] * 10)]
    two.append(outcomes(sft, [1.0] * 85 + [0.0] * 15, [1.0] * 100, [1.0] * 10))
    assert goals_met(check_goals(goal_figures(two)))["ppo"] is True


def test_best_of_n_picks_are_compared_with_sfts_samples_not_its_greedy_answers():
    items = outcomes([1.0] * 10, [1.0] * 10, [0.5] * 10, [1.0] * 10)
    items["models"]["sft"]["exact_sampled"] = [1.0] * 5 + [0.0] * 5  # samples: 50%
    items["models"]["best_of_n"] = {**items["models"]["best_of_n"], "exact_sampled": [1.0] * 10}
    figures = goal_figures([items])
    assert figures["ppo_exact_vs_sft"].mean == 0.0  # greedy against greedy
    assert figures["best_of_n_exact_vs_sft"].mean == pytest.approx(0.5)  # samples against samples
    rows = {r["figure"]: r for r in check_goals(figures)}
    assert rows["best_of_n_exact_vs_sft"]["label"].startswith("best_of_n exact (sampled)")


def test_a_win_rate_needs_its_lower_bound_above_55_percent():
    sft, pairs = [1.0] * 10, [1.0] * 10
    few = goal_figures([outcomes(sft, sft, [1.0] * 7 + [0.0] * 3, pairs)])  # 70% of 10
    many = goal_figures([outcomes(sft, sft, [1.0] * 70 + [0.0] * 30, pairs)])  # 70% of 100
    assert few["ppo_win"].mean == many["ppo_win"].mean == pytest.approx(0.7)
    assert few["ppo_win"].low < 0.55 < many["ppo_win"].low
    assert goals_met(check_goals(few)) == {"sft": True, "reward": True, "ppo": False, "dpo": False}
    assert goals_met(check_goals(many))["ppo"] is True


def test_aggregate_of_two_seeds_gives_the_means_of_their_means_with_intervals():
    first = fake_report(0, outcomes([1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 0.5, 0], [1, 0], [0.2]))
    second = fake_report(1, outcomes([1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0.5], [1, 1, 1, 0]))
    agg = aggregate([first, second], command="genlab demo --seeds 2")
    expected = {
        "sft_exact": (0.75 + 1.0) / 2,
        "reward_accuracy": (0.5 + 0.75) / 2,
        "ppo_win": (0.625 + 0.875) / 2,
        "ppo_exact_vs_sft": (-0.25 + 0.0) / 2,
        "ppo_kl": (0.2 + 0.5) / 2,
    }
    for key, mean in expected.items():
        f = agg["figures"][key]
        assert f["mean"] == pytest.approx(mean) and f["low"] <= f["mean"] <= f["high"], key
    assert agg["figures"]["sft_exact"]["low"] < agg["figures"]["sft_exact"]["high"]
    assert agg["models"]["ppo"]["win_vs_sft_sampled"]["mean"] == pytest.approx(0.75)
    assert agg["seeds"] == [0, 1] and agg["sft"]["accuracy_by_family"] == {"sentiment": 0.9}
    assert [row["figures"]["sft_exact"] for row in agg["per_seed"]] == [0.75, 1.0]
    assert [row["figures"]["ppo_win"] for row in agg["per_seed"]] == [0.625, 0.875]
    assert json.loads(json.dumps(agg)) == agg  # report.json holds it as it is
    second["evaluation"]["settings"] = {**second["evaluation"]["settings"], "split": "validation"}
    with pytest.raises(GenlabError, match="like with like"):
        aggregate([first, second])


def test_the_section_between_the_markers_is_replaced_not_duplicated(tmp_path):
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nintro\n")
    write_section(page, "first table")
    with page.open("a") as f:
        f.write("\n## Later section\n")
    write_section(page, "second table\n")
    text = page.read_text()
    start, end = MARKERS
    assert text.count(start) == text.count(end) == 1
    assert "first table" not in text
    assert text == f"# Benchmarks\n\nintro\n\n{start}\nsecond table\n{end}\n\n## Later section\n"
    write_section(tmp_path / "new.md", "table")  # a page that does not exist yet
    assert (tmp_path / "new.md").read_text() == f"{start}\ntable\n{end}\n"
    page.write_text(f"{start}\nno end marker\n")
    with pytest.raises(GenlabError, match="without"):
        write_section(page, "table")


@pytest.mark.slow
def test_two_smoke_seeds_end_to_end_with_resume_and_a_benchmarks_section(tmp_path, capsys):
    out, page = tmp_path / "demo", tmp_path / "benchmarks.md"
    args = ["demo", "--preset", "smoke", "--out", str(out), "--seeds", "2", "--no-progress"]
    main([*args, "--seed", "3", "--benchmarks", str(page)])
    assert "ppo win rate vs SFT" in capsys.readouterr().out
    seeds = [json.loads((out / f"seed-{s}" / "report.json").read_text()) for s in (3, 4)]
    assert [r["seed"] for r in seeds] == [3, 4]
    assert seeds[0]["command"] == f"genlab demo --out {out / 'seed-3'} --preset smoke --seed 3"
    agg = json.loads((out / "report.json").read_text())
    assert agg["seeds"] == [3, 4] and agg["command"].endswith("--seed 3 --seeds 2")
    for key, f in agg["figures"].items():
        per_seed = [r["figures"][key]["mean"] for r in seeds]
        assert f["mean"] == pytest.approx(sum(per_seed) / 2), key
        assert f["low"] - 1e-12 <= f["mean"] <= f["high"] + 1e-12, key
    rows = {r["figure"]: r for r in agg["goals"]}
    assert set(agg["goals_met"]) == {"sft", "reward", "ppo", "dpo"}
    assert rows["ppo_win"]["target"] and rows["best_of_n_win"]["target"] is None
    md = (out / "report.md").read_text()
    assert "over 2 seeds" in md and "% [" in md and "pts [" in md and "[seed 4](seed-4/" in md
    assert "| best_of_n |" in md and md.count("\n| 3 |") == md.count("\n| 4 |") == 1

    kept = (out / "seed-3" / "report.json").stat().st_mtime_ns
    main([*args, "--seed", "3", "--resume", "--benchmarks", str(page)])
    assert (out / "seed-3" / "report.json").stat().st_mtime_ns == kept  # finished: kept
    text = page.read_text()
    assert text.count(MARKERS[0]) == 1 and text.count("### The ChatGPT demo over") == 1
    assert agg["command"] in text
