"""Translation quality: corpus BLEU by sacreBLEU, exact match, and repeated words.

BLEU (Papineni et al., 2002) is the geometric mean of clipped 1- to 4-gram precisions times a
brevity penalty, over the whole corpus. Its numbers depend on tokenization and smoothing, so
genlab computes it with sacreBLEU (Post, 2018), whose signature fixes both, rather than with a
copy that would drift. The repeated-word rate is the visible symptom of non-autoregressive
decoding's incoherence (the same word written in two neighbouring slots; Gu et al., 2018).
"""

from __future__ import annotations

from collections.abc import Sequence

from genlab.core.errors import GenlabError


def _check(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references) or not references:
        raise GenlabError(
            f"{len(hypotheses)} translations for {len(references)} references: give one per "
            "reference, at least one"
        )


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacreBLEU's corpus BLEU (0-100) with its defaults (13a tokenizer, exponential smoothing)
    and one reference per sentence."""
    _check(hypotheses, references)
    try:
        import sacrebleu
    except ImportError:
        raise GenlabError("BLEU needs sacreBLEU: pip install 'sacrebleu>=2'") from None
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


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
