"""A diffusion vocoder: WaveGrad turns a mel-spectrogram into a waveform by iterative refinement.

Chen et al., 2021, "WaveGrad: Estimating Gradients for Waveform Generation". Training noises
random crops of clean audio to a continuous level (:mod:`~genlab.methods.diffusion.noise_level`)
and teaches :class:`~genlab.nets.wavegrad.WaveGrad` to estimate the noise given the crop's
log-mel frames. Sampling starts from Gaussian noise and runs DDPM's ancestral sampler
(:class:`~genlab.methods.diffusion.samplers.DDPMScheduler`, the images' sampler) on either the
training schedule visited at N evenly spaced steps or a short schedule of its own betas (the
6-step one WaveGrad finds by grid search, :mod:`~genlab.methods.diffusion.schedule_search`);
the network is conditioned on the level of whichever schedule runs. A run folder holds the
network, the mel settings it was trained with (so training and inference compute the same
features) and the training schedule; searched schedules go in ``schedules.json`` beside it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_json, read_json
from genlab.core.registry import Kind, load, register
from genlab.data.audio.mel import MelConfig, log_mel
from genlab.methods.diffusion.noise_level import draw_levels, level_model
from genlab.methods.diffusion.samplers import DDPMScheduler, sample_loop
from genlab.methods.diffusion.schedule import NoiseSchedule
from genlab.nets.wavegrad import WaveGrad, WaveGradConfig

KIND = "wavegrad"
SCHEDULES_FILE = "schedules.json"  # searched short schedules: {"6": [beta, ...], ...}


@dataclass(frozen=True)
class VocoderConfig:
    """The network, the features it reads and the schedule it was trained on (WaveGrad's:
    1,000 linear betas from 1e-6 to 0.01)."""

    net: WaveGradConfig
    mel: MelConfig
    beta_start: float = 1e-6
    beta_end: float = 0.01
    num_train_timesteps: int = 1000

    def __post_init__(self) -> None:
        if self.net.n_mels != self.mel.n_mels or self.net.hop_length != self.mel.hop_length:
            raise GenlabError(
                f"the network reads {self.net.n_mels} mels every {self.net.hop_length} samples "
                f"but the features have {self.mel.n_mels} every {self.mel.hop_length}"
            )
        if not 0 < self.beta_start <= self.beta_end < 1:
            raise GenlabError("the training betas must satisfy 0 < beta_start <= beta_end < 1")

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**out, "net": self.net.to_dict(), "mel": self.mel.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VocoderConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown or "net" not in d or "mel" not in d:
            raise GenlabError("not a genlab WaveGrad config (expected net, mel, betas)")
        net, mel = WaveGradConfig.from_dict(d["net"]), MelConfig.from_dict(d["mel"])
        return cls(**{**d, "net": net, "mel": mel})


class Vocoder(nn.Module):
    """WaveGrad and its features: ``forward(audio, level, mel)`` estimates the noise."""

    def __init__(self, config: VocoderConfig) -> None:
        super().__init__()
        self.config = config
        self.net = WaveGrad(config.net)

    def forward(self, audio: Tensor, level: Tensor, mel: Tensor) -> Tensor:
        return self.net(audio, level, mel)

    def features(self, audio: Tensor) -> Tensor:
        """The log-mel frames (B, n_mels, L / hop) the network is conditioned on."""
        return log_mel(audio, self.config.mel)

    def training_schedule(self) -> NoiseSchedule:
        c = self.config
        return NoiseSchedule("linear", c.num_train_timesteps, c.beta_start, c.beta_end)

    def scheduler(self, steps: int, betas: Sequence[float] | None = None) -> DDPMScheduler:
        """DDPM's sampler on ``betas`` (a short schedule, all its steps) or, without them, on
        the training schedule visited at ``steps`` evenly spaced steps from the noisiest."""
        if betas is not None:
            if len(betas) != steps:
                raise GenlabError(f"a {steps}-step schedule needs {steps} betas, got {len(betas)}")
            if not all(0 < b < 1 for b in betas):
                raise GenlabError(f"betas must lie in (0, 1), got {list(betas)}")
            return DDPMScheduler(trained_betas=list(betas), clip_sample=False)
        c = self.config
        scheduler = DDPMScheduler(
            "linear",
            c.num_train_timesteps,
            c.beta_start,
            c.beta_end,
            clip_sample=False,
            timestep_spacing="trailing",
        )
        scheduler.set_timesteps(steps)
        return scheduler


class VocoderBatchSource:
    """Training crops of ``segment_frames`` mel frames and their audio, with noise and levels,
    all a function of ``(seed, step)``. The log-mels are computed once per whole clip, so a
    crop's frames are those inference computes from the whole recording."""

    def __init__(
        self,
        clips: Sequence[Tensor],
        model: Vocoder,
        segment_frames: int,
        seed: int = 0,
    ) -> None:
        hop = model.config.mel.hop_length
        self.clips = [c[: len(c) // hop * hop] for c in clips if len(c) >= segment_frames * hop]
        if not self.clips:
            raise GenlabError(
                f"no clip is as long as a training segment ({segment_frames} frames of {hop} "
                "samples): give longer audio or lower segment_frames"
            )
        with torch.no_grad():
            self.mels = [model.features(c)[0] for c in self.clips]
        self.schedule = model.training_schedule()
        self.segment_frames, self.hop, self.seed = segment_frames, hop, seed

    def get_batch(self, step: int, start: int, stop: int, batch_size: int) -> dict[str, Tensor]:
        rng = np.random.default_rng([self.seed, step])
        which = rng.integers(0, len(self.clips), size=batch_size)
        frames = [self.mels[i].shape[1] - self.segment_frames for i in which]
        offsets = [int(rng.integers(0, f + 1)) for f in frames]
        g = torch.Generator().manual_seed(int(rng.integers(2**62)))
        length = self.segment_frames * self.hop
        levels = draw_levels(self.schedule, batch_size, g)
        noise = torch.randn((batch_size, length), generator=g)
        rows = range(start, stop)
        audio = [self.clips[which[j]][offsets[j] * self.hop :][:length] for j in rows]
        mel = [self.mels[which[j]][:, offsets[j] :][:, : self.segment_frames] for j in rows]
        return {
            "sample": torch.stack(audio),
            "noise": noise[start:stop],
            "level": levels[start:stop],
            "mel": torch.stack(mel),
        }


@torch.no_grad()
def vocode(
    model: Vocoder,
    mel: Tensor,
    scheduler: DDPMScheduler,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Waveforms (B, frames * hop) in [-1, 1] for log-mels (B, n_mels, frames) by the reverse
    process on ``scheduler``; all noise comes from ``generator`` (a CPU one fixes the audio on
    any device)."""
    device = next(model.parameters()).device
    mel = mel.to(device)
    shape = (mel.shape[0], mel.shape[-1] * model.config.mel.hop_length)
    gen_device = generator.device if generator is not None else device
    noise = torch.randn(shape, generator=generator, device=gen_device).to(device)
    model_fn = level_model(model, scheduler, mel=mel)
    return sample_loop(model_fn, scheduler, noise, generator=generator).clamp(-1, 1)


def resynthesise(
    model: Vocoder,
    audio: Tensor,
    scheduler: DDPMScheduler,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Audio (L,) or (B, L) -> its mel -> WaveGrad's waveform of the same length (the end is
    padded with silence to a whole frame, then cut)."""
    batch = audio.reshape(-1, audio.shape[-1]).float()
    hop = model.config.mel.hop_length
    length = batch.shape[-1]
    padded = torch.nn.functional.pad(batch, (0, -length % hop))
    device = next(model.parameters()).device
    wav = vocode(model, model.features(padded.to(device)), scheduler, generator)
    return wav[..., :length].reshape(audio.shape).cpu()


# ---------------------------------------------------------------------------------------------
# Run folders

register(Kind(KIND, VocoderConfig, Vocoder))


def load_vocoder(folder: str | os.PathLike, device: str | torch.device = "cpu") -> Vocoder:
    """A WaveGrad run folder, opened in eval mode."""
    model = load(folder, KIND, device).model
    assert isinstance(model, Vocoder)
    return model


def read_schedules(folder: str | os.PathLike) -> dict[int, list[float]]:
    """The searched schedules saved beside a run, by number of steps (none: empty)."""
    path = Path(folder) / SCHEDULES_FILE
    if not path.is_file():
        return {}
    return {int(k): [float(b) for b in v] for k, v in read_json(path).items()}


def save_schedule(folder: str | os.PathLike, betas: Sequence[float]) -> Path:
    """Keep a searched schedule beside the run (one per number of steps, the newest wins)."""
    schedules = {**read_schedules(folder), len(betas): [float(b) for b in betas]}
    path = Path(folder) / SCHEDULES_FILE
    atomic_write_json(path, {str(k): v for k, v in sorted(schedules.items())})
    return path
