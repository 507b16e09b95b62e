"""``genlab experiment ar-vs-nar`` at toy size: every row is measured (the hybrid's included),
BLEU has its bootstrap interval and its paired difference to AR greedy, and the page, its JSON
and its figure are written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genlab.core.errors import GenlabError
from genlab.recipes.experiments.ar_vs_nar import (
    NAME,
    ARvsNARConfig,
    best_length_beam,
    run_experiment,
)
from references import require

require("sacrebleu")
pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_toy_run_writes_every_row(tmp_path: Path) -> None:
    cfg = ARvsNARConfig(
        task="cipher_to",
        n_train=200,
        n_test=12,
        n_latency=3,
        max_steps=4,
        batch_size=16,
        n_layer=1,
        n_embd=16,
        n_head=2,
        iterations=(1, 2),
        ar_pos="learned",  # at 4 steps the rotary GPT writes nothing a CMLM could learn from
        length_beam=(1, 2),
        n_valid=8,
        hybrid_prefix=(1,),
        n_resamples=20,
        device="cpu",
        out_dir=str(tmp_path / "docs"),
        sweep_dir=str(tmp_path / "runs"),
    )
    rows = run_experiment(cfg, "genlab experiment ar-vs-nar --n-train 200")
    labels = [r["decoding"] for r in rows]
    assert labels[:2] == ["AR greedy", "AR beam 4"]
    assert sum("distillation" in label for label in labels) == 2
    assert labels[-1] == "hybrid: AR writes 1 word, mask-predict 4 fills in"
    assert "gap" not in rows[0] and all("gap" in r for r in rows[1:])
    assert all(r["bleu_low"] <= r["bleu"] <= r["bleu_high"] for r in rows)
    page = (tmp_path / "docs" / f"{NAME}.md").read_text()
    assert "BLEU - AR greedy [95%]" in page and "machine load" in page and "hybrid" in page
    saved = json.loads((tmp_path / "docs" / f"{NAME}.json").read_text())
    assert len(saved["rows"]) == len(rows) and "hypotheses" not in saved["rows"][0]
    # each CMLM run's length candidates were weighed on validation, and its rows use the best
    chosen = saved["length_beam_valid_bleu"]
    assert set(chosen) == {"cmlm", "cmlm-kd"} and all(set(b) == {"1", "2"} for b in chosen.values())
    for run, bleus in chosen.items():
        best = best_length_beam({int(k): v for k, v in bleus.items()})
        assert {r["length_beam"] for r in rows if r["run"] == run} == {best}
    assert "validation sentences" in page
    assert (tmp_path / "docs" / f"{NAME}.png").stat().st_size > 1000


def test_the_ar_position_encoding_is_checked() -> None:
    ARvsNARConfig(ar_pos="rope").validate()
    with pytest.raises(GenlabError, match="ar_pos='alibi'"):
        ARvsNARConfig(ar_pos="alibi").validate()


def test_the_fewest_length_candidates_win_a_tie() -> None:
    assert best_length_beam({1: 90.0, 3: 95.0, 5: 95.0}) == 3
    assert best_length_beam({5: 99.0, 1: 99.0}) == 1
    assert best_length_beam({1: 80.0, 3: 70.0}) == 1
