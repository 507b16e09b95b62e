"""``genlab experiment editing`` end to end on the tiny fact model, few edits."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from genlab.recipes.experiments import editing
from genlab.recipes.fact_model import FactModelConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_editing_experiment_writes_its_page(
    tiny_fact_model: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(
        editing,
        "GRID",
        {"rome": [{"weight_decay": 0.01}], "ft": [{"lr": 5e-3}], "ft-l": [{"ft_linf": 5e-3}]},
    )
    cfg = editing.EditingConfig(
        edits=4,
        val_edits=2,
        layer_edits=2,
        trace_facts=3,
        trace_samples=2,
        out_dir=str(tmp_path),
        fact_model=replace(FactModelConfig(), out=str(tiny_fact_model)),
    )
    report = editing.run_experiment(cfg, command="genlab experiment editing")
    assert report["layer"] == 0  # two layers: only the first MLP can carry the subject on
    assert report["edits"] == 4
    for method in editing.METHODS:
        for key in ("efficacy", "paraphrase", "specificity"):
            assert 0.0 <= report["results"][method][key]["mean"] <= 1.0
    assert report["results"]["rome"]["efficacy"]["mean"] >= 0.75
    assert 0.0 <= report["rome_question_only"]["paraphrase"]["mean"] <= 1.0
    page = (tmp_path / "editing.md").read_text()
    assert "ROME" in page and "FT+L" in page and "genlab experiment editing" in page
    assert "ROME, edit question only" in page
    assert json.loads((tmp_path / "editing.json").read_text())["chosen"]["rome"] == {
        "weight_decay": 0.01
    }
    assert (tmp_path / "editing.png").stat().st_size > 10_000
