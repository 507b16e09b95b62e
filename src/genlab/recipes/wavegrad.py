"""Speech by diffusion: train a WaveGrad vocoder and turn mel-spectrograms back into audio.

The recipe wires the vocoder (:mod:`genlab.methods.diffusion.vocoder`) to the shared trainer on
built-in speech-like audio (:mod:`genlab.data.audio.synth`: voiced harmonics under moving
formants, pitch contours, noise bursts, silences; seeded, so it runs offline) or a folder of
WAV/FLAC/OGG files. Training, validation and test audio never overlap: the synthetic sets come
from three seeds, a folder gives every twentieth file (sorted by name) to validation. At the end
the run writes ``samples/``: validation clips and their vocoded versions as WAVs, with their
spectrograms side by side in one PNG. ``search`` finds a short schedule on validation audio and
keeps it beside the run (``schedules.json``), which ``vocode`` then uses.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from genlab.core.errors import GenlabError, refuse_invalid
from genlab.core.rng import seed_everything
from genlab.core.train_config import TrainConfig
from genlab.core.trainer import Trainer
from genlab.data.audio.figures import save_spectrograms
from genlab.data.audio.griffin_lim import griffin_lim
from genlab.data.audio.io import read_audio, read_folder, write_audio
from genlab.data.audio.mel import MelConfig, log_mel
from genlab.data.audio.synth import SynthConfig, synth_clips, synth_speech
from genlab.methods.diffusion.noise_level import NoiseLevelLoss
from genlab.methods.diffusion.samplers import DDPMScheduler
from genlab.methods.diffusion.schedule_search import (
    GRID,
    Candidate,
    candidate_schedules,
    search_schedule,
)
from genlab.methods.diffusion.vocoder import (
    KIND,
    Vocoder,
    VocoderBatchSource,
    VocoderConfig,
    load_vocoder,
    read_schedules,
    resynthesise,
    save_schedule,
)
from genlab.metrics.audio import log_spectral_distance, mel_l1, stoi
from genlab.nets.wavegrad import WaveGradConfig

SYNTH = "synth"
SAMPLES_DIR = "samples"
SCHEDULES = ("auto", "linear", "searched")  # which schedule vocodes: see ``open_scheduler``
VALIDATION_EVERY = 20  # a folder's every twentieth file is validation audio
SAMPLE_SET = 1_000_003  # the second seed of `genlab audio sample`'s utterances (no split uses it)


@dataclass
class AudioTrainConfig:
    """What audio, which network, which training schedule; the defaults train on a 2-core CPU
    in about 20 minutes."""

    out: str = "runs/wavegrad"  # run folder to write
    data: str = SYNTH  # "synth" (built-in speech-like audio) or a folder of WAV/FLAC/OGG files
    sample_rate: int = 16000  # Hz; a folder's files are resampled to it
    n_clips: int = 1000  # synth: training clips
    clip_seconds: float = 1.024  # synth: length of each clip (64 frames of 256 samples)
    data_seed: int = 0  # synth: training audio; validation and test use the next two seeds
    n_val: int = 8  # validation clips (synth) scored during training and in the samples
    segment_frames: int = 16  # mel frames per training crop (times the hop in samples)
    n_mels: int = 80
    n_fft: int = 1024
    factors: tuple[int, ...] = (4, 4, 4, 2, 2)  # upsampling factors; their product is the hop
    mel_channels: int = 96
    up_channels: tuple[int, ...] = (96, 64, 48, 32, 16)
    down_channels: tuple[int, ...] = (8, 16, 32, 48, 64)
    beta_start: float = 1e-6  # the training schedule: linear betas (WaveGrad's)
    beta_end: float = 0.01
    num_train_timesteps: int = 1000
    sample_steps: int = 50  # refinement steps of the sample WAVs written at the end
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            max_steps=5000,
            batch_size=8,
            lr=1e-3,
            warmup_steps=100,
            weight_decay=0.0,
            eval_every=500,
            eval_batches=4,
            checkpoint_every=500,
        )
    )

    def validate(self) -> None:
        checks = {
            "sample_rate": self.sample_rate >= 1000,
            "n_clips": self.n_clips >= 1,
            "clip_seconds": self.clip_seconds > 0,
            "n_val": self.n_val >= 1,
            "segment_frames": self.segment_frames >= 1,
            "sample_steps": 1 <= self.sample_steps <= self.num_train_timesteps,
        }
        refuse_invalid(self, checks)

    def vocoder_config(self) -> VocoderConfig:
        net = WaveGradConfig(
            n_mels=self.n_mels,
            factors=self.factors,
            mel_channels=self.mel_channels,
            up_channels=self.up_channels,
            down_channels=self.down_channels,
        )
        mel = MelConfig(
            sample_rate=self.sample_rate,
            n_fft=self.n_fft,
            hop_length=net.hop_length,
            win_length=self.n_fft,
            n_mels=self.n_mels,
        )
        return VocoderConfig(net, mel, self.beta_start, self.beta_end, self.num_train_timesteps)


def synth_split(split: str, n: int, seconds: float, sample_rate: int, seed: int) -> torch.Tensor:
    """``n`` synthetic clips of ``split`` (train, validation or test: seeds seed, +1, +2)."""
    offset = {"train": 0, "validation": 1, "test": 2}[split]
    return synth_clips(n, seconds, seed + offset, SynthConfig(sample_rate=sample_rate))


def training_audio(cfg: AudioTrainConfig) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The training and validation clips of ``cfg.data``."""
    if cfg.data == SYNTH:
        train = synth_split("train", cfg.n_clips, cfg.clip_seconds, cfg.sample_rate, cfg.data_seed)
        val = synth_split("validation", cfg.n_val, cfg.clip_seconds, cfg.sample_rate, cfg.data_seed)
        return list(train), list(val)
    if not Path(cfg.data).is_dir():
        raise GenlabError(f"--data {cfg.data}: give 'synth' or a folder of WAV/FLAC/OGG files")
    clips = read_folder(cfg.data, cfg.sample_rate)
    if len(clips) < 2:
        raise GenlabError(f"{cfg.data} holds one audio file; give two or more (one validates)")
    val = clips[::VALIDATION_EVERY]
    train = [c for i, c in enumerate(clips) if i % VALIDATION_EVERY]
    return train, val


def train_wavegrad(cfg: AudioTrainConfig, resume: bool = False) -> dict[str, float]:
    """Train into ``cfg.out``, write the sample WAVs and spectrograms; return the last metrics."""
    cfg.validate()
    train_clips, val_clips = training_audio(cfg)
    seed = cfg.train.seed
    seed_everything(seed)  # the initial weights follow the seed too
    model = Vocoder(cfg.vocoder_config())
    trainer = Trainer(
        model,
        NoiseLevelLoss(),
        VocoderBatchSource(train_clips, model, cfg.segment_frames, seed),
        cfg.train,
        cfg.out,
        eval_data=VocoderBatchSource(val_clips, model, cfg.segment_frames, seed + 1),
        model_kind=KIND,
        model_config=model.config.to_dict(),
        resume=resume,
    )
    metrics = trainer.fit()
    model.eval()
    write_samples(model, val_clips[:2], Path(cfg.out) / SAMPLES_DIR, cfg.sample_steps, seed)
    metrics["params"] = float(sum(p.numel() for p in model.parameters()))
    return metrics


def write_samples(
    model: Vocoder, clips: Sequence[torch.Tensor], folder: Path, steps: int, seed: int
) -> None:
    """Each clip and its vocoded version as WAVs, and their spectrograms side by side."""
    rate = model.config.mel.sample_rate
    generator = torch.Generator().manual_seed(seed)
    for i, clip in enumerate(clips):
        out = resynthesise(model, clip, model.scheduler(steps), generator)
        write_audio(folder / f"clip{i}_reference.wav", clip, rate)
        write_audio(folder / f"clip{i}_wavegrad{steps}.wav", out, rate)
        panels = {"reference": clip, f"WaveGrad, {steps} steps": out}
        save_spectrograms(folder / f"clip{i}.png", panels, model.config.mel)


# ---------------------------------------------------------------------------------------------
# Vocoding with a trained run


def open_scheduler(
    run: str | os.PathLike, model: Vocoder, steps: int, schedule: str = "auto"
) -> DDPMScheduler:
    """The sampler for ``steps``: ``searched`` takes the run's searched schedule of that many
    steps, ``linear`` the training schedule at ``steps`` evenly spaced steps, ``auto`` the
    searched one where the run has it, else the linear one."""
    if schedule not in SCHEDULES:
        raise GenlabError(f"unknown schedule '{schedule}'; choose one of {', '.join(SCHEDULES)}")
    searched = read_schedules(run).get(steps)
    if schedule == "searched" and searched is None:
        raise GenlabError(
            f"{run} has no searched {steps}-step schedule; run: genlab audio search {run} "
            f"--steps {steps}"
        )
    if schedule == "linear" or searched is None:
        return model.scheduler(steps)
    return model.scheduler(steps, searched)


def vocode_file(
    run: str | os.PathLike,
    wav: str | os.PathLike,
    out: str | os.PathLike,
    steps: int = 6,
    schedule: str = "auto",
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, float]:
    """Read ``wav``, vocode its mel with the run, write ``out`` and ``out``'s spectrogram PNG
    beside it; return the log-spectral distance, mel L1 and the real-time factor."""
    model = load_vocoder(run, device)
    scheduler = open_scheduler(run, model, steps, schedule)
    audio = read_audio(wav, model.config.mel.sample_rate)
    return _vocode_audio(model, scheduler, audio, f"input: {Path(wav).name}", out, seed)


def sample_run(
    run: str | os.PathLike,
    out_dir: str | os.PathLike,
    seconds: float = 2.0,
    steps: int = 6,
    schedule: str = "auto",
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, float]:
    """Draw a synthetic utterance (from ``seed``, apart from the training, validation and test
    sets) and vocode its mel: ``reference.wav``, ``wavegrad.wav`` and ``wavegrad.png``."""
    model = load_vocoder(run, device)
    scheduler = open_scheduler(run, model, steps, schedule)
    rate = model.config.mel.sample_rate
    audio = torch.from_numpy(synth_speech(seconds, [seed, SAMPLE_SET], SynthConfig(rate)))
    write_audio(Path(out_dir) / "reference.wav", audio, rate)
    return _vocode_audio(model, scheduler, audio, "reference", Path(out_dir) / "wavegrad.wav", seed)


def _vocode_audio(
    model: Vocoder,
    scheduler: DDPMScheduler,
    audio: torch.Tensor,
    name: str,
    out: str | os.PathLike,
    seed: int,
) -> dict[str, float]:
    """Vocode ``audio``'s mel, write the WAV and both spectrograms, score it, time it."""
    rate = model.config.mel.sample_rate
    steps = len(scheduler.timesteps)
    start = time.perf_counter()
    result = resynthesise(model, audio, scheduler, torch.Generator().manual_seed(seed))
    rtf = (time.perf_counter() - start) / (len(audio) / rate)
    out = write_audio(out, result, rate)
    whole = len(audio) // model.config.mel.hop_length * model.config.mel.hop_length
    audio, result = audio[:whole], result[:whole]  # the spectrograms and metrics take frames
    panels = {name: audio, f"WaveGrad, {steps} steps": result}
    save_spectrograms(out.with_suffix(".png"), panels, model.config.mel)
    scores = {k: v[0] for k, v in clip_scores(model.config.mel, audio[None], result[None]).items()}
    return {**scores, "rtf": rtf, "steps": steps}


Vocode = Callable[[torch.Tensor], torch.Tensor]  # a batch of clips (B, L) -> their re-synthesis


def clip_scores(mel: MelConfig, reference: torch.Tensor, estimate: torch.Tensor) -> dict:
    """Per clip: the log-spectral distance (dB) and the log-mel L1 of ``estimate``."""
    return {
        "lsd": log_spectral_distance(reference, estimate, mel).tolist(),
        "mel_l1": mel_l1(reference, estimate, mel).tolist(),
    }


def wavegrad_vocoder(model: Vocoder, scheduler: DDPMScheduler, seed: int = 0) -> Vocode:
    """WaveGrad on ``scheduler``, its noise drawn in turn from one generator seeded with
    ``seed`` (the same seed and batches give the same audio)."""
    generator = torch.Generator().manual_seed(seed)
    return lambda batch: resynthesise(model, batch, scheduler, generator)


def griffin_lim_vocoder(mel: MelConfig, iterations: int = 32, seed: int = 0) -> Vocode:
    """The no-learning baseline on the same mels: fast Griffin-Lim (see
    :mod:`genlab.data.audio.griffin_lim`) from phases drawn from one seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    return lambda batch: griffin_lim(log_mel(batch, mel), mel, iterations, generator=generator)


def vocode_clips(
    clips: torch.Tensor, vocode: Vocode, mel: MelConfig, batch_size: int = 8
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``clips`` (N, L) cut to whole frames (the metrics need them), their re-synthesis by
    ``vocode`` in batches of ``batch_size``, and the compute seconds it took."""
    clips = clips[:, : clips.shape[1] // mel.hop_length * mel.hop_length]
    outs, seconds = [], 0.0
    for i in range(0, len(clips), batch_size):
        start = time.perf_counter()
        outs.append(vocode(clips[i : i + batch_size]))
        seconds += time.perf_counter() - start
    return clips, torch.cat(outs), seconds


def evaluate_vocoding(
    mel: MelConfig, clips: torch.Tensor, vocode: Vocode, batch_size: int = 8
) -> dict[str, object]:
    """``vocode`` ``clips`` (N, L); per-clip LSD, mel L1 and STOI against them, the real-time
    factor (compute seconds per second of audio, batches of ``batch_size``) and the audio."""
    clips, out, seconds = vocode_clips(clips, vocode, mel, batch_size)
    return {
        **clip_scores(mel, clips, out),
        "stoi": stoi(clips, out, mel.sample_rate).tolist(),
        "rtf": seconds / (clips.numel() / mel.sample_rate),
        "audio": out,
    }


def evaluate_schedule(
    model: Vocoder,
    clips: torch.Tensor,
    scheduler: DDPMScheduler,
    seed: int = 0,
    batch_size: int = 8,
) -> dict[str, object]:
    """Vocode ``clips`` (N, L) on ``scheduler``; see :func:`evaluate_vocoding`."""
    vocode = wavegrad_vocoder(model, scheduler, seed)
    return evaluate_vocoding(model.config.mel, clips, vocode, batch_size)


def batch_one_rtf(vocode: Vocode, clip: torch.Tensor, sample_rate: int, repeats: int) -> float:
    """Median seconds of compute per second of audio over ``repeats`` re-syntheses of one
    clip: what vocoding one utterance costs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        vocode(clip[None])
        times.append(time.perf_counter() - start)
    return statistics.median(times) / (len(clip) / sample_rate)


def search_steps(
    model: Vocoder,
    clips: torch.Tensor,
    steps: int = 6,
    grid: Sequence[float] = GRID,
    seed: int = 0,
    progress: Callable[[int, Candidate], None] | None = None,
) -> list[Candidate]:
    """WaveGrad's grid search: every increasing ``steps``-beta schedule from ``grid``, scored
    by the mean log-spectral distance of ``clips`` (held-out audio) vocoded on it with the same
    noise; best first."""

    mel = model.config.mel

    def score(betas: tuple[float, ...]) -> float:
        vocode = wavegrad_vocoder(model, model.scheduler(steps, betas), seed)
        reference, out, _ = vocode_clips(clips, vocode, mel)
        return log_spectral_distance(reference, out, mel).mean().item()

    return search_schedule(score, candidate_schedules(steps, grid), progress)


def search_run(
    run: str | os.PathLike,
    steps: int = 6,
    n_clips: int = 8,
    clip_seconds: float = 1.024,
    data_seed: int = 0,
    grid: Sequence[float] = GRID,
    seed: int = 0,
    device: str = "cpu",
    progress: Callable[[int, Candidate], None] | None = None,
) -> list[Candidate]:
    """Search a run's ``steps``-step schedule on synthetic validation clips (the seed after
    ``data_seed``, as in training) and save the best beside the run."""
    model = load_vocoder(run, device)
    rate = model.config.mel.sample_rate
    clips = synth_split("validation", n_clips, clip_seconds, rate, data_seed)
    ranked = search_steps(model, clips, steps, grid, seed, progress)
    save_schedule(run, ranked[0].betas)
    return ranked
