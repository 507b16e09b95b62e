"""Log-mel spectrograms side by side: how a reader compares vocoded audio with the reference.

Each panel is the log-mel spectrogram (``mel.log_mel``) of one waveform, on one colour scale
shared by all panels, so a missing band or smeared onset in a vocoded clip shows against the
real one. It uses matplotlib's object API with the Agg canvas, as ``genlab.core.plot`` does.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_bytes
from genlab.data.audio.mel import MelConfig, log_mel


def save_spectrograms(
    path: str | os.PathLike, panels: Mapping[str, Tensor], cfg: MelConfig, title: str = ""
) -> Path:
    """Write one PNG with a column per named waveform (L,), atomically; return its path."""
    if not panels:
        raise GenlabError("no waveforms to draw: give at least one named panel")
    mels = {}
    for name, wav in panels.items():
        if wav.dim() != 1:
            raise GenlabError(f"panel '{name}' must be one waveform (L,), got {tuple(wav.shape)}")
        mels[name] = log_mel(wav.detach().float().cpu(), cfg)[0].numpy()
    low = min(m.min() for m in mels.values())
    high = max(m.max() for m in mels.values())
    fig = Figure(figsize=(3.2 * len(mels) + 1, 3.4), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(mels), squeeze=False)[0]
    for ax, (name, mel) in zip(axes, mels.items(), strict=True):
        seconds = mel.shape[1] * cfg.hop_length / cfg.sample_rate
        image = ax.imshow(
            mel,
            origin="lower",
            aspect="auto",
            extent=(0, seconds, 0, cfg.n_mels),
            vmin=low,
            vmax=high,
            cmap="magma",
        )
        ax.set(title=name, xlabel="time (s)", ylabel="mel bin")
    fig.colorbar(image, ax=list(axes), label="log mel")
    if title:
        fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
