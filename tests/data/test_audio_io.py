"""Audio files through soundfile: WAV and FLAC round trips, mono and resampling on reading, and
one-line errors naming the file for anything that is not a readable clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from genlab.core.errors import GenlabError
from genlab.data.audio.io import audio_files, read_audio, read_folder, write_audio

SR = 16000


def tone(freq: float, seconds: float, sample_rate: int) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_round_trip_within_one_16_bit_step(tmp_path: Path, suffix: str) -> None:
    wav = torch.rand(SR // 2) * 1.8 - 0.9
    path = write_audio(tmp_path / "deep" / f"clip{suffix}", wav, SR)
    assert path.is_file() and soundfile.info(path).format == suffix[1:].upper()
    assert soundfile.info(path).subtype == "PCM_16"
    back = read_audio(path, SR)
    assert back.dtype == torch.float32 and back.shape == wav.shape
    assert (back - wav).abs().max() <= 1 / 32768
    assert sorted(p.name for p in tmp_path.rglob("*")) == [f"clip{suffix}", "deep"]  # no temp


def test_writing_clips_to_the_unit_range(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "loud.wav", np.array([[2.0, -3.0, 0.25]]), SR)
    back = read_audio(path, SR)
    assert back[0] == pytest.approx(32767 / 32768) and back[1] == -1.0
    assert back[2] == pytest.approx(0.25)
    with pytest.raises(GenlabError, match=r"\.wav or \.flac"):
        write_audio(tmp_path / "clip.mp3", np.zeros(10), SR)


def test_stereo_is_read_as_the_mean_of_its_channels(tmp_path: Path) -> None:
    left, right = tone(440, 0.1, SR), tone(660, 0.1, SR) * 0.5
    soundfile.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), SR, subtype="FLOAT")
    np.testing.assert_allclose(
        read_audio(tmp_path / "stereo.wav", SR), (left + right) / 2, atol=1e-7
    )


def test_another_rate_is_resampled_and_keeps_the_pitch(tmp_path: Path) -> None:
    soundfile.write(tmp_path / "cd.wav", tone(440, 1.0, 22050), 22050, subtype="FLOAT")
    wav = read_audio(tmp_path / "cd.wav", SR).numpy()
    assert abs(len(wav) - SR) <= 1
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    assert np.fft.rfftfreq(len(wav), 1 / SR)[np.argmax(spectrum)] == pytest.approx(440, abs=1.5)


def one_line_error(path: Path, sample_rate: int = SR) -> str:
    with pytest.raises(GenlabError) as e:
        read_audio(path, sample_rate)
    message = str(e.value)
    assert "\n" not in message and str(path) in message
    return message


def test_unreadable_files_are_one_line_errors_naming_them(tmp_path: Path) -> None:
    (tmp_path / "clip.wav").write_text("not audio")
    assert "give a WAV, FLAC or OGG file" in one_line_error(tmp_path / "clip.wav")
    assert "not found" in one_line_error(tmp_path / "missing.wav")
    assert "cannot be read as audio" in one_line_error(tmp_path)
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, np.float32), SR)
    assert "no samples" in one_line_error(tmp_path / "empty.wav")


def test_folders_list_audio_recursively_and_reject_empty_ones(tmp_path: Path) -> None:
    for name in ["b.WAV", "sub/a.flac", "c.ogg"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        soundfile.write(tmp_path / name, tone(220, 0.05, SR), SR)
    (tmp_path / "notes.txt").write_text("not listed")
    files = audio_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["b.WAV", "c.ogg", "sub/a.flac"]
    clips = read_folder(tmp_path, SR)
    assert len(clips) == 3 and all(c.shape == (800,) for c in clips)
    (tmp_path / "empty").mkdir()
    for folder in [tmp_path / "empty", tmp_path / "missing"]:
        with pytest.raises(GenlabError) as e:
            audio_files(folder)
        assert "\n" not in str(e.value) and str(folder) in str(e.value)
