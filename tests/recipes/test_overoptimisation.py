"""The over-optimisation figure and sentence, from PPO run folders written by hand."""

from __future__ import annotations

import json

import pytest

from genlab.core.errors import GenlabError
from genlab.recipes.chatgpt.overoptimisation import describe_stop, plot_overoptimisation

pytestmark = pytest.mark.usefixtures("one_thread")


def guard_record(stopped, iteration, reason=None, best=(None, None), kept=None):
    """A ``guard.json`` with the monitor's keys (tests/align/test_ppo_monitor.py checks them);
    ``kept`` None: the last iteration's policy."""
    return {
        "stopped": stopped,
        "iteration": iteration,
        "iterations": 60,
        "reason": reason,
        "kept_iteration": iteration if kept is None else kept,
        "best_gold_iteration": best[0],
        "best_gold": best[1],
        "max_kl": 8.0,
        "max_gap": 0.1,
    }


def write(tmp_path, evaluations, guard, gold=True):
    """A PPO folder holding rollout records, held-out evaluations (iteration, reward, gold, KL)
    and a guard record, as the monitor writes them."""
    folder = tmp_path / "ppo"
    folder.mkdir(parents=True)
    lines = []
    for it, reward, gold_score, kl in evaluations:
        record = {"step": it * 4, "iteration": it, "heldout_reward": reward, "heldout_kl": kl}
        if gold:
            record["heldout_gold"] = gold_score
        lines += [{"step": it * 4, "iteration": it, "reward": reward, "kl": kl}, record]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (folder / "guard.json").write_text(json.dumps(guard))
    return folder


# (iteration, reward model score, judge score, KL): the judge peaks at 35 as the reward climbs
RAN_ALL = [
    (i, 0.1 * i, 0.5 + 0.4 * min(i, 35) / 35 - 0.004 * max(i - 35, 0), i / 15)
    for i in range(0, 61, 5)
]


def test_a_run_that_ran_all_its_iterations(tmp_path):
    guard = guard_record(False, 60, best=(35, 0.9))
    folder = write(tmp_path, RAN_ALL, guard)
    assert describe_stop(folder) == (
        "Ran all 60 iterations; the held-out judge score peaked at iteration 35 (0.900) and was "
        "0.800 at the end, at a held-out KL of 4.0 nats."
    )
    plot_overoptimisation(folder, tmp_path / "plots" / "overoptimisation.png")
    assert (tmp_path / "plots" / "overoptimisation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (folder / "guard.json").write_text(json.dumps(guard_record(False, 60, best=(35, 0.9), kept=35)))
    assert describe_stop(folder).endswith(
        "at a held-out KL of 4.0 nats; the policy kept is iteration 35's, the best held-out "
        "judge score."
    )


def test_a_run_the_guard_stopped(tmp_path):
    evaluations = [
        (0, 0.0, 0.5, 0.0),
        (5, 0.4, 0.7, 2.0),
        (10, 0.9, 0.65, 5.0),
        (12, 1.1, 0.6, 9.1),
    ]
    reason = "held-out KL 9.1 > max_kl 8"
    folder = write(tmp_path, evaluations, guard_record(True, 12, reason, best=(5, 0.7)))
    assert describe_stop(folder) == (
        "Stopped at iteration 12 of 60: held-out KL 9.1 > max_kl 8; the held-out judge score "
        "peaked at iteration 5 (0.700) and was 0.600 at the stop, at a held-out KL of 9.1 nats; "
        "the policy kept is iteration 12's."
    )
    plot_overoptimisation(folder, tmp_path / "stop.png")
    assert (tmp_path / "stop.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for kept, end in [
        (5, "the policy kept is iteration 5's, the best held-out judge score."),
        (0, "the policy kept is the starting one (no iteration beat it on held-out prompts)."),
    ]:
        guard = guard_record(True, 12, reason, best=(kept, 0.7), kept=kept)
        (folder / "guard.json").write_text(json.dumps(guard))
        assert describe_stop(folder).endswith("at a held-out KL of 9.1 nats; " + end)


def test_a_run_without_gold_or_evaluations(tmp_path):
    evaluations = [(0, 0.0, None, 0.0), (60, 2.0, None, 4.12)]
    folder = write(tmp_path / "a", evaluations, guard_record(False, 60), gold=False)
    assert (
        describe_stop(folder) == "Ran all 60 iterations; the held-out KL was 4.1 nats at the end."
    )
    plot_overoptimisation(folder, tmp_path / "a.png")  # the reward model's score alone
    assert (tmp_path / "a.png").is_file()
    empty = write(tmp_path / "b", [], guard_record(False, 60))
    assert describe_stop(empty) == "Ran all 60 iterations."
    with pytest.raises(GenlabError, match="no held-out evaluations"):
        plot_overoptimisation(empty, tmp_path / "b.png")
