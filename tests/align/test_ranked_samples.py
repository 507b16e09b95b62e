"""Ranked samples: every comparison is two of the model's own answers to one prompt, the
labeller's better one chosen (unless flipped as label noise), ties and duplicates dropped."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from genlab.align.ranked_samples import ranked_comparisons, ranked_pairs
from genlab.core.errors import GenlabError
from genlab.data.record_sources import ComparisonData
from genlab.data.tinyworld import World, make_examples
from genlab.methods.autoregressive.checkpoint import save_gpt
from genlab.recipes import stages

PROMPTS = ["hello there", [{"role": "user", "content": "what is two plus two?"}], "the answer"]


class Labeller:
    """A fake labeller: the score is a fixed function of the answer's text; remembers calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, str, float]] = []

    def __call__(self, prompts, answers):
        scores = [float(sum(map(ord, a)) % 7) for a in answers]
        self.calls += list(zip(prompts, answers, scores, strict=True))
        return scores


def test_pairs_are_every_strictly_ordered_pair_of_distinct_answers():
    pairs = ranked_pairs("p", ["a", "b", "a", "c", "d"], [1.0, 3.0, 1.0, 2.0, 3.0])
    got = {(r["chosen"], r["rejected"]) for r in pairs}
    # b and d tie (no pair), "a" sampled twice is one candidate
    assert got == {("b", "c"), ("b", "a"), ("d", "c"), ("d", "a"), ("c", "a")}
    assert len(pairs) == len(got) and all(r["prompt"] == "p" for r in pairs)
    assert ranked_pairs("p", ["x", "y"], [0.5, 0.5]) == []


@pytest.mark.parametrize("batch_size", [64, 4])  # one generate call, or one prompt at a time
def test_comparisons_rank_the_models_own_samples(tok, make_gpt, batch_size):
    labeller = Labeller()
    k = 4
    pairs = ranked_comparisons(
        make_gpt(), tok, PROMPTS, labeller, k, max_new_tokens=8, batch_size=batch_size
    )
    assert len(labeller.calls) == len(PROMPTS) * k  # every sample labelled once
    score = {(str(p), a): s for p, a, s in labeller.calls}
    expected = 0
    for i, prompt in enumerate(PROMPTS):
        group = labeller.calls[i * k : (i + 1) * k]
        assert all(p == prompt for p, _, _ in group)
        distinct = {a: s for _, a, s in group}
        expected += sum(1 for a in distinct for b in distinct if distinct[a] > distinct[b])
    assert len(pairs) == expected > 0
    for r in pairs:
        assert score[(str(r["prompt"]), r["chosen"])] > score[(str(r["prompt"]), r["rejected"])]
    again = ranked_comparisons(
        make_gpt(), tok, PROMPTS, Labeller(), k, max_new_tokens=8, batch_size=batch_size
    )
    assert again == pairs  # the same seed gives the same records


def test_noise_flips_about_its_fraction_and_bad_settings_are_refused(tok, make_gpt):
    labeller = Labeller()
    prompts = [f"question {i}" for i in range(40)]
    pairs = ranked_comparisons(
        make_gpt(), tok, prompts, labeller, 4, noise=0.3, max_new_tokens=8, seed=3
    )
    score = {(p, a): s for p, a, s in labeller.calls}
    flipped = sum(
        score[(r["prompt"], r["chosen"])] < score[(r["prompt"], r["rejected"])] for r in pairs
    )
    assert len(pairs) > 100
    assert 0.2 < flipped / len(pairs) < 0.4
    with pytest.raises(GenlabError, match="k >= 2"):
        ranked_comparisons(make_gpt(), tok, prompts, labeller, 1)
    with pytest.raises(GenlabError, match="label noise"):
        ranked_comparisons(make_gpt(), tok, prompts, labeller, 4, noise=0.5)


def test_tinyworld_ranks_train_prompts_with_its_judge_and_a_users_file_is_refused(tmp_path):
    run = tmp_path / "sft"
    run.mkdir()
    (run / "tinyworld.json").write_text(json.dumps({"world_seed": 0, "families": ["max_list"]}))
    prompts, judge = ComparisonData(ranked_per_family=6).ranking(str(run), seed=0)
    examples = make_examples(World(0), "max_list", 6, "train", 0)
    assert prompts == [e.prompt for e in examples]
    right = judge(prompts, [f"The answer is {e.answer}." for e in examples])
    wrong = judge(prompts, [f"The answer is {int(e.answer) + 1}." for e in examples])
    hedged = judge(prompts, [f"{e.answer} or {int(e.answer) + 1}" for e in examples])
    assert right == [1.0] * 6 and all(w < r for w, r in zip(wrong, right, strict=True))
    assert hedged == [0.0] * 6
    with pytest.raises(GenlabError, match="ranked_per_family needs TinyWorld's judge"):
        ComparisonData(data=str(tmp_path / "pairs.jsonl"), ranked_per_family=6).ranking(
            str(run), seed=0
        )


def test_held_out_ranking_reads_a_tenth_of_the_validation_prompts(tmp_path):
    run = tmp_path / "sft"
    run.mkdir()
    (run / "tinyworld.json").write_text(json.dumps({"world_seed": 0, "families": ["max_list"]}))
    data = ComparisonData(ranked_per_family=40)
    train, _ = data.ranking(str(run), seed=0)
    held, _ = data.ranking(str(run), seed=0, split="validation")
    assert len(train) == 40 and len(held) == 4 and not set(train) & set(held)
    assert held == [e.prompt for e in make_examples(World(0), "max_list", 4, "validation", 0)]


def test_a_models_ranked_answers_are_sampled_once(tmp_path, tok, make_gpt, monkeypatch):
    """The reward and DPO stages starting from one SFT model share its ranked answers: a second
    call with the same weights and settings reads them back instead of sampling."""
    run = save_gpt(tmp_path / "sft", make_gpt(block_size=256), tok)
    (run / "tinyworld.json").write_text(json.dumps({"world_seed": 0, "families": ["max_list"]}))
    data = ComparisonData(ranked_per_family=10, samples_per_prompt=3)
    sampled = []

    def counted(*args, **kw):
        sampled.append(kw["seed"])
        return ranked_comparisons(*args, **kw)

    monkeypatch.setattr(stages, "ranked_comparisons", counted)
    first = stages.ranked(data, str(run), {"train": 0, "validation": 1}, "cpu")
    assert sampled == [0, 1] and first["train"] and len(list((run / "ranked").iterdir())) == 2
    assert stages.ranked(data, str(run), {"train": 0, "validation": 1}, "cpu") == first
    assert sampled == [0, 1]  # read back
    stages.ranked(data, str(run), {"train": 2}, "cpu")  # another seed samples anew
    stages.ranked(replace(data, label_noise=0.2), str(run), {"train": 0}, "cpu")
    save_gpt(run, make_gpt(seed=1, block_size=256), tok)  # other weights too
    stages.ranked(data, str(run), {"train": 0}, "cpu")
    assert sampled == [0, 1, 2, 0, 0]
