"""How close vocoded audio is to the reference clip it was made from.

Three views, as in vocoder papers: the log-spectral distance (Gray & Markel, 1976), which the
WaveGrad paper (Chen et al., 2021) reports alongside listening tests; the L1 distance between
log-mel spectrograms, the vocoder's own conditioning; and STOI (Taal et al., 2011, "An Algorithm
for Intelligibility Prediction of Time-Frequency Weighted Noisy Speech"), through pystoi, the
reference implementation's Python port. Each returns one value per clip (B,).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pystoi
import torch
from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.data.audio.mel import MelConfig, log_mel, stft_magnitude


def _check_pair(reference: Tensor, estimate: Tensor) -> None:
    if reference.shape != estimate.shape or reference.dim() not in (1, 2):
        raise GenlabError(
            f"reference {tuple(reference.shape)} and estimate {tuple(estimate.shape)} must be "
            "clips (L,) or batches (B, L) of the same shape"
        )


def log_spectral_distance(
    reference: Tensor, estimate: Tensor, cfg: MelConfig, eps: float = 1e-8
) -> Tensor:
    """(B,) log-spectral distance in dB: per frame, the RMS over frequency bins of the difference
    of the power spectra in dB, averaged over frames. 0 for identical clips; a clip at twice the
    amplitude is 20 log10(2) = 6.02 dB away."""
    _check_pair(reference, estimate)
    ref_db = 10 * torch.log10(stft_magnitude(reference, cfg) ** 2 + eps)
    est_db = 10 * torch.log10(stft_magnitude(estimate, cfg) ** 2 + eps)
    return (ref_db - est_db).pow(2).mean(dim=1).sqrt().mean(dim=-1)


def mel_l1(reference: Tensor, estimate: Tensor, cfg: MelConfig) -> Tensor:
    """(B,) mean absolute difference of the log-mel spectrograms."""
    _check_pair(reference, estimate)
    return (log_mel(reference, cfg) - log_mel(estimate, cfg)).abs().mean(dim=(1, 2))


def stoi(reference: Tensor, estimate: Tensor, sample_rate: int) -> Tensor:
    """(B,) short-time objective intelligibility: near 1 for a clip as intelligible as the
    reference, lower as it gets less so; pystoi resamples to 10 kHz and drops silent frames.
    A clip with too little non-silent speech to score (pystoi needs 384 ms) is NaN, not the
    1e-5 pystoi returns with a warning, so that means over clips can leave it out."""
    _check_pair(reference, estimate)
    refs = reference.detach().double().cpu().reshape(-1, reference.shape[-1]).numpy()
    ests = estimate.detach().double().cpu().reshape(-1, estimate.shape[-1]).numpy()
    scores = [_stoi(r, e, sample_rate) for r, e in zip(refs, ests, strict=True)]
    return torch.tensor(scores, dtype=torch.float64)


def _stoi(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score = pystoi.stoi(reference, estimate, sample_rate)
    unscored = any("Not enough STFT frames" in str(w.message) for w in caught)
    return math.nan if unscored else float(score)
