"""Steps vs quality vs time: DDPM's 1000 ancestral steps against DDIM at 10, 20, 50 and 100.

The claim (Song et al., 2021, "Denoising Diffusion Implicit Models", table 1): a model trained
with the DDPM objective can be sampled on a short subsequence of its steps with the
deterministic DDIM update, at a quality close to 1000 ancestral DDPM steps for 10-50x less
compute. The experiment samples one trained run with each sampler for the same captions and the
same initial noise and reports FID and KID with genlab features (against a real image per
caption, beside an independent real draw: the floor), each row's FID as a share of DDPM's with a
paired bootstrap interval, caption adherence and seconds per image (on the machine it runs on).

    genlab experiment diffusion-steps --run runs/shapes32 --split test
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from genlab.core.sweep import grid, markdown_table
from genlab.metrics.bootstrap import Interval, bootstrap_statistic
from genlab.metrics.fid import feature_statistics, frechet_distance
from genlab.recipes.experiments.report import new_figure, save_figure, write_page, write_results
from genlab.recipes.experiments.sampling import (
    Check,
    ExperimentConfig,
    baseline,
    sweep_features,
    sweep_samples,
)

NAME = "diffusion_steps"
RESAMPLES = 200  # bootstrap resamples of the FID ratio (a 64x64 matrix square root each)
FID_TOLERANCE = 0.10  # "at FID within 10%": at most this much above DDPM's


@dataclass
class StepsConfig(ExperimentConfig):
    """DDPM's ancestral steps against DDIM at each step count, at one guidance scale."""

    guidance: float = 3.0  # classifier-free guidance scale
    ddim_steps: tuple[int, ...] = (10, 20, 50, 100)  # DDIM step counts, a row each
    ddpm_steps: int = 1000  # DDPM's ancestral steps

    def checks(self) -> dict[str, Check]:
        return {
            **super().checks(),
            "guidance": (self.guidance >= 0, "at least 0"),
            "ddim_steps": (min(self.ddim_steps, default=0) >= 1, "one or more, each at least 1"),
            "ddpm_steps": (self.ddpm_steps >= 1, "at least 1"),
        }


def fid_ratio(features: Tensor, base: Tensor, reference: Tensor, seed: int = 0) -> Interval:
    """FID of ``features`` over FID of ``base`` (both against ``reference``, row i of each for
    caption i) with a paired bootstrap interval: each resample draws captions with replacement
    and takes the same rows of all three sets, so the interval holds the sampling noise of the
    captions and their images, not of a second, independent draw."""
    sets = [f.double().numpy() for f in (features, base, reference)]

    def ratio(rows: np.ndarray) -> float:
        a, b, ref = (feature_statistics(f[rows]) for f in sets)
        return frechet_distance(*a, *ref) / frechet_distance(*b, *ref)

    return bootstrap_statistic(ratio, len(features), n_resamples=RESAMPLES, seed=seed)


def run_experiment(cfg: StepsConfig, command: str = "") -> list[dict[str, float | str]]:
    """Sample ``cfg.run`` with DDPM and each DDIM step count, one sweep point each (in
    ``sweep_dir/diffusion_steps``, reused on a rerun), and write the page into ``out_dir``."""
    cfg.validate()
    run, out_dir = Path(cfg.run), Path(cfg.out_dir)
    ref = baseline(cfg)
    spec, real = ref.spec, ref.real
    fixed = {"run": str(run), **cfg.sweep_settings(ref.features, run), "guidance": cfg.guidance}
    points = [
        {"sampler": "ddpm", "steps": cfg.ddpm_steps},
        *grid(sampler=["ddim"], steps=cfg.ddim_steps),
    ]
    sweep = Path(cfg.sweep_dir) / NAME
    rows, strips = sweep_samples(points, fixed, sweep, cfg.parallel)
    features = sweep_features(points, fixed, sweep)
    ref_features = ref.net.extract(ref.reference)
    ddpm = rows[0]
    for row, feats in zip(rows, features, strict=True):
        ratio = fid_ratio(feats, features[0], ref_features, cfg.seed)
        row["fid_ratio"], row["fid_ratio_low"], row["fid_ratio_high"] = (
            ratio.mean,
            ratio.low,
            ratio.high,
        )
        row["speedup"] = ddpm["seconds_per_image"] / row["seconds_per_image"]
    write_results(out_dir, NAME, {"rows": rows, "real_images": real}, strips)

    fig = new_figure(11, 3.8)
    ax_fid, ax_adh, ax_time = fig.subplots(1, 3)
    ddim = [r for r in rows if r["sampler"] == "ddim"]
    for ax, key, label in (
        (ax_fid, "fid", "FID (genlab features)"),
        (ax_adh, "adherence", "caption adherence"),
        (ax_time, "seconds_per_image", "seconds per image"),
    ):
        ax.plot([r["steps"] for r in ddim], [r[key] for r in ddim], "o-", label="DDIM (eta 0)")
        ax.plot(
            [ddpm["steps"]], [ddpm[key]], "s", color="C3", label=f"DDPM ({cfg.ddpm_steps} steps)"
        )
        if key in real:
            ax.axhline(real[key], color="C2", ls="--", lw=1, label="real images")
        ax.set(xscale="log", xlabel="sampling steps", ylabel=label)
        ax.grid(alpha=0.3)
    ax_time.set_yscale("log")
    ax_fid.legend()
    fig.suptitle(f"Sampling steps vs quality vs time (guidance {cfg.guidance}, n={cfg.n})")
    save_figure(fig, out_dir / f"{NAME}.png")

    attrs = sorted(k for k in real if k.startswith("adherence_"))
    headers = ["sampler", "steps", "FID", "FID / DDPM's [95%]", "KID", "adherence"]
    headers += [a.replace("adherence_", "") for a in attrs] + ["s / image", "speed-up"]
    body = [
        [
            r["sampler"].upper(),
            r["steps"],
            r["fid"],
            f"{r['fid_ratio']:.3f} [{r['fid_ratio_low']:.3f}, {r['fid_ratio_high']:.3f}]",
            r["kid"],
            r["adherence"],
            *[r[a] for a in attrs],
            r["seconds_per_image"],
            f"{r['speedup']:.1f}x",
        ]
        for r in rows
    ]
    body.append(
        [
            "real images (floor)",
            "-",
            real["fid"],
            "-",
            real["kid"],
            real["adherence"],
            *[real[a] for a in attrs],
            "-",
            "-",
        ]
    )
    close = [r for r in ddim if r["fid_ratio"] <= 1 + FID_TOLERANCE]
    fewest = min(close, key=lambda r: r["steps"], default=None)
    findings = [
        f"DDPM with {cfg.ddpm_steps} steps: FID {ddpm['fid']:.3g}, adherence "
        f"{ddpm['adherence']:.3f}, {ddpm['seconds_per_image']:.3g} s per image.",
        *[
            f"DDIM {r['steps']}: {r['speedup']:.1f}x faster than DDPM, FID {r['fid']:.3g} = "
            f"{r['fid_ratio']:.3f} [{r['fid_ratio_low']:.3f}, {r['fid_ratio_high']:.3f}] of "
            f"DDPM's, adherence {r['adherence']:.3f}."
            for r in ddim
        ],
        f"Fewest DDIM steps with FID at most {FID_TOLERANCE:.0%} above DDPM's: "
        + (
            f"{fewest['steps']} ({fewest['speedup']:.1f}x faster)."
            if fewest
            else "none of the step counts measured."
        ),
        ref.finding(),
    ]
    write_page(
        out_dir / f"{NAME}.md",
        f"Sampling steps: DDPM {cfg.ddpm_steps} vs DDIM {'/'.join(map(str, cfg.ddim_steps))}",
        "Does deterministic DDIM on a short subsequence of steps match the ancestral DDPM "
        "steps of the same model, and how much faster? Same run (EMA weights), same captions, "
        "same initial noise.",
        table=markdown_table(headers, body),
        figure=f"{NAME}.png",
        settings=[
            f"run: `{run}` ({spec.data}, {spec.size}x{spec.size})",
            ref.protocol(),
            f"FID / DDPM's: the ratio of the row's FID to DDPM's, with a paired bootstrap "
            f"interval ({RESAMPLES} resamples of the captions, the same rows of every set); "
            "speed-up: DDPM's seconds per image over the row's (batched, this machine)",
            f"classifier-free guidance {cfg.guidance}; DDIM eta 0, trailing spacing; DDPM "
            "fixed-small variance; x0 clipped to [-1, 1] only for a pixel model (DDIM: a pixel "
            f"eps-model), never for a latent one; network in {cfg.precision}",
            f"samples: [{NAME}_samples.png]({NAME}_samples.png) (first 8 per row, rows in "
            "table order)",
        ],
        findings=findings,
        command=command,
    )
    return rows
