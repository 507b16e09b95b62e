"""The built-in speech-like clips: deterministic in the seed, with silence, voiced stretches at a
pitch in the configured range, energy across formant and noise bands, and no clicks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genlab.core.errors import GenlabError
from genlab.data.audio.synth import SynthConfig, synth_clips, synth_speech

SR = 16000
VOWELS_ONLY = SynthConfig(fricative_share=0.0)  # the loudest stretch is then a vowel


def loudest(x: np.ndarray, seconds: float) -> np.ndarray:
    w = round(seconds * SR)
    i = int(np.argmax(np.convolve(x**2, np.ones(w), "valid")))
    return x[i : i + w]


def pitch(x: np.ndarray) -> tuple[float, float]:
    """(f0 in Hz, normalised autocorrelation at its period) of the loudest 40 ms, searching
    50-500 Hz."""
    seg = loudest(x, 0.04)
    seg = seg - seg.mean()
    ac = np.correlate(seg, seg, "full")[len(seg) - 1 :] / np.dot(seg, seg)
    lags = np.arange(SR // 500, SR // 50)
    lag = lags[np.argmax(ac[lags])]
    return SR / lag, float(ac[lag])


def test_same_seed_same_clip_and_seeds_differ() -> None:
    a = synth_speech(1.0, 7)
    assert a.dtype == np.float32 and a.shape == (SR,)
    np.testing.assert_array_equal(a, synth_speech(1.0, 7))
    assert not np.allclose(a, synth_speech(1.0, 8))
    assert not np.allclose(synth_speech(1.0, [7, 0]), synth_speech(1.0, [7, 1]))
    assert synth_speech(0.5, 1, SynthConfig(sample_rate=22050)).shape == (11025,)


@pytest.mark.parametrize("seed", range(5))
def test_level_silence_and_voice(seed: int) -> None:
    x = synth_speech(1.5, seed)
    peak = np.abs(x).max()
    assert np.isfinite(x).all() and 0.3 - 1e-6 <= peak <= 0.9 + 1e-6
    frames = x[: len(x) // 320 * 320].reshape(-1, 320)  # 20 ms windows
    quiet = np.sqrt((frames**2).mean(axis=1)) < 0.01 * peak
    assert 0 < quiet.mean() < 0.7
    f0, periodicity = pitch(synth_speech(1.5, seed, VOWELS_ONLY))
    assert periodicity > 0.3  # voiced: white noise would be near 0
    assert 80 * 0.97 <= f0 <= 260 * 1.03


@pytest.mark.parametrize(("low", "high"), [(100.0, 120.0), (190.0, 240.0)])
def test_pitch_stays_in_the_configured_range(low: float, high: float) -> None:
    config = SynthConfig(pitch_min=low, pitch_max=high, fricative_share=0.0)
    for seed in range(4):
        f0, _ = pitch(synth_speech(1.0, seed, config))
        assert low * 0.97 <= f0 <= high * 1.03


def test_energy_is_spread_over_harmonics_formants_and_noise() -> None:
    for seed in range(4):
        vowel = loudest(synth_speech(1.0, seed, VOWELS_ONLY), 0.064)
        power = np.abs(np.fft.rfft(vowel * np.hanning(len(vowel)))) ** 2
        peaks = (power[1:-1] > power[:-2]) & (power[1:-1] > power[2:])
        assert (peaks & (power[1:-1] > 1e-3 * power.max())).sum() >= 3  # a pure tone has 1
        assert power.max() < 0.7 * power.sum()
    x = synth_speech(3.0, 0)
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    for low, high in [(0, 1000), (1000, 2500), (2500, 8000)]:  # F1, F2-F3, fricatives
        assert power[(freqs >= low) & (freqs < high)].sum() > 1e-3 * power.sum()


@pytest.mark.parametrize("seed", range(5))
def test_no_clicks(seed: int) -> None:
    x = synth_speech(1.5, seed, SynthConfig(noise_floor_db=float("-inf")))  # sounds alone
    peak = np.abs(x).max()
    assert np.abs(np.diff(x)).max() < peak  # never a full swing from one sample to the next
    # every sound starts and ends with a ramp: its first and last ms stay near silence
    silent = np.concatenate([[True], x == 0, [True]])
    onsets = np.flatnonzero(silent[:-1] & ~silent[1:])
    offsets = np.flatnonzero(~silent[:-1] & silent[1:])
    assert len(onsets) >= 2
    for start, end in zip(onsets, offsets, strict=True):
        if end - start > 160:
            edges = np.concatenate([x[start : start + 16], x[end - 16 : end]])
            assert np.abs(edges).max() < 0.1 * peak


def test_synth_clips_are_synth_speech_of_seed_and_index() -> None:
    clips = synth_clips(3, 0.25, 11)
    assert clips.shape == (3, 4000) and clips.dtype == torch.float32
    for i in range(3):
        np.testing.assert_array_equal(clips[i].numpy(), synth_speech(0.25, [11, i]))
    assert not torch.equal(clips, synth_clips(3, 0.25, 12))


def test_bad_requests_are_one_line_errors() -> None:
    with pytest.raises(GenlabError, match="no samples"):
        synth_speech(0.0, 0)
    with pytest.raises(GenlabError, match="pitch_min <= pitch_max"):
        SynthConfig(pitch_min=300.0, pitch_max=200.0)
    with pytest.raises(GenlabError, match="peak_min <= peak_max <= 1"):
        SynthConfig(peak_max=1.5)


def test_a_noise_floor_lies_under_the_silences() -> None:
    quiet, floored = (synth_speech(1.0, 3, SynthConfig(noise_floor_db=db)) for db in (-np.inf, -60))
    floor = floored - quiet
    peak = np.abs(quiet).max()
    assert np.sqrt(np.mean(floor**2)) == pytest.approx(peak * 1e-3, rel=0.05)
    assert (quiet == 0).any() and not (floored == 0).any()
