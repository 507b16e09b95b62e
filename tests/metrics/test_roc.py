import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from genlab.metrics.roc import auroc, threshold_at_fpr, tpr_at_fpr


def test_auroc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    pos = np.round(rng.normal(1.0, 1.0, 300), 1)
    neg = np.round(rng.normal(0.0, 1.0, 500), 1)
    labels = np.r_[np.ones(300), np.zeros(500)]
    assert auroc(pos, neg) == pytest.approx(roc_auc_score(labels, np.r_[pos, neg]), abs=1e-12)


def test_auroc_extremes() -> None:
    assert auroc([2, 3], [0, 1]) == 1.0
    assert auroc([0, 1], [2, 3]) == 0.0
    assert auroc([1, 1], [1, 1]) == 0.5
    with pytest.raises(ValueError):
        auroc([], [1.0])


def test_threshold_flags_at_most_fpr_of_negatives() -> None:
    neg = np.arange(1000, dtype=float)
    t = threshold_at_fpr(neg, 0.01)
    assert (neg > t).sum() == 10
    assert tpr_at_fpr([995.5, 1e6, 5.0, 989.0], neg, 0.01) == 0.5
    assert threshold_at_fpr(neg, 0.0) == 999.0
