"""Reading and writing audio files through soundfile (libsndfile): WAV, FLAC and OGG.

Every clip comes back as mono float32 at the rate asked for: channels are averaged, and a file at
another rate is resampled with a polyphase filter (``scipy.signal.resample_poly``). Anything that
is not a readable, non-empty audio file is one ``GenlabError`` line naming it.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile
import torch
from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
_WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}


def read_audio(path: str | os.PathLike, sample_rate: int) -> Tensor:
    """The clip at ``path`` as (L,) float32 mono at ``sample_rate``."""
    path = Path(path)
    if not path.exists():
        raise GenlabError(f"audio file not found: {path}; check the path")
    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, OSError) as e:
        detail = " ".join(str(e).split())
        raise GenlabError(
            f"{path} cannot be read as audio ({detail}); give a WAV, FLAC or OGG file"
        ) from e
    if data.size == 0:
        raise GenlabError(f"{path} holds no samples; give a clip that is not empty")
    wav = data.mean(axis=1)
    if rate != sample_rate:
        g = math.gcd(rate, sample_rate)
        wav = scipy.signal.resample_poly(wav, sample_rate // g, rate // g)
    return torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))


def write_audio(path: str | os.PathLike, wav: Tensor | np.ndarray, sample_rate: int) -> Path:
    """Write a clip (L,) or (1, L), clipped to [-1, 1], as 16-bit PCM: WAV, or FLAC for a .flac
    path; atomically (a temporary file renamed over the target), parent folders created."""
    path = Path(path)
    audio_format = _WRITE_FORMATS.get(path.suffix.lower())
    if audio_format is None:
        raise GenlabError(f"cannot write {path}: audio is written as .wav or .flac")
    if isinstance(wav, Tensor):
        wav = wav.detach().cpu().float().numpy()
    samples = np.asarray(wav, dtype=np.float32)
    if samples.ndim == 2 and samples.shape[0] == 1:
        samples = samples[0]
    if samples.ndim != 1:
        raise GenlabError(f"write_audio takes one mono clip (L,) or (1, L), got {samples.shape}")
    buffer = io.BytesIO()
    soundfile.write(
        buffer, np.clip(samples, -1, 1), sample_rate, format=audio_format, subtype="PCM_16"
    )
    atomic_write_bytes(path, buffer.getvalue())
    return path


def audio_files(folder: str | os.PathLike) -> list[Path]:
    """The audio files (.wav, .flac, .ogg, any case) under ``folder`` and its sub-folders, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GenlabError(f"audio folder not found: {folder}")
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
    )
    if not files:
        raise GenlabError(
            f"{folder} holds no audio files; put {', '.join(AUDIO_SUFFIXES)} files in it"
        )
    return files


def read_folder(folder: str | os.PathLike, sample_rate: int) -> list[Tensor]:
    """Every clip under ``folder`` (see ``audio_files``), read as by ``read_audio``."""
    return [read_audio(path, sample_rate) for path in audio_files(folder)]
