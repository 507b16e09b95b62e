"""``genlab audio``: train a WaveGrad vocoder, search its short schedule, vocode audio."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genlab.cli._app import app, say
from genlab.cli.options import config_command
from genlab.core.config import convert
from genlab.core.device import pick_device
from genlab.methods.diffusion.schedule_search import GRID
from genlab.recipes.wavegrad import (
    AudioTrainConfig,
    sample_run,
    search_run,
    train_wavegrad,
    vocode_file,
)

audio = typer.Typer(
    help="Speech by diffusion: a WaveGrad vocoder from mel-spectrogram to waveform.",
    no_args_is_help=True,
)
app.add_typer(audio, name="audio")

RunArg = Annotated[Path, typer.Argument(help="A run folder written by 'genlab audio train'.")]
StepsOpt = Annotated[int, typer.Option("--steps", min=1, help="Refinement steps.")]
Schedule = Annotated[
    str,
    typer.Option(
        "--schedule",
        help="auto (the searched schedule of --steps where the run has one, else linear), "
        "linear (the training schedule at evenly spaced steps) or searched.",
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the sampling noise.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, mps.")]


@audio.command()
@config_command(AudioTrainConfig)
def train(
    cfg: AudioTrainConfig,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
) -> None:
    """Train WaveGrad on built-in speech-like audio (--data synth) or a folder of WAV/FLAC."""
    metrics = train_wavegrad(cfg, resume=resume)
    say(
        f"done: {int(metrics['step'])} steps, {int(metrics['params']):,} parameters; samples in "
        f"{cfg.out}/samples"
    )
    say(f"search a 6-step schedule with: genlab audio search {cfg.out} --steps 6")


@audio.command()
def search(
    run: RunArg,
    steps: StepsOpt = 6,
    n_clips: Annotated[
        int, typer.Option("--n-clips", min=1, help="Synthetic validation clips scored.")
    ] = 8,
    data_seed: Annotated[
        int, typer.Option("--data-seed", help="The run's --data-seed (validation: the next).")
    ] = 0,
    grid: Annotated[
        str,
        typer.Option("--grid", metavar="FLOAT,...", help="The betas a step may take."),
    ] = ",".join(f"{b:g}" for b in GRID),
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Grid-search a short noise schedule on validation audio (WaveGrad) and keep the best
    beside the run, where 'genlab audio vocode --steps N' finds it."""
    betas = convert(grid, tuple[float, ...], "--grid")
    ranked = search_run(
        run,
        steps,
        n_clips,
        data_seed=data_seed,
        grid=betas,
        seed=seed,
        device=str(pick_device(device)),
    )
    for c in ranked[:5]:
        typer.echo(f"LSD {c.score:.3f} dB  betas {', '.join(f'{b:g}' for b in c.betas)}")
    say(f"{len(ranked)} schedules tried; the best is saved in {run}/schedules.json")


@audio.command()
def vocode(
    run: RunArg,
    wav: Annotated[Path, typer.Option("--wav", help="Audio to vocode (WAV, FLAC, OGG).")],
    out: Annotated[Path, typer.Option("--out", help="WAV to write; its spectrogram beside it.")],
    steps: StepsOpt = 6,
    schedule: Schedule = "auto",
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Compute the mel-spectrogram of --wav and turn it back into audio with the run."""
    r = vocode_file(run, wav, out, steps, schedule, seed, str(pick_device(device)))
    say(
        f"wrote {out} and {out.with_suffix('.png')}: log-spectral distance {r['lsd']:.2f} dB, "
        f"mel L1 {r['mel_l1']:.3f}, real-time factor {r['rtf']:.2f}"
    )


@audio.command()
def sample(
    run: RunArg,
    out: Annotated[Path, typer.Option("--out", help="Folder for the WAVs and spectrogram.")],
    seconds: Annotated[float, typer.Option("--seconds", min=0.1, help="Length.")] = 2.0,
    steps: StepsOpt = 6,
    schedule: Schedule = "auto",
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Draw a synthetic utterance (seed --seed), vocode its mel with the run: reference.wav,
    wavegrad.wav and wavegrad.png (spectrograms side by side) in --out."""
    r = sample_run(run, out, seconds, steps, schedule, seed, str(pick_device(device)))
    say(f"wrote {out}/reference.wav, wavegrad.wav and wavegrad.png: LSD {r['lsd']:.2f} dB")
