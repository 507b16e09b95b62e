"""PPO's held-out monitor and guard: the gap rule on synthetic numbers; the logged scores are
those of the logged answers; a run gaming its reward is stopped, and says why."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from statistics import fmean

import pytest
import torch

from genlab.align.ppo import ppo
from genlab.align.ppo_config import PPOConfig
from genlab.align.ppo_monitor import BEST_FILE, Best, Guard
from genlab.core.errors import GenlabError
from genlab.core.io import load_tensors
from genlab.core.logging import read_metrics
from genlab.core.run import step_dir_name
from ppo_toy import HELDOUT, says_e, shuns_e, toy_settings

PROMPTS = [f"say yes {i}" for i in range(12)]
GUARD_KEYS = {
    "stopped",
    "iteration",
    "iterations",
    "reason",
    "kept_iteration",
    "best_gold_iteration",
    "best_gold",
    "max_kl",
    "max_gap",
}


def run(tmp_path, base, **kw) -> dict[str, float]:
    """The toy PPO run (see ``ppo_toy``), evaluated on held-out prompts every 2 iterations."""
    settings = {"rollout_size": 16, "eval_every": 2, **kw}
    cfg = PPOConfig(**toy_settings(str(base), str(tmp_path / "run"), **settings))
    return ppo(cfg, PROMPTS, reward_fn=says_e, heldout_prompts=HELDOUT, gold_fn=shuns_e)


def test_guard_rules_on_synthetic_numbers():
    guard = Guard(max_kl=8.0, max_gap=0.1)
    assert guard.check_kl(8.0, "rollout KL") is None
    assert guard.check_kl(9.06, "held-out KL") == "held-out KL 9.1 > max_kl 8"
    assert Guard(max_kl=0.0, max_gap=0.1).check_kl(50.0, "rollout KL") is None
    # (iteration, held-out reward, held-out gold): gold peaks at 10 and falls while reward rises
    evaluations = [
        (0, 0.0, 0.50),
        (5, 0.5, 0.70),
        (10, 0.9, 0.80),  # the best gold score
        (15, 1.2, 0.75),  # 0.05 below: within the gap
        (20, 0.7, 0.60),  # 0.2 below, but the reward fell too: not gaming
        (25, 0.9, 0.69),  # 0.11 below with the reward back at its value at the best: trip
        (30, 2.0, 0.10),
    ]
    tripped = [(it, guard.check_gap(it, r, g)) for it, r, g in evaluations]
    assert [it for it, reason in tripped if reason] == [25, 30]
    assert tripped[5][1] == (
        "held-out gold score 0.690 fell 0.110 > max_gap 0.1 below its best (0.800 at "
        "iteration 10) while the held-out reward went 0.900 -> 0.900"
    )
    assert guard.best == Best(10, 0.80, 0.9)
    off = Guard(max_kl=8.0, max_gap=0.0)
    assert not any(off.check_gap(it, r, g) for it, r, g in evaluations)
    assert off.best == Best(10, 0.80, 0.9)  # still tracked: guard.json names the peak


def test_monitor_logs_the_scores_of_its_answers(tmp_path, base):
    run(tmp_path / "a", base, iterations=4)
    folder = tmp_path / "a" / "run"
    evaluations = [r for r in read_metrics(folder) if "heldout_reward" in r]
    assert [r["iteration"] for r in evaluations] == [0, 2, 4]  # before any update, every 2
    answers = [json.loads(line) for line in (folder / "heldout.jsonl").open()]
    for record in evaluations:
        mine = [a for a in answers if a["iteration"] == record["iteration"]]
        prompts, responses = [a["prompt"] for a in mine], [a["response"] for a in mine]
        assert prompts == HELDOUT
        assert record["heldout_gold"] == fmean(shuns_e(prompts, responses))
        assert record["heldout_reward"] == fmean(says_e(prompts, responses))
        assert record["heldout_kl"] == pytest.approx(fmean(a["kl"] for a in mine), abs=1e-4)
    assert evaluations[0]["heldout_kl"] == 0.0  # the policy is the reference
    assert evaluations[-1]["heldout_kl"] > 1.0
    guard = json.loads((folder / "guard.json").read_text())
    assert guard.keys() == GUARD_KEYS
    assert guard["stopped"] is False and guard["reason"] is None and guard["iteration"] == 4
    golds = [r["heldout_gold"] for r in evaluations]
    assert guard["best_gold"] == max(golds)
    assert guard["best_gold_iteration"] == evaluations[golds.index(max(golds))]["iteration"]

    run(tmp_path / "off", base, iterations=2, eval_every=0)
    assert not any("heldout_reward" in r for r in read_metrics(tmp_path / "off" / "run"))
    assert not (tmp_path / "off" / "run" / "heldout.jsonl").exists()


@pytest.mark.parametrize("rule", ["max_kl", "max_gap"])
def test_guard_stops_a_run_that_games_its_reward(tmp_path, base, caplog, rule):
    settings = {"max_kl": 5.0} if rule == "max_kl" else {"max_gap": 0.1, "eval_every": 1}
    with caplog.at_level(logging.WARNING, logger="genlab.align.ppo_monitor"):
        metrics = run(tmp_path, base, iterations=12, **settings)
    folder = tmp_path / "run"
    guard = json.loads((folder / "guard.json").read_text())
    stop = guard["iteration"]
    assert guard["stopped"] is True and guard["kept_iteration"] == stop and 0 < stop < 12
    records = read_metrics(folder)
    steps = 4 * 16 // 8  # ppo_epochs x minibatches
    assert metrics["step"] == stop and records[-1]["step"] == stop * steps
    assert json.loads((folder / "state.json").read_text())["step"] == stop * steps
    assert f"PPO stopped at iteration {stop}: {guard['reason']}" in caplog.text
    rollouts = {r["iteration"]: r["kl"] for r in records if "reward" in r}
    evaluations = [r for r in records if "heldout_reward" in r]
    assert max(rollouts) == evaluations[-1]["iteration"] == stop  # evaluated at the stop
    # the rule trips first at the stop, on the logged numbers
    if rule == "max_kl":  # the rollout's KL at every iteration, the held-out one when evaluated
        tripped = [i for i, kl in rollouts.items() if kl > 5]
        tripped += [r["iteration"] for r in evaluations if r["heldout_kl"] > 5]
        assert min(tripped) == stop and guard["reason"].split()[1] == "KL"
    else:
        replay = Guard(max_kl=0.0, max_gap=0.1)
        tripped = [
            r["iteration"]
            for r in evaluations
            if replay.check_gap(r["iteration"], r["heldout_reward"], r["heldout_gold"])
        ]
        assert tripped == [stop] and guard["reason"].startswith("held-out gold score")
        assert guard["best_gold_iteration"] < stop


KEEP = dict(iterations=6, eval_every=1, checkpoint_every=1, keep_last=10, keep="best")


def peaks_at(iteration: int):
    """A planted gold score: its held-out evaluation number ``iteration`` (0 before any update)
    is the best, the others fall away from it."""
    calls = []

    def gold(prompts, responses):
        calls.append(1)
        return [-abs(len(calls) - 1 - iteration)] * len(responses)

    return gold


def test_the_run_ends_with_the_weights_of_its_best_heldout_score(tmp_path, base):
    def run_keeping(keep):
        cfg = PPOConfig(**toy_settings(str(base), str(tmp_path / keep), rollout_size=16, **KEEP))
        cfg = replace(cfg, keep=keep)
        ppo(cfg, PROMPTS, reward_fn=says_e, heldout_prompts=HELDOUT, gold_fn=peaks_at(3))
        guard = json.loads((tmp_path / keep / "guard.json").read_text())
        return guard, load_tensors(tmp_path / keep / "model.safetensors")

    guard, final = run_keeping("best")
    assert guard["best_gold_iteration"] == guard["kept_iteration"] == 3 and guard["iteration"] == 6
    at_3 = tmp_path / "best" / "checkpoints" / step_dir_name(3 * 8) / "model.safetensors"
    assert_same(final, load_tensors(at_3))  # 8 steps an iteration: 4 epochs x 2 minibatches
    assert_same(load_tensors(tmp_path / "best" / BEST_FILE), final)
    guard, last = run_keeping("last")  # the same run, keeping its last policy
    assert guard["kept_iteration"] == 6
    assert_same(
        last,
        load_tensors(
            tmp_path / "last" / "checkpoints" / step_dir_name(6 * 8) / "model.safetensors"
        ),
    )
    assert not torch.equal(last["policy.wte.weight"], final["policy.wte.weight"])


def test_a_resumed_run_ends_with_its_best_heldout_weights(tmp_path, base):
    """The toy policy games its reward, so its best gold score is the starting policy's; a run
    interrupted after that evaluation, then resumed, ends with the same weights."""
    run(tmp_path / "a", base, **KEEP)
    folder = tmp_path / "a" / "run"
    guard = json.loads((folder / "guard.json").read_text())
    golds = [r["heldout_gold"] for r in read_metrics(folder) if "heldout_gold" in r]
    assert guard["kept_iteration"] == golds.index(max(golds)) == 0
    final = load_tensors(folder / "model.safetensors")
    start = load_tensors(base / "model.safetensors")
    assert all(torch.equal(final[f"policy.{k}"], v) for k, v in start.items())

    calls = []

    def interrupted(prompts, responses):  # stops the run in iteration 5's rollout
        calls.append(1)
        if len(calls) == 10:  # after 5 evaluations (0-4) and 4 rollouts
            raise KeyboardInterrupt
        return says_e(prompts, responses)

    cfg = PPOConfig(**toy_settings(str(base), str(tmp_path / "b" / "run"), rollout_size=16))
    cfg = replace(cfg, **KEEP)
    with pytest.raises(KeyboardInterrupt):
        ppo(cfg, PROMPTS, reward_fn=interrupted, heldout_prompts=HELDOUT, gold_fn=shuns_e)
    ppo(cfg, PROMPTS, resume=True, reward_fn=says_e, heldout_prompts=HELDOUT, gold_fn=shuns_e)
    resumed = tmp_path / "b" / "run"
    assert_same(load_tensors(resumed / "model.safetensors"), final)
    assert (resumed / "guard.json").read_text() == (folder / "guard.json").read_text()

    (resumed / BEST_FILE).unlink()  # as in a run from before keep=best, extended
    with pytest.raises(GenlabError, match="resume with keep=last"):
        more = replace(cfg, iterations=8)
        ppo(more, PROMPTS, resume=True, reward_fn=says_e, heldout_prompts=HELDOUT, gold_fn=shuns_e)


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
