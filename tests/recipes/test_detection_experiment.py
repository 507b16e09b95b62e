"""The detection experiment at toy size (a ladder rung trained for a few steps), end to end into
a folder; and its helpers: the seeded token-replacement attack, the held-out text windows and the
choice of delta."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genlab.core.errors import GenlabError
from genlab.recipes.experiments.detection import (
    NAME,
    DetectionConfig,
    choose,
    human_windows,
    replace_tokens,
    run_experiment,
)
from genlab.recipes.experiments.ladder import LadderConfig, ladder_runs

pytestmark = pytest.mark.usefixtures("one_thread")


def test_toy_run_writes_page_json_and_figure_with_values_in_range(tmp_path: Path) -> None:
    cfg = DetectionConfig(
        preset="toy", n_texts=30, gammas=(0.25,), deltas=(0.5, 4.0), entropies=(0.0,), keys=2,
        temperatures=(0.7,), families=("sentiment", "yes_no_fact"), n_questions=6,
        answer_tokens=8, device="cpu", sweep_dir=str(tmp_path / "sweep"),
        out_dir=str(tmp_path / "out"),
    )  # fmt: skip
    record = run_experiment(cfg, "genlab experiment detection --preset toy")
    out = tmp_path / "out"
    assert json.loads((out / f"{NAME}.json").read_text())["chosen"] == record["chosen"]
    assert (out / f"{NAME}.png").stat().st_size > 10_000
    page = (out / f"{NAME}.md").read_text()
    for phrase in (
        "TPR at 1% FPR",
        "judge drop, 2 keys",
        "10% replaced",
        "machine load",
        "## Command",
    ):
        assert phrase in page
    assert record["model"]["rung"] == "xs" and record["model"]["steps"] == 20

    grid = record["validation"]
    assert [(c["gamma"], c["delta"]) for c in grid] == [(0.25, 0.5), (0.25, 4.0)]
    assert set(record["test"]) == {"key", "keys"}
    for c in [*grid, *record["test"].values()]:
        assert 0.0 <= c["tpr_theory"][1] <= c["tpr_theory"][0] <= c["tpr_theory"][2] <= 1.0
        assert 0.0 <= c["tpr"][1] <= c["tpr"][2] <= 1.0 and 0.0 <= c["tpr"][0] <= 1.0
        for drop in ("drop", "drop_keys"):
            assert -1.0 <= c[drop][1] <= c[drop][0] <= c[drop][2] <= 1.0
        assert len(c["drop_per_key"]) == 2 and c["drop_per_key"][0] == pytest.approx(c["drop"][0])
        assert 0.0 <= c["first_word_changed"] <= c["answers_changed"] <= 1.0
    # the z-test: human text near 0 whatever the model; a strong bias pushes green far above gamma
    human, marked = record["z"]["human"], record["z"]["watermarked"]
    assert len(human) == len(marked) == cfg.n_texts
    assert abs(sum(human) / len(human)) < 1.0
    assert grid[1]["z_mean"] > 4.0 and grid[1]["green_share"] > 0.6 > grid[0]["green_share"]
    assert [t["temperature"] for t in record["by_temperature"]] == [1.0, 0.7]
    names = [d["detector"] for d in record["detectors"]]
    assert len(names) == 4 and names[0].startswith("watermark")
    for d in record["detectors"]:
        for key in ("auroc", "tpr", "tpr_replaced_0.1", "tpr_replaced_0.3"):
            low, high = d[key][1:]
            assert 0.0 <= low <= high <= 1.0 and 0.0 <= d[key][0] <= 1.0


def test_replacement_is_seeded_and_replaces_exactly_the_share() -> None:
    texts = [list(range(50)), [7] * 10, [3]]
    vocab = list(range(100))
    once = replace_tokens(texts, 0.3, vocab, seed=1)
    assert once == replace_tokens(texts, 0.3, vocab, seed=1)
    assert once != replace_tokens(texts, 0.3, vocab, seed=2)
    changed = [
        sum(a != b for a, b in zip(t, e, strict=True)) for t, e in zip(texts, once, strict=True)
    ]
    assert changed == [15, 3, 0]  # round(0.3 * n), every chosen token truly changed
    assert all(0 <= i < 100 for e in once for i in e)
    assert replace_tokens(texts, 0.0, vocab, seed=1) == texts
    assert [sum(a != b for a, b in zip(t, e, strict=True)) for t, e in zip(
        texts, replace_tokens(texts, 1.0, vocab, seed=1), strict=True)] == [50, 10, 1]  # fmt: skip
    assert texts[1] == [7] * 10  # the input is left as it was
    with pytest.raises(GenlabError, match="share of tokens replaced"):
        replace_tokens(texts, 1.5, vocab, seed=1)
    with pytest.raises(GenlabError, match="at least two tokens"):
        replace_tokens(texts, 0.1, [7, 7], seed=1)


class CharTokenizer:
    """A token per character; id 0 is <|bos|>."""

    bos_id = 0

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]


def test_windows_open_a_long_enough_document_and_run_on_into_the_next() -> None:
    docs = ["abcdef", "xy", "ghij", "klmnopqr", "st", "uvwxyzab"]
    got = human_windows(iter(docs), CharTokenizer(), 3, prefix=3, length=5)
    ids = CharTokenizer().encode
    assert got == [
        ids("abcdef") + [0, ord("x")],  # "xy" continues the open window after <|bos|>
        ids("ghij") + [0] + ids("klm"),  # the rest of "klmnopqr" is spent: windows are disjoint
        ids("uvwxyzab"),  # "st" is shorter than the prefix: it cannot open a window
    ]
    with pytest.raises(GenlabError, match="gave 2 windows of the 3"):
        human_windows(iter(docs[:5]), CharTokenizer(), 3, prefix=3, length=5)


def cell(gamma: float, delta: float, tpr: float, drop: float, drop_keys: float = 0.0) -> dict:
    return {"gamma": gamma, "delta": delta, "entropy": 0.0, "tpr": [tpr, 0, 1],
            "drop": [drop, 0, 1], "drop_keys": [drop_keys, 0, 1]}  # fmt: skip


def test_delta_is_the_best_rate_within_the_drop_bound_and_the_smallest_among_equals() -> None:
    grid = [cell(0.25, 1, 0.6, 0.0), cell(0.25, 2, 0.97, 0.01, 0.5), cell(0.25, 3, 0.97, 0.015),
            cell(0.25, 4, 1.0, 0.05, 0.05), cell(0.5, 2, 0.97, 0.0)]  # fmt: skip
    picked = choose(grid, 0.02, "drop")
    assert (picked["gamma"], picked["delta"]) == (0.25, 2)
    assert choose(grid, 0.1, "drop")["delta"] == 4  # a looser bound admits the stronger bias
    picked = choose(grid, 0.02, "drop_keys")  # the same rule on the drop over keys
    assert (picked["gamma"], picked["delta"]) == (0.5, 2)
    assert choose([cell(0.25, 2, 1.0, 0.3), cell(0.25, 1, 0.5, 0.1)], 0.02, "drop")["delta"] == 1


@pytest.mark.parametrize(
    "change, says",
    [({"preset": "huge"}, "preset='huge'"), ({"families": ("nope",)}, "families"),
     ({"gammas": (1.0,)}, "gammas"), ({"shares": (0.1, 2.0)}, "shares")],
)  # fmt: skip
def test_bad_settings_are_one_line_errors(change: dict, says: str) -> None:
    with pytest.raises(GenlabError, match=f"invalid detection setting {says}"):
        DetectionConfig(**change)


def test_the_ladder_trains_only_the_rungs_asked_and_refuses_unknown_ones(tmp_path: Path) -> None:
    with pytest.raises(GenlabError, match="unknown ladder rung 'huge'"):
        ladder_runs(LadderConfig(sweep_dir=str(tmp_path)), ["m", "huge"])
    assert not (tmp_path / "ladder").exists()  # refused before anything was written
