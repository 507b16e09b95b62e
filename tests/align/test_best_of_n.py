"""Best-of-n: each pick is the reward function's argmax over its own n samples, per prompt."""

from __future__ import annotations

import math

import pytest

from genlab.align.best_of_n import best_of_n, best_of_n_kl
from genlab.core.errors import GenlabError

PROMPTS = ["hello there", [{"role": "user", "content": "what is two plus two?"}], "the answer"]


class Recorder:
    """A fake reward function that remembers every (prompt, answer, score) it was asked for;
    the score is a fixed function of the answer's text (its character codes)."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, str, float]] = []

    def __call__(self, prompts, answers):
        scores = [float(sum(map(ord, a)) % 101) for a in answers]
        self.calls += list(zip(prompts, answers, scores, strict=True))
        return scores


@pytest.mark.parametrize("batch_size", [64, 5])  # one generate call, or one prompt at a time
def test_each_pick_is_the_argmax_of_its_own_n_samples(tok, make_gpt, batch_size):
    reward = Recorder()
    n, picks = 4, 2
    out = best_of_n(
        make_gpt(), tok, PROMPTS, reward, n, picks=picks, max_new_tokens=8, batch_size=batch_size
    )
    assert [len(row) for row in out] == [picks] * len(PROMPTS)
    assert len(reward.calls) == len(PROMPTS) * picks * n  # every sample scored once
    for i, row in enumerate(out):
        for k, pick in enumerate(row):
            group = reward.calls[(i * picks + k) * n : (i * picks + k + 1) * n]
            assert all(prompt == PROMPTS[i] for prompt, _, _ in group)  # its own prompt's
            best = max(range(n), key=lambda j: group[j][2])  # the first of equal best
            assert pick.reward == group[best][2] == max(score for _, _, score in group)
            assert pick.generation.text == group[best][1]
    assert len({s for _, _, s in reward.calls}) > 1  # the samples differ: a real choice


def test_one_sample_is_kept_as_it_is_and_bad_counts_are_refused(tok, make_gpt):
    reward = Recorder()
    (pick,) = best_of_n(make_gpt(), tok, ["hello there"], reward, 1, max_new_tokens=8)[0]
    assert [(pick.generation.text, pick.reward)] == [(a, s) for _, a, s in reward.calls]
    with pytest.raises(GenlabError, match="n >= 1"):
        best_of_n(make_gpt(), tok, ["hello"], reward, 0)


def test_kl_of_best_of_n_is_log_n_minus_n_minus_one_over_n():
    assert best_of_n_kl(1) == 0.0
    assert best_of_n_kl(2) == pytest.approx(math.log(2) - 0.5)
    assert best_of_n_kl(8) == pytest.approx(2.0794415 - 0.875)
