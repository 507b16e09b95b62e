"""The unlearning experiment at toy size (a tiny fact model in a temporary folder), end to end
into a folder; and its pieces: the choice on validation, the forget sets' draw, the attack's
interval and the settings it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genlab.core.errors import GenlabError
from genlab.recipes.experiments.unlearning import (
    NAME,
    UnlearningConfig,
    auc_interval,
    choose,
    draw_sets,
    grid,
    run_experiment,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_toy_run_writes_page_json_and_figure_with_values_in_range(tmp_path: Path) -> None:
    cfg = UnlearningConfig(
        preset="toy", val_sets=2, test_sets=1, lrs=(3e-3,), retain_weights=(1.0,), betas=(1.0,),
        layer_sets=("all", "mlp"),
        max_steps=20, eval_every=10, device="cpu", out_dir=str(tmp_path / "out"),
    )  # fmt: skip
    record = run_experiment(cfg, "genlab experiment unlearning --preset toy")
    out = tmp_path / "out"
    assert json.loads((out / f"{NAME}.json").read_text())["chosen"] == record["chosen"]
    assert (out / f"{NAME}.png").stat().st_size > 10_000
    page = (out / f"{NAME}.md").read_text()
    for phrase in (
        "forget acc",
        "attack AUC",
        "chosen on validation",
        "machine load",
        "## Command",
    ):
        assert phrase in page
    assert not Path(record["fact_model"]["path"]).exists()  # the toy model's folder is gone

    people = [*record["validation_sets"], *record["test_sets"]]
    assert [len(s) for s in people] == [2, 2, 2]
    assert len({p for s in people for p in s}) == 6  # disjoint
    assert list(record["test"]) == ["original", "ga", "graddiff", "npo"]
    for method in cfg.methods:
        points = record["validation"][method]
        assert len(points) == 2 * 2  # all layers and the MLPs, measured at steps 10 and 20
        assert record["chosen"][method] in points
    original = record["test"]["original"]
    assert original["retain_change"] == [0.0, 0.0, 0.0]
    for name, row in record["test"].items():
        for key in ("forget", "retain", "world", "holdout", "auc"):
            low, high = row[key][1:]
            assert 0.0 <= low <= row[key][0] <= high <= 1.0, (name, key)
        assert len(row["per_set"]) == 1
        assert row["forget"][0] == pytest.approx(np.mean([s["forget"] for s in row["per_set"]]))
    # gradient ascent on the forget answers raises their loss, whatever it costs elsewhere
    assert record["test"]["ga"]["forget_nll"] > original["forget_nll"] + 0.5
    assert set(record["goals"]["npo"]) == {"forget_at_chance", "retain_kept", "auc_near_half"}


def point(step: int, forget: float, retain: float, auc: float = 0.5) -> dict:
    return {"step": step, "forget": forget, "retain": retain, "auc": auc}


def test_choice_meets_the_goals_in_order() -> None:
    points = [point(10, 0.3, 0.99), point(20, 0.1, 0.97, auc=0.3), point(30, 0.1, 0.96, auc=0.45),
              point(40, 0.0, 0.99, auc=0.2), point(50, 0.05, 0.80)]  # fmt: skip
    # at chance and retain kept: the AUC nearest 0.5, though another keeps more retain
    assert choose(points, chance=0.1, retain_floor=0.96) == points[2]
    # none keeps retain at chance: the best retain at chance
    assert choose(points[:3] + points[4:], chance=0.1, retain_floor=0.98) == points[1]
    # none at chance: the lowest forget accuracy
    assert choose(points[:3], chance=0.01, retain_floor=0.9) == points[1]
    tie = [point(30, 0.1, 0.9), point(10, 0.1, 0.9)]
    assert choose(tie, chance=0.1, retain_floor=0.5)["step"] == 10  # then the fewer steps


def test_grid_spans_only_the_settings_each_method_uses() -> None:
    cfg = UnlearningConfig(
        lrs=(1e-4, 1e-3), retain_weights=(1.0, 4.0), betas=(0.5, 1.0), layer_sets=("all", "mlp")
    )
    assert len(grid(cfg, "ga")) == 2 * 2 and {s["retain_weight"] for s in grid(cfg, "ga")} == {0}
    assert len(grid(cfg, "graddiff")) == 2 * 2 * 2
    assert {s["beta"] for s in grid(cfg, "graddiff")} == {1.0}
    assert len(grid(cfg, "npo")) == 2 * 2 * 2 * 2


class Toy:
    trained = [f"p{i}" for i in range(7)]


def test_forget_sets_are_disjoint_seeded_and_leave_someone_to_retain() -> None:
    cfg = UnlearningConfig(forget_size=2, val_sets=1, test_sets=2)
    sets = draw_sets(Toy(), cfg)  # type: ignore[arg-type]
    assert len(sets) == 3 and len({p for s in sets for p in s}) == 6
    assert sets == draw_sets(Toy(), cfg)  # type: ignore[arg-type]
    other = draw_sets(Toy(), UnlearningConfig(forget_size=2, val_sets=1, test_sets=2, seed=1))  # type: ignore[arg-type]
    assert other != sets
    with pytest.raises(GenlabError, match="need 8 trained people and one more to retain"):
        draw_sets(Toy(), UnlearningConfig(forget_size=2, val_sets=1, test_sets=3))  # type: ignore[arg-type]


def test_auc_interval_of_separated_and_identical_losses() -> None:
    members, others = np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 3.0, 4.0])
    assert auc_interval([(members, others)], seed=0) == [1.0, 1.0, 1.0]  # lower loss: member
    assert auc_interval([(others, members)], seed=0) == [0.0, 0.0, 0.0]
    same = np.ones(5)
    mean, low, high = auc_interval([(members, others), (same, same)], seed=0)
    assert mean == 0.75 and low == high == 0.75  # ties count one half; the mean over sets
    rng = np.random.default_rng(0)
    mean, low, high = auc_interval([(rng.normal(size=200), rng.normal(size=200))], seed=0)
    assert low < 0.5 < high and high - low < 0.25


@pytest.mark.parametrize(
    "change, says",
    [({"preset": "huge"}, "preset='huge'"), ({"model": " "}, "model"),
     ({"methods": ("ga", "dpo")}, "methods"),
     ({"lrs": ()}, "lrs"), ({"eval_every": 200}, "eval_every"), ({"test_sets": 0}, "test_sets"),
     ({"betas": (0.0,)}, "betas")],
)  # fmt: skip
def test_bad_settings_are_one_line_errors(change: dict, says: str) -> None:
    with pytest.raises(GenlabError, match=f"invalid unlearning setting {says}"):
        UnlearningConfig(**change)
