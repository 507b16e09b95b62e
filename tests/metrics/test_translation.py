"""Translation metrics: sacreBLEU's corpus BLEU equals BLEU computed by hand, exact match and the
repeated-word rate count what they say."""

from __future__ import annotations

import math

import pytest

from genlab.core.errors import GenlabError
from genlab.metrics.translation import bleu, bleu_bootstrap, exact_match, repeated_words
from references import require

require("sacrebleu")


def test_bleu_equals_the_hand_computed_value() -> None:
    # "my" for "the": clipped n-gram precisions 5/6, 3/5, 2/4, 1/3 and no brevity penalty
    hand = 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** (1 / 4)
    assert bleu(["the red bird sees my dog"], ["the red bird sees the dog"]) == pytest.approx(
        hand, abs=1e-6
    )
    # every n-gram right but one word short: the brevity penalty exp(1 - 6/5) alone
    short = bleu(["the red bird sees the"], ["the red bird sees the dog"])
    assert short == pytest.approx(100 * math.exp(1 - 6 / 5), abs=1e-6)
    assert bleu(["a b c d"], ["a b c d"]) == pytest.approx(100.0)


def test_exact_match_and_repeats() -> None:
    hyps = ["bu kim ni", "bu bu ni", "ni  kim"]
    refs = ["bu kim ni", "bu kim ni", "ni kim"]
    assert exact_match(hyps, refs) == pytest.approx(2 / 3)  # spacing does not matter
    assert repeated_words(hyps) == pytest.approx(1 / 3)
    with pytest.raises(GenlabError, match="2 translations for 3 references"):
        bleu(hyps[:2], refs)


def test_bleu_bootstrap_centres_on_sacrebleu_and_pairs_the_difference() -> None:
    refs = [f"w{i} a b c d e" for i in range(40)]
    good = list(refs)
    bad = [r if i % 2 else r.replace("c d", "d c") for i, r in enumerate(refs)]
    own, gap = bleu_bootstrap(bad, refs, baseline=good, n_resamples=300)
    assert own.mean == pytest.approx(bleu(bad, refs), abs=1e-6)
    assert own.low <= own.mean <= own.high < 100
    assert gap is not None and gap.mean == pytest.approx(bleu(bad, refs) - 100, abs=1e-6)
    assert gap.low <= gap.mean <= gap.high < 0  # worse on every resample
    same, none = bleu_bootstrap(good, refs)
    assert none is None and same.low == same.high == pytest.approx(100.0)
