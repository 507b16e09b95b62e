"""TimeBudget: the steps that fit a training-time budget, renewed as the run goes, and what is
left of it after a resume."""

from __future__ import annotations

from genlab.core.callbacks import TimeBudget
from genlab.core.io import read_json


class StepClock:
    """A clock on which every optimizer step takes one second (``per_step`` after ``slow``)."""

    def __init__(self, per_step: float = 1.0) -> None:
        self.trainer = None
        self.per_step = per_step

    def __call__(self) -> float:
        return 0.0 if self.trainer is None else self.trainer.step * self.per_step


def budget_run(toy, run, seconds, clock, resume=False, until=None, max_steps=100):
    budget = TimeBudget(seconds=seconds, probe=10, clock=clock)
    trainer = toy.make_trainer(run, resume=resume, max_steps=max_steps, callbacks=[budget])
    clock.trainer = trainer
    trainer.fit(until=until)
    return trainer, budget


def test_budget_lowers_max_steps_to_what_fits(toy, tmp_path):
    # 1 s a step: the warm-up step, then 30 timed steps fill 30 s
    trainer, budget = budget_run(toy, tmp_path / "run", 30, StepClock())
    assert trainer.step == budget.steps == 31
    assert trainer.config.max_steps == 31  # the cosine decays over the budget
    state = read_json(tmp_path / "run" / "state.json")["callbacks"]["time_budget"]
    assert state == {"steps": 31, "spent": 30.0}


def test_a_slower_machine_gets_fewer_steps_and_max_steps_is_never_raised(toy, tmp_path):
    trainer, _ = budget_run(toy, tmp_path / "slow", 30, StepClock(per_step=2.0))
    assert trainer.step == 16  # 2 s a step: 15 timed steps
    trainer, budget = budget_run(toy, tmp_path / "big", 1000, StepClock(), max_steps=20)
    assert trainer.step == 20 and budget.steps == 20  # a budget larger than the run


def test_a_resumed_run_spends_what_is_left(toy, tmp_path):
    run = tmp_path / "run"
    budget_run(toy, run, 30, StepClock(), until=8)  # a checkpoint at step 8: 7 s spent
    trainer, budget = budget_run(toy, run, 30, StepClock(), resume=True)
    # 23 s left after a new warm-up step (9): steps 10..32
    assert budget.spent_before == 7.0
    assert trainer.step == budget.steps == 32
