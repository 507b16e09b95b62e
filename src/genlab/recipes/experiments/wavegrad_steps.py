"""WaveGrad's claim: 6 refinement steps on a searched schedule come close to 1,000.

Chen et al., 2021, "WaveGrad: Estimating Gradients for Waveform Generation", table 2: a network
conditioned on the continuous noise level vocodes about as well in 6 iterations, on a schedule
found by grid search, as in 1,000, and faster than real time. The experiment trains a WaveGrad
run on the built-in speech-like audio (or reuses one), searches a 6-step schedule on validation
clips, then vocodes the test clips' mel-spectrograms on the training schedule at 1,000 / 50 /
25 / 6 evenly spaced steps and on the searched schedule, with the same initial noise, and
reports the log-spectral distance to the reference audio (intervals over clips), mel L1, STOI
and the real-time factor on the machine it runs on.

    genlab experiment wavegrad-steps --run runs/wavegrad
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genlab.core.errors import refuse_invalid
from genlab.core.io import atomic_write_json
from genlab.core.sweep import markdown_table
from genlab.data.audio.figures import save_spectrograms
from genlab.data.audio.io import write_audio
from genlab.methods.diffusion.schedule_search import GRID
from genlab.methods.diffusion.vocoder import load_vocoder, save_schedule
from genlab.metrics.bootstrap import bootstrap_mean, bootstrap_statistic
from genlab.recipes.experiments.report import (
    load_average,
    new_figure,
    save_figure,
    training_seconds,
    write_page,
)
from genlab.recipes.wavegrad import (
    AudioTrainConfig,
    batch_one_rtf,
    evaluate_schedule,
    evaluate_vocoding,
    griffin_lim_vocoder,
    search_steps,
    synth_split,
    train_wavegrad,
    wavegrad_vocoder,
)

NAME = "wavegrad_steps"
GRIFFIN_LIM = "griffin-lim"  # the baseline row's schedule name; its steps are iterations
GOAL_RATIO = 1.10  # the searched 6 steps within 10% of 1,000 steps' log-spectral distance
TRAIN_BUDGET_S = 30 * 60


@dataclass
class WaveGradStepsConfig:
    """Which run, which step counts, how many held-out clips."""

    run: str = "runs/wavegrad"  # a 'genlab audio train' run; trained with its defaults if absent
    steps: tuple[int, ...] = (1000, 50, 25, 6)  # the training schedule at these step counts
    search_steps: int = 6  # steps of the searched schedule
    grid: tuple[float, ...] = GRID  # the betas a searched step may take
    n_val: int = 8  # synthetic validation clips the search scores
    n_test: int = 8  # synthetic test clips every row is measured on
    clip_seconds: float = 1.024  # length of each held-out clip (64 frames of 256 samples)
    data_seed: int = 0  # the run's data seed: validation and test are the next two seeds
    seed: int = 0  # the sampling noise (the same for every row)
    rtf_repeats: int = 3  # timings of one clip at batch 1; the median is reported
    griffin_lim_iterations: int = 32  # the baseline without learning (its row's "steps")
    out_dir: str = "docs/experiments"  # where the page, JSON and figures go

    def validate(self) -> None:
        checks = {
            "steps": min(self.steps, default=0) >= 1,
            "search_steps": 1 <= self.search_steps <= len(set(self.grid)),
            "n_val": self.n_val >= 1,
            "n_test": self.n_test >= 2,
            "clip_seconds": self.clip_seconds > 0,
            "rtf_repeats": self.rtf_repeats >= 1,
            "griffin_lim_iterations": self.griffin_lim_iterations >= 1,
        }
        refuse_invalid(self, checks, "experiment setting")


def run_experiment(cfg: WaveGradStepsConfig, command: str = "") -> list[dict]:
    cfg.validate()
    run, out_dir = Path(cfg.run), Path(cfg.out_dir)
    if not (run / "model.safetensors").is_file():
        train_wavegrad(AudioTrainConfig(out=str(run), data_seed=cfg.data_seed))
    train_s, train_steps = training_seconds(run)
    model = load_vocoder(run)
    rate = model.config.mel.sample_rate
    val = synth_split("validation", cfg.n_val, cfg.clip_seconds, rate, cfg.data_seed)
    test = synth_split("test", cfg.n_test, cfg.clip_seconds, rate, cfg.data_seed)

    start = time.perf_counter()
    ranked = search_steps(model, val, cfg.search_steps, cfg.grid, cfg.seed)
    search_s = time.perf_counter() - start
    best = ranked[0].betas
    save_schedule(run, best)

    arms = [("linear", n, model.scheduler(n)) for n in cfg.steps]
    arms.append(("searched", cfg.search_steps, model.scheduler(cfg.search_steps, best)))
    rows, audio = [], {}
    for schedule, n, scheduler in arms:
        result = evaluate_schedule(model, test, scheduler, cfg.seed)
        audio[(schedule, n)] = result.pop("audio")
        vocode = wavegrad_vocoder(model, scheduler, cfg.seed)
        rtf1 = batch_one_rtf(vocode, test[0], rate, cfg.rtf_repeats)
        rows.append({"schedule": schedule, "steps": n, **result, "rtf_batch1": rtf1})
        print(f"{schedule} {n}: LSD {np.mean(result['lsd']):.3f} dB, rtf {rtf1:.3f}", flush=True)
    # the baseline without learning, on the same mels: Griffin-Lim's phase recovery
    mel, iterations = model.config.mel, cfg.griffin_lim_iterations
    result = evaluate_vocoding(mel, test, griffin_lim_vocoder(mel, iterations, cfg.seed))
    audio[(GRIFFIN_LIM, iterations)] = result.pop("audio")
    vocode = griffin_lim_vocoder(mel, iterations, cfg.seed)
    rtf1 = batch_one_rtf(vocode, test[0], rate, cfg.rtf_repeats)
    rows.append({"schedule": GRIFFIN_LIM, "steps": iterations, **result, "rtf_batch1": rtf1})

    top = max(cfg.steps)  # the most steps: every ratio is to this row
    reference = next(r for r in rows if r["schedule"] == "linear" and r["steps"] == top)
    searched = next(r for r in rows if r["schedule"] == "searched")
    baseline = rows[-1]
    for r in rows:
        r["lsd_mean"] = bootstrap_mean(r["lsd"], seed=cfg.seed).to_dict()
        r["mel_l1_mean"] = float(np.mean(r["mel_l1"]))
        r["stoi"] = [None if math.isnan(v) else v for v in r["stoi"]]
        scored = [v for v in r["stoi"] if v is not None]  # the clips pystoi can score
        r["stoi_mean"] = float(np.mean(scored)) if scored else None
        a, b = np.array(r["lsd"]), np.array(reference["lsd"])
        r["lsd_ratio"] = bootstrap_statistic(
            lambda i, a=a, b=b: float(a[i].mean() / b[i].mean()), len(a), seed=cfg.seed
        ).to_dict()
    ratio = searched["lsd_ratio"]
    fastest = searched["rtf_batch1"]
    results = {
        "rows": rows,
        "search": {
            "steps": cfg.search_steps,
            "grid": list(cfg.grid),
            "candidates": len(ranked),
            "seconds": search_s,
            "best": [{"betas": list(c.betas), "val_lsd": c.score} for c in ranked[:5]],
            "worst_val_lsd": ranked[-1].score,
        },
        "training": {"seconds": train_s, "steps": train_steps, "run": str(run)},
        "params": sum(p.numel() for p in model.parameters()),
        "load_average": load_average(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / f"{NAME}.json", results)

    # one test clip as the ears and eyes get it: WAVs and spectrograms of the main rows
    clip_dir = out_dir / f"{NAME}_audio"
    panels = {"reference": test[0]}
    write_audio(clip_dir / "reference.wav", test[0], rate)
    shown = [("linear", max(cfg.steps)), ("searched", cfg.search_steps)]
    shown += [("linear", cfg.search_steps), (GRIFFIN_LIM, cfg.griffin_lim_iterations)]
    for schedule, n in shown:
        if (schedule, n) in audio:
            wav = audio[(schedule, n)][0]
            panels[f"{schedule}, {n} steps"] = wav
            write_audio(clip_dir / f"{schedule}{n}.wav", wav, rate)
    save_spectrograms(out_dir / f"{NAME}_spectrograms.png", panels, mel)

    fig = new_figure(10, 3.8)
    ax_lsd, ax_rtf = fig.subplots(1, 2)
    linear = [r for r in rows if r["schedule"] == "linear"]
    for group, style, label in (
        (linear, "o-", "training schedule, even steps"),
        ([searched], "s", f"searched {cfg.search_steps}-step schedule"),
    ):
        lsd = [r["lsd_mean"] for r in group]
        ax_lsd.errorbar(
            [r["steps"] for r in group],
            [d["mean"] for d in lsd],
            yerr=[[d["mean"] - d["low"] for d in lsd], [d["high"] - d["mean"] for d in lsd]],
            fmt=style,
            capsize=3,
            label=label,
        )
        ax_rtf.plot([r["steps"] for r in group], [r["rtf_batch1"] for r in group], style)
    ax_lsd.axhline(
        baseline["lsd_mean"]["mean"], color="C7", ls=":", lw=1,
        label=f"Griffin-Lim, {cfg.griffin_lim_iterations} iterations",
    )  # fmt: skip
    goal = GOAL_RATIO * reference["lsd_mean"]["mean"]
    ax_lsd.axhline(goal, color="C2", ls="--", lw=1, label=f"goal: {top:,} steps + 10%")
    ax_lsd.set(xscale="log", xlabel="refinement steps", ylabel="log-spectral distance (dB)")
    ax_rtf.axhline(1.0, color="C2", ls="--", lw=1, label="real time")
    ax_rtf.set(xscale="log", yscale="log", xlabel="refinement steps")
    ax_rtf.set_ylabel("real-time factor, batch 1")
    for ax in (ax_lsd, ax_rtf):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("WaveGrad: refinement steps vs quality vs speed (test clips)")
    save_figure(fig, out_dir / f"{NAME}.png")

    def interval(d: dict) -> str:
        return f"{d['mean']:.3f} [{d['low']:.3f}, {d['high']:.3f}]"

    body = [
        [
            r["schedule"],
            r["steps"],
            interval(r["lsd_mean"]),
            f"{r['lsd_ratio']['mean']:.3f} [{r['lsd_ratio']['low']:.3f}, "
            f"{r['lsd_ratio']['high']:.3f}]",
            f"{r['mel_l1_mean']:.3f}",
            "—" if r["stoi_mean"] is None else f"{r['stoi_mean']:.3f}",
            f"{r['rtf_batch1']:.3g}",
            f"{r['rtf']:.3g}",
        ]
        for r in rows
    ]
    headers = ["schedule", "steps", "LSD dB [95%]", f"LSD / {top:,} steps [95%]", "mel L1",
               "STOI", "RTF, batch 1", "RTF, batch 8"]  # fmt: skip
    met = ratio["mean"] <= GOAL_RATIO
    betas = ", ".join(f"{b:g}" for b in best)
    findings = [
        f"The searched {cfg.search_steps}-step schedule ({betas}) reaches "
        f"{ratio['mean']:.3f}x the {top:,}-step log-spectral distance [{ratio['low']:.3f}, "
        f"{ratio['high']:.3f}]: the goal (within 10%) is {'met' if met else 'not met'}.",
    ]
    even = next((r for r in linear if r["steps"] == cfg.search_steps), None)
    if even is not None:
        better = even["lsd_ratio"]["mean"] > ratio["mean"]
        findings.append(
            f"The training schedule at {cfg.search_steps} evenly spaced steps gives "
            f"{even['lsd_ratio']['mean']:.3f}x: the searched schedule is "
            f"{'better' if better else 'no better'} at the same number of steps."
        )
    gl = baseline["lsd_mean"]["mean"]
    findings.append(
        f"Griffin-Lim ({cfg.griffin_lim_iterations} iterations, no learning) on the same mels: "
        f"{gl:.2f} dB, {baseline['lsd_ratio']['mean']:.2f}x the {top:,}-step distance; WaveGrad "
        f"is {'closer to' if reference['lsd_mean']['mean'] < gl else 'farther from'} the "
        "reference than this baseline at 1,000 steps, and "
        f"{'closer' if searched['lsd_mean']['mean'] < gl else 'farther'} at "
        f"{cfg.search_steps} searched steps."
    )
    findings += [
        f"{cfg.search_steps}-step vocoding runs at {fastest:.3f}x real time at batch 1 on this "
        f"machine ({'faster' if fastest < 1 else 'slower'} than real time; goal: faster); "
        f"{top:,} steps at {reference['rtf_batch1']:.3g}x.",
        f"Training took {train_s / 60:.1f} min ({train_steps} steps; budget 30 min: "
        f"{'met' if train_s <= TRAIN_BUDGET_S else 'not met'}); the search tried "
        f"{len(ranked)} schedules in {search_s / 60:.1f} min.",
    ]
    write_page(
        out_dir / f"{NAME}.md",
        f"WaveGrad: {top:,} refinement steps vs a searched {cfg.search_steps}",
        "Does a WaveGrad vocoder, conditioned on the continuous noise level, vocode as well in "
        f"{cfg.search_steps} steps on a searched schedule as in {top:,}? Same run, same test "
        "clips' mel-spectrograms, same initial noise in every row; LSD intervals are bootstrap "
        "over clips, the ratio's interval is a paired bootstrap.",
        markdown_table(headers, body),
        f"{NAME}.png",
        [
            f"run: `{run}` ({results['params']:,} parameters, {train_steps} training steps)",
            f"test: {cfg.n_test} synthetic clips of {cfg.clip_seconds} s (data seed "
            f"{cfg.data_seed + 2}); search: {cfg.n_val} validation clips (seed "
            f"{cfg.data_seed + 1}), every increasing choice of {cfg.search_steps} betas from "
            f"{', '.join(f'{b:g}' for b in cfg.grid)}, ranked by mean LSD",
            f"{GRIFFIN_LIM}: the baseline without learning, the mels inverted by the "
            "filterbank's pseudo-inverse and the phase by fast Griffin-Lim (Perraudin et al. "
            "2013) from random phases; its 'steps' are iterations",
            "sampler: DDPM ancestral steps (fixed-small variance, no clipping until the "
            "output, clamped to [-1, 1]); the network is given the level sqrt(abar) of the "
            "schedule that runs; linear rows visit the training schedule's 1,000 steps at "
            "evenly spaced ones from the noisiest",
            "LSD: per clip, the frame mean of the RMS difference of the two log power spectra "
            "(dB; STFT 1024 / hop 256); mel L1: mean absolute log-mel difference; STOI: Taal et "
            "al. 2011 (pystoi), the mean over the clips it can score (it needs 384 ms of "
            f"non-silent speech: {sum(v is not None for v in reference['stoi'])} of "
            f"{cfg.n_test}); RTF: compute seconds per second of audio",
            f"listen: [{NAME}_audio/]({NAME}_audio/) holds the first test clip as reference, "
            f"{top:,} steps and the {cfg.search_steps}-step rows; spectrograms: "
            f"[{NAME}_spectrograms.png]({NAME}_spectrograms.png)",
            f"load average while measuring: {results['load_average']}",
        ],
        findings,
        command=command,
    )
    return rows
