"""Translation quality: corpus BLEU by sacreBLEU, exact match, and repeated words.

BLEU (Papineni et al., 2002) is the geometric mean of clipped 1- to 4-gram precisions times a
brevity penalty, over the whole corpus. Its numbers depend on tokenization and smoothing, so
genlab computes it with sacreBLEU (Post, 2018), whose signature fixes both, rather than with a
copy that would drift. The repeated-word rate is the visible symptom of non-autoregressive
decoding's incoherence (the same word written in two neighbouring slots; Gu et al., 2018).

How sure a BLEU difference is: :func:`bleu_bootstrap` resamples the test sentences (Koehn,
2004), recomputing corpus BLEU from each sentence's n-gram counts, and gives the interval of a
system's BLEU and, on the same resamples, of its difference to a baseline (paired).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import numpy as np

from genlab.core.errors import GenlabError
from genlab.metrics.bootstrap import Interval


def _check(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references) or not references:
        raise GenlabError(
            f"{len(hypotheses)} translations for {len(references)} references: give one per "
            "reference, at least one"
        )


def _sacrebleu() -> ModuleType:
    try:
        import sacrebleu
    except ImportError:
        raise GenlabError("BLEU needs sacreBLEU: pip install 'sacrebleu>=2'") from None
    return sacrebleu


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacreBLEU's corpus BLEU (0-100) with its defaults (13a tokenizer, exponential smoothing)
    and one reference per sentence."""
    _check(hypotheses, references)
    return float(_sacrebleu().corpus_bleu(list(hypotheses), [list(references)]).score)


def _sentence_counts(hypotheses: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """(N, 10): each sentence's hypothesis and reference length, matched and total 1-4-grams,
    as sacreBLEU counts them (what its own paired bootstrap resamples)."""
    metric = _sacrebleu().metrics.BLEU()
    return np.asarray(metric._extract_corpus_statistics(list(hypotheses), [list(references)]))


def _bleu_of(counts: np.ndarray) -> float:
    """Corpus BLEU from summed counts, as :func:`bleu` computes it."""
    BLEU = _sacrebleu().metrics.BLEU
    c = [int(x) for x in counts]
    return float(BLEU.compute_bleu(c[2:6], c[6:10], c[0], c[1], smooth_method="exp").score)


def bleu_bootstrap(
    hypotheses: Sequence[str],
    references: Sequence[str],
    baseline: Sequence[str] | None = None,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[Interval, Interval | None]:
    """Corpus BLEU with its percentile bootstrap interval over sentences, and, given the
    ``baseline``'s translations of the same sentences, BLEU minus the baseline's BLEU with its
    interval on the same resamples (None without a baseline)."""
    _check(hypotheses, references)
    ours = _sentence_counts(hypotheses, references)
    theirs = None if baseline is None else _sentence_counts(baseline, references)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(references), size=(n_resamples, len(references)))
    tail = (1.0 - level) / 2

    def interval(mean: float, values: list[float]) -> Interval:
        low, high = np.quantile(values, [tail, 1.0 - tail])
        return Interval(mean, float(low), float(high), level)

    scores = [_bleu_of(ours[rows].sum(0)) for rows in picks]
    own = interval(_bleu_of(ours.sum(0)), scores)
    if theirs is None:
        return own, None
    base = [_bleu_of(theirs[rows].sum(0)) for rows in picks]
    gap = _bleu_of(ours.sum(0)) - _bleu_of(theirs.sum(0))
    return own, interval(gap, [a - b for a, b in zip(scores, base, strict=True)])


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """The fraction of translations equal to their reference, word for word."""
    _check(hypotheses, references)
    hits = sum(h.split() == r.split() for h, r in zip(hypotheses, references, strict=True))
    return hits / len(references)


def repeated_words(hypotheses: Sequence[str]) -> float:
    """The fraction of translations with the same word in two neighbouring positions."""
    if not hypotheses:
        raise GenlabError("no translations to measure")
    words = [h.split() for h in hypotheses]
    return sum(any(a == b for a, b in zip(w[:-1], w[1:], strict=True)) for w in words) / len(words)
