"""How well a score separates two sets: the area under the ROC curve and the true-positive rate
at a fixed false-positive rate.

Detectors of generated text and membership-inference attacks are both judged this way: a
detector is useful only if it flags machine text while rarely flagging human text, so the
figure that matters is the true-positive rate at a small false-positive rate (1%), with the
threshold read off the negatives themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """P(a positive scores above a negative), ties counting one half (the Mann-Whitney U)."""
    pos, neg = np.asarray(positives, dtype=float), np.asarray(negatives, dtype=float)
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("AUROC needs at least one positive and one negative score")
    ranks = rankdata(np.concatenate([pos, neg]))
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def threshold_at_fpr(negatives: Sequence[float], fpr: float = 0.01) -> float:
    """The smallest threshold that flags at most ``fpr`` of the negatives (score > threshold)."""
    if not 0.0 <= fpr < 1.0:
        raise ValueError(f"fpr must be in [0, 1), got {fpr}")
    neg = np.sort(np.asarray(negatives, dtype=float))[::-1]
    if len(neg) == 0:
        raise ValueError("a threshold needs at least one negative score")
    allowed = int(np.floor(fpr * len(neg)))  # negatives that may score above the threshold
    return float(neg[allowed])


def tpr_at_fpr(positives: Sequence[float], negatives: Sequence[float], fpr: float = 0.01) -> float:
    """The share of positives above the threshold that flags at most ``fpr`` of the negatives."""
    threshold = threshold_at_fpr(negatives, fpr)
    return float(np.mean(np.asarray(positives, dtype=float) > threshold))
