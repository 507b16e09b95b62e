"""Preference pairs, SFT demonstrations and tool-shaped text from TinyWorld."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from genlab.core.errors import GenlabError
from genlab.data.record_sources import ConversationData
from genlab.data.tinyworld import (
    DEFAULT_HELD_OUT,
    TaskSuite,
    World,
    demonstrations,
    judge,
    parse_prompt,
    preference_pairs,
    tool_text,
    verdict,
)
from genlab.data.tinyworld.style import PADDING
from genlab.data.tinyworld.worked import false_equations, parse_date, weekday


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=0, size=64)


@pytest.fixture(scope="module")
def suite(world) -> TaskSuite:
    return TaskSuite(world)


def test_pairs_are_ranked_by_the_judge_without_noise(world, suite):
    pairs = preference_pairs(suite, 300, seed=0)
    assert len(pairs) == 300
    families = set()
    for pair in pairs:
        assert set(pair) == {"prompt", "chosen", "rejected"}
        assert pair["chosen"] != pair["rejected"]
        example = parse_prompt(pair["prompt"], world)
        families.add(example.family)
        assert judge(example, pair["chosen"]) > judge(example, pair["rejected"])
    assert families == set(suite.tuned)
    assert preference_pairs(suite, 300, seed=0) == pairs
    assert preference_pairs(suite, 50, seed=1) != pairs[:50]


def test_label_noise_flips_the_asked_share_of_pairs(world, suite):
    pairs = preference_pairs(suite, 800, seed=2, noise=0.3)
    flipped = 0
    for pair in pairs:
        example = parse_prompt(pair["prompt"], world)
        flipped += judge(example, pair["chosen"]) < judge(example, pair["rejected"])
    assert abs(flipped / len(pairs) - 0.3) < 0.06
    with pytest.raises(GenlabError, match="noise"):
        preference_pairs(suite, 10, noise=1.5)


def test_pairs_contrast_the_qualities_the_judge_scores(world, suite):
    rejected = " ".join(p["rejected"] for p in preference_pairs(suite, 400, seed=3))
    for marker in (
        "Great question",
        "Obviously",
        "I think",
        "Let me say it again",
        " or ",
        "Actually",
    ):
        assert marker in rejected


def test_demonstrations_are_correct_mixed_in_style_and_never_held_out(world, suite):
    records = demonstrations(world, 400, seed=0)
    assert records == demonstrations(suite, 400, seed=0)
    styles = dict.fromkeys(("terse", "padded", "steps", "flawless", "hedged"), 0)
    for record in records:
        user, assistant = record["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        example = parse_prompt(user["content"], world)
        assert example.family not in DEFAULT_HELD_OUT
        assert example.check(assistant["content"]), record
        styles["terse"] += assistant["content"] == example.answer
        styles["padded"] += any(p in assistant["content"].casefold() for p in PADDING)
        styles["steps"] += bool(example.steps) and assistant["content"].startswith(example.steps[0])
        styles["flawless"] += verdict(example, assistant["content"]).score == 1.0
        styles["hedged"] += any(h in assistant["content"] for h in ("I think", "Perhaps", "maybe"))
    # 40% of demonstrations are what the judge wants, 60% carry pleasantries or hedges
    shares = {"terse": 0.15, "padded": 0.45, "steps": 0.1, "flawless": 0.4, "hedged": 0.3}
    for style, share in shares.items():
        assert abs(styles[style] / len(records) - share) < 0.07, styles


def test_one_style_styles_every_demonstration_of_the_same_prompts(world, suite, tmp_path):
    mixed = demonstrations(suite, 60, seed=3)
    plain = demonstrations(suite, 60, seed=3, style="sentence")
    for m, p in zip(mixed, plain, strict=True):
        assert m["messages"][0] == p["messages"][0]  # same prompts, only the replies differ
        example = parse_prompt(p["messages"][0]["content"], world)
        assert p["messages"][1]["content"] == f"The answer is {example.answer}."
    assert all(
        verdict(parse_prompt(r["messages"][0]["content"], world), r["messages"][1]["content"]).score
        < 1.0
        for r in demonstrations(suite, 20, seed=3, style="padded")
    )
    with pytest.raises(GenlabError, match="unknown demonstration style 'rude'"):
        demonstrations(suite, 2, style="rude")
    own = tmp_path / "chats.jsonl"
    own.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(GenlabError, match="--style sentence styles TinyWorld's demonstrations"):
        ConversationData(data=str(own), style="sentence").load("runs/none", 0)


def test_pairs_use_only_tuned_families_of_a_custom_suite(world):
    suite = TaskSuite(world, held_out=["addition", "sentiment"])
    for pair in preference_pairs(suite, 100, seed=0):
        assert parse_prompt(pair["prompt"], world).family not in ("addition", "sentiment")


def test_tool_text_states_true_results_and_has_no_tool_calls(world):
    docs = tool_text(world, 300, seed=0)
    assert docs == tool_text(world, 300, seed=0) and docs != tool_text(world, 300, seed=1)
    text = "\n".join(docs)
    assert "[" not in text and "->" not in text
    assert false_equations(text) == []
    sums = re.findall(
        r"counted (\d+) \w+ in the morning and (\d+) in the evening, (\d+) in all", text
    )
    products = re.findall(r"A box holds (\d+) \w+, so (\d+) boxes hold (\d+)", text)
    spent = re.findall(r"had (\d+) coins and spent (\d+) of them, which left (\d+)", text)
    assert sums and products and spent
    assert all(int(a) + int(b) == int(c) for a, b, c in sums)
    assert all(int(a) * int(b) == int(c) for a, b, c in products)
    assert all(int(a) - int(b) == int(c) for a, b, c in spent)
    dates = re.findall(r"(\d{1,2} [A-Z][a-z]+ \d{4}),? (?:which was )?a ([A-Z][a-z]+day)", text)
    assert len(dates) > 50 and all(weekday(parse_date(d)) == w for d, w in dates)
    gaps = re.findall(
        r"(\d+) days after (\d{1,2} [A-Z][a-z]+ \d{4}) it was (\d{1,2} [A-Z][a-z]+ \d{4})", text
    )
    assert gaps and all(
        parse_date(a) + dt.timedelta(days=int(n)) == parse_date(b) for n, a, b in gaps
    )
    carved = re.findall(
        r"the words '([a-z ]+)' are carved, which in English means '([a-z ]+)'", text
    )
    assert carved and all(world.translate(en) == ci for ci, en in carved)
    capitals = re.findall(r"travelled to ([A-Z][a-z]+), the capital of ([A-Z][a-z]+)", text)
    assert capitals and all(world.value(country, "capital") == town for town, country in capitals)
