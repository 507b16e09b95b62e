"""TimeBudget: the steps that fit a training-time budget, decided once and kept on resume."""

from __future__ import annotations

import itertools

from genlab.core.callbacks import TimeBudget
from genlab.core.io import read_json


class FakeClock:
    """The budget's clock: its two readings (after the first step, after the probe) are 10 s
    apart, i.e. 1 s per step over 10 probe steps (or 2 s over 5)."""

    def __init__(self) -> None:
        self.now = itertools.count(0.0, 10.0)

    def __call__(self) -> float:
        return next(self.now)


def test_budget_lowers_max_steps_to_what_fits(toy, tmp_path):
    # the two readings are 10 s apart over 10 probe steps: 1 s per step; 30 s fit 30 steps
    budget = TimeBudget(seconds=30, probe=10, clock=FakeClock())
    trainer = toy.make_trainer(tmp_path / "run", max_steps=100, callbacks=[budget])
    trainer.fit()
    assert budget.steps == 30
    assert trainer.step == 30
    assert trainer.config.max_steps == 30  # the cosine decays over the budget
    assert read_json(tmp_path / "run" / "state.json")["callbacks"]["time_budget"] == {"steps": 30}


def test_budget_never_raises_max_steps_and_resume_keeps_the_decision(toy, tmp_path):
    run = tmp_path / "run"
    first = toy.make_trainer(
        run, max_steps=20, callbacks=[TimeBudget(seconds=1000, probe=5, clock=FakeClock())]
    )
    first.fit()
    assert first.step == 20  # a budget larger than the run changes nothing

    budget = TimeBudget(seconds=30, probe=5, clock=FakeClock())  # 2 s a step: 15 of 100
    toy.make_trainer(run / "b", max_steps=100, callbacks=[budget]).fit(until=8)
    resumed = TimeBudget(seconds=30, probe=5, clock=FakeClock())
    again = toy.make_trainer(run / "b", resume=True, max_steps=100, callbacks=[resumed])
    again.fit()
    assert resumed.steps == budget.steps == 15
    assert again.step == 15
