"""Bootstrap intervals: the mean of seed means, resampling within seeds, seeded, formatted."""

from __future__ import annotations

import pytest

from genlab.metrics.bootstrap import Interval, bootstrap_mean


def test_constant_items_give_a_point_interval():
    assert bootstrap_mean([1.0] * 7) == Interval(1.0, 1.0, 1.0, 0.95)


def test_a_flat_list_is_one_group_and_the_interval_holds_the_mean():
    items = [1.0] * 60 + [0.0] * 40
    flat, grouped = bootstrap_mean(items), bootstrap_mean([items])
    assert flat == grouped and flat.mean == pytest.approx(0.6)
    # the binomial standard error is sqrt(0.6 * 0.4 / 100) = 0.049: about +-1.96 of it
    assert flat.low < 0.6 < flat.high
    assert flat.high - flat.low == pytest.approx(2 * 1.96 * 0.049, rel=0.15)


def test_groups_weigh_the_same_and_are_resampled_within_themselves():
    # a seed of four 1s and a seed of two 0s: mean 0.5, not 4/6, and no resample can move it
    assert bootstrap_mean([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0]]) == Interval(0.5, 0.5, 0.5, 0.95)
    one = bootstrap_mean([[1.0, 0.0] * 25])
    three = bootstrap_mean([[1.0, 0.0] * 25] * 3)  # three seeds alike: a narrower interval
    assert three.mean == one.mean == 0.5
    assert three.high - three.low < one.high - one.low


def test_seeded_and_levelled():
    items = [0.1, 0.9, 0.4, 0.7, 0.3, 0.8]
    assert bootstrap_mean(items, seed=3) == bootstrap_mean(items, seed=3)
    wide, narrow = bootstrap_mean(items, level=0.99), bootstrap_mean(items, level=0.5)
    assert wide.low < narrow.low <= narrow.high < wide.high and narrow.level == 0.5
    with pytest.raises(ValueError, match="level"):
        bootstrap_mean(items, level=1.0)
    with pytest.raises(ValueError, match="at least one item"):
        bootstrap_mean([[1.0], []])


def test_format_and_dict():
    i = Interval(0.652, 0.601, 0.703)
    assert i.format() == "65.2% [60.1, 70.3]"
    assert i.format(percent=False, digits=3) == "0.652 [0.601, 0.703]"
    assert Interval(**i.to_dict()) == i


def test_bootstrap_statistic_agrees_with_bootstrap_mean_on_a_mean() -> None:
    import numpy as np

    from genlab.metrics.bootstrap import bootstrap_mean, bootstrap_statistic

    values = np.random.default_rng(1).normal(size=300)
    general = bootstrap_statistic(lambda idx: float(values[idx].mean()), 300, 4000, seed=3)
    special = bootstrap_mean(list(values), 4000, seed=3)
    assert general.mean == pytest.approx(special.mean)
    assert general.low == pytest.approx(special.low, abs=0.02)
    assert general.high == pytest.approx(special.high, abs=0.02)
    assert general.low < general.mean < general.high
