"""Griffin-Lim, the no-learning baseline: magnitudes from the mel, phases by iteration."""

from __future__ import annotations

import torch

from genlab.data.audio.griffin_lim import griffin_lim, mel_to_magnitude
from genlab.data.audio.mel import MelConfig, log_mel, mel_filterbank
from genlab.data.audio.synth import synth_clips
from genlab.metrics.audio import log_spectral_distance

CFG = MelConfig(sample_rate=8000, n_fft=256, hop_length=64, win_length=256, n_mels=40)


def test_magnitudes_project_back_onto_the_mel() -> None:
    clips = synth_clips(
        2,
        0.512,
        3,
    )
    mel = log_mel(clips[:, :4096], MelConfig())
    magnitude = mel_to_magnitude(mel, MelConfig())
    assert magnitude.shape == (2, 513, 16) and magnitude.min() >= 0
    fb = mel_filterbank(16000, 1024, 80)
    projected = fb @ magnitude
    error = (projected - mel.exp()).norm() / mel.exp().norm()
    assert error < 0.1


def test_iterations_bring_the_audio_closer_and_the_seed_fixes_it() -> None:
    from genlab.data.audio.synth import SynthConfig

    clips = synth_clips(2, 0.512, 4, SynthConfig(sample_rate=8000))
    mel = log_mel(clips, CFG)

    def run(iterations: int, seed: int = 0) -> torch.Tensor:
        return griffin_lim(mel, CFG, iterations, generator=torch.Generator().manual_seed(seed))

    none, some = run(0), run(16)
    assert some.shape == clips.shape and some.abs().max() <= 1
    lsd_none = log_spectral_distance(clips, none, CFG)
    lsd_some = log_spectral_distance(clips, some, CFG)
    assert (lsd_some < 0.8 * lsd_none).all()
    assert torch.equal(some, run(16)) and not torch.equal(some, run(16, seed=1))
