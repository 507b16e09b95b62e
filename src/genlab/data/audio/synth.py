"""Speech-like clips made from a seed, so that the vocoder recipes run offline.

A clip is words separated by short stops or longer pauses, with silence before and after; a word
is one to three syllables, each an optional unvoiced fricative (band-passed noise, as in /s/,
/sh/ or /f/) and a voiced vowel. Vowels follow the source-filter model of speech (Fant, 1960,
"Acoustic Theory of Speech Production"): the harmonics of a pitch f0(t) that follows a smooth
contour, each weighted by the vocal tract's response at its frequency, a cascade of four formant
resonances whose frequencies glide between vowel targets (Peterson & Barney, 1952), plus a little
aspiration noise (a slightly breathy voice). The harmonics are additive synthesis vectorised with numpy: the phase is the running sum of 2 pi f0 / sample_rate,
and the harmonic amplitudes are computed every 32 samples and interpolated linearly in between.
Every segment edge is ramped over 8 ms, so there are no clicks.

It is not speech, but it has what a vocoder must get right: a pitch that moves, formants, noise
bands, silence and onsets, with a spectrum that a log-mel spectrogram describes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.interpolate
import scipy.signal
import torch
from torch import Tensor

from genlab.core.errors import GenlabError

# F1, F2, F3 (Hz) of adult male speakers (Peterson & Barney, 1952; /e/ and /o/ are their open
# /ɛ/ and /ɔ/); F4 is set apart, at 3500 Hz.
VOWELS = {
    "i": (270.0, 2290.0, 3010.0),
    "e": (530.0, 1840.0, 2480.0),
    "a": (730.0, 1090.0, 2440.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
}
F4 = 3500.0
BANDWIDTHS = np.array([80.0, 100.0, 140.0, 200.0])  # Hz, of F1..F4
# pass band (Hz) and level (relative to the vowels' RMS) of each fricative's noise
FRICATIVES = {"s": (4000.0, 7500.0, 0.3), "sh": (2500.0, 5000.0, 0.35), "f": (1200.0, 6500.0, 0.15)}
BREATH = (1000.0, 7000.0, 0.03)  # the aspiration noise of a slightly breathy voice, in vowels
RAMP_SECONDS = 0.008  # every segment fades in and out over 8 ms (raised cosine)
CONTROL = 32  # samples between computed harmonic amplitudes
PITCH_KNOT_SECONDS = 0.15  # the pitch contour passes through one random value per 150 ms


@dataclass(frozen=True)
class SynthConfig:
    """What the speech-like clips are made of; every range is drawn from per clip."""

    sample_rate: int = 16000
    pitch_min: float = 80.0  # Hz: the lowest f0 of any voice
    pitch_max: float = 260.0  # Hz: the highest
    syllables_per_second: float = 4.0
    fricative_share: float = 0.35  # syllables that open with a fricative
    pause_share: float = 0.2  # word gaps that are long pauses rather than short stops
    peak_min: float = 0.3  # each clip's peak level is drawn from [peak_min, peak_max]
    peak_max: float = 0.9
    # white noise this many dB below the peak under the whole clip: a recording's background
    # (no room or microphone is silent, and digital zeros would make log spectra of silence,
    # and so the log-spectral distance, depend on nothing but the floor of the log); -inf: none
    noise_floor_db: float = -60.0

    def __post_init__(self) -> None:
        if self.sample_rate < 1000:
            raise GenlabError(f"synth sample_rate must be at least 1000 Hz, got {self.sample_rate}")
        if not 0 < self.pitch_min <= self.pitch_max < self.sample_rate / 4:
            raise GenlabError(
                f"synth pitch needs 0 < pitch_min <= pitch_max < sample_rate / 4, got "
                f"{self.pitch_min:g}..{self.pitch_max:g} Hz"
            )
        if self.syllables_per_second <= 0:
            raise GenlabError(
                f"synth syllables_per_second must be positive, got {self.syllables_per_second}"
            )
        if not (0 <= self.fricative_share <= 1 and 0 <= self.pause_share <= 1):
            raise GenlabError("synth fricative_share and pause_share are shares: between 0 and 1")
        if not 0 < self.peak_min <= self.peak_max <= 1:
            raise GenlabError(
                f"synth peak levels need 0 < peak_min <= peak_max <= 1, got "
                f"{self.peak_min:g}..{self.peak_max:g}"
            )


Segment = tuple[int, int, float, str]  # start, end (samples), gain, vowel or fricative name


def _plan(n: int, config: SynthConfig, rng: np.random.Generator) -> list[Segment]:
    """Non-overlapping segments between a leading and a trailing silence of 50-200 ms."""
    sr, ramp = config.sample_rate, round(RAMP_SECONDS * config.sample_rate)
    lead, trail = np.minimum(rng.uniform(0.05, 0.2, size=2) * sr, 0.15 * n).astype(int)
    syllable = sr / config.syllables_per_second
    segments, t, end = [], lead, n - trail
    while t < end:
        for _ in range(rng.integers(1, 4)):
            length = int(syllable * rng.uniform(0.6, 1.4))
            if rng.random() < config.fricative_share:
                frication = int(length * rng.uniform(0.25, 0.4))
                name = str(rng.choice(list(FRICATIVES)))
                segments.append((t, t + frication, rng.uniform(0.6, 1.0), name))
                t, length = t + frication, length - frication
            segments.append((t, t + length, rng.uniform(0.5, 1.0), str(rng.choice(list(VOWELS)))))
            t += length
        gap = rng.uniform(0.8, 1.6) if rng.random() < config.pause_share else rng.uniform(0.15, 0.4)
        t += int(gap * syllable)
    clipped = [(start, min(stop, end), gain, name) for start, stop, gain, name in segments]
    return [s for s in clipped if s[1] - s[0] >= 2 * ramp]


def _envelope(n: int, segments: list[Segment], ramp: int) -> np.ndarray:
    """Each segment's gain over its span, faded in and out over ``ramp`` samples."""
    rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
    env = np.zeros(n)
    for start, end, gain, _ in segments:
        env[start:end] = gain
        env[start : start + ramp] *= rise
        env[end - ramp : end] *= rise[::-1]
    return env


def _pitch(n: int, seconds: float, config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """f0 (Hz) per sample: a smooth curve through random values around the voice's own pitch,
    falling slightly over the clip (declination). The curve is PCHIP, a piecewise cubic that never
    overshoots its knots, so f0 stays within [pitch_min, pitch_max]."""
    lo, hi = math.log(config.pitch_min), math.log(config.pitch_max)
    voice = rng.uniform(lo, hi)
    knots = max(2, math.ceil(seconds / PITCH_KNOT_SECONDS) + 1)
    where = np.linspace(0, max(n - 1, 1), knots)
    values = voice + 0.1 * rng.standard_normal(knots) - 0.15 * where / max(n - 1, 1)
    contour = scipy.interpolate.PchipInterpolator(where, np.clip(values, lo, hi))
    return np.exp(contour(np.arange(n)))


def _formants(
    points: np.ndarray, vowels: list[Segment], scale: float, rng: np.random.Generator
) -> np.ndarray:
    """(len(points), 4) formant frequencies at the sample indices ``points``: F1-F3 glide
    linearly between the targets of successive vowels (reached at each vowel's middle), scaled by
    the voice's vocal tract (``scale``) and jittered by 5% per vowel."""
    middles = np.array([(start + end) / 2 for start, end, _, _ in vowels])
    targets = np.array([VOWELS[name] for _, _, _, name in vowels])
    targets *= scale * rng.uniform(0.95, 1.05, size=targets.shape)
    tracks = [np.interp(points, middles, targets[:, i]) for i in range(3)]
    return np.stack([*tracks, np.full(len(points), F4 * scale)], axis=1)


def _harmonic_amplitudes(f0: np.ndarray, formants: np.ndarray, sample_rate: int) -> np.ndarray:
    """(M, K) amplitude of harmonic k = 1..K at M instants: a source falling 6 dB per octave
    (glottal pulses -12, lip radiation +6) times a cascade of two-pole resonances, each 1 at 0 Hz,
    faded out over the last 5% below Nyquist so that no harmonic aliases."""
    nyquist = sample_rate / 2
    k = np.arange(1, int(nyquist // f0.min()) + 1)
    f = f0[:, None] * k
    gain = 1.0 / k
    for i, bandwidth in enumerate(BANDWIDTHS):
        peak, b2 = formants[:, i : i + 1], (bandwidth / 2) ** 2
        gain = gain * (peak**2 + b2) / np.sqrt(((f - peak) ** 2 + b2) * ((f + peak) ** 2 + b2))
    return gain * np.clip((nyquist - f) / (0.05 * nyquist), 0, 1)


def _voiced(f0: np.ndarray, amplitudes: np.ndarray, sample_rate: int) -> np.ndarray:
    """sum_k a_k(t) sin(k phase(t)), with a_k interpolated linearly between the rows of
    ``amplitudes`` (one per ``CONTROL`` samples, the last at or after the end)."""
    n, (m, harmonics) = len(f0), amplitudes.shape
    phase = np.mod(np.cumsum(2 * np.pi * f0 / sample_rate), 2 * np.pi)  # float64, then wrapped
    phase = np.pad(phase, (0, (m - 1) * CONTROL - n), mode="edge").astype(np.float32)
    k = np.arange(1, harmonics + 1, dtype=np.float32)
    sines = np.sin(phase.reshape(m - 1, CONTROL, 1) * k)  # (blocks, CONTROL, K)
    amplitudes = amplitudes.astype(np.float32)[:, :, None]
    u = (np.arange(CONTROL, dtype=np.float32) / CONTROL)[:, None]
    out = (sines @ amplitudes[:-1]) * (1 - u) + (sines @ amplitudes[1:]) * u
    return out.reshape(-1)[:n]


@functools.lru_cache(maxsize=16)
def _band_pass(low: float, high: float, sample_rate: int) -> np.ndarray:
    """A 4th-order Butterworth band-pass from ``low`` to ``high`` Hz, kept below Nyquist."""
    high = min(high, 0.45 * sample_rate)
    low = min(low, high / 2)
    return scipy.signal.butter(4, [low, high], btype="bandpass", fs=sample_rate, output="sos")


def _noise(
    low: float, high: float, n: int, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Unit-RMS white noise through a band-pass from ``low`` to ``high`` Hz."""
    noise = scipy.signal.sosfilt(_band_pass(low, high, sample_rate), rng.standard_normal(n))
    return noise / np.sqrt(np.mean(noise**2))


def synth_speech(
    seconds: float, seed: int | Sequence[int], config: SynthConfig = SynthConfig()
) -> np.ndarray:
    """A speech-like clip (round(seconds * sample_rate),) float32, peak-normalised to a level
    drawn from [peak_min, peak_max]; the same seed gives the same clip."""
    sr = config.sample_rate
    n = round(seconds * sr)
    if n < 1:
        raise GenlabError(f"a clip of {seconds} s has no samples at {sr} Hz; ask for a longer one")
    rng = np.random.default_rng(seed)
    segments = _plan(n, config, rng)
    vowels = [s for s in segments if s[3] in VOWELS]
    ramp = round(RAMP_SECONDS * sr)
    wav = np.zeros(n)
    f0 = _pitch(n, seconds, config, rng)
    if vowels:
        points = np.minimum(np.arange(0, n + CONTROL, CONTROL), n - 1)
        scale = (np.exp(np.mean(np.log(f0))) / 120) ** 0.2  # higher voices, shorter tracts
        formants = _formants(points, vowels, scale, rng)
        voiced = _voiced(f0, _harmonic_amplitudes(f0[points], formants, sr), sr)
        low, high, breath = BREATH
        voiced = voiced / np.sqrt(np.mean(voiced**2)) + breath * _noise(low, high, n, sr, rng)
        wav += _envelope(n, vowels, ramp) * voiced
    for name, (low, high, level) in FRICATIVES.items():
        chosen = [s for s in segments if s[3] == name]
        if chosen:
            wav += level * _envelope(n, chosen, ramp) * _noise(low, high, n, sr, rng)
    peak = np.abs(wav).max()
    level = rng.uniform(config.peak_min, config.peak_max)
    wav = wav * (level / peak if peak > 0 else 0.0)
    wav += level * 10 ** (config.noise_floor_db / 20) * rng.standard_normal(n)
    return wav.astype(np.float32)


def synth_clips(n: int, seconds: float, seed: int, config: SynthConfig = SynthConfig()) -> Tensor:
    """(n, L) float32: clip i is ``synth_speech(seconds, [seed, i], config)``, so different seeds
    give independent sets (train, validation and test use seed, seed + 1 and seed + 2)."""
    if n < 1:
        raise GenlabError(f"the number of clips must be positive, got {n}")
    return torch.from_numpy(np.stack([synth_speech(seconds, [seed, i], config) for i in range(n)]))
