"""Steps vs quality vs time: DDPM's 1000 ancestral steps against DDIM at 10, 20, 50 and 100.

The claim (Song et al., 2021, "Denoising Diffusion Implicit Models", table 1): a model trained
with the DDPM objective can be sampled on a short subsequence of its steps with the
deterministic DDIM update, at a quality close to 1000 ancestral DDPM steps for 10-50x less
compute. The experiment samples one trained run with each sampler for the same captions and the
same initial noise and reports FID with genlab features, caption adherence and seconds per
image (all on the machine it runs on).

    genlab experiment diffusion-steps --run runs/shapes32 --n 500
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from genlab.core.sweep import grid, markdown_table
from genlab.recipes.experiments.report import new_figure, save_figure, write_page, write_results
from genlab.recipes.experiments.sampling import Check, ExperimentConfig, baseline, sweep_samples

NAME = "diffusion_steps"


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
    rows, strips = sweep_samples(points, fixed, Path(cfg.sweep_dir) / NAME, cfg.parallel)
    write_results(out_dir, NAME, {"rows": rows, "real_images": real}, strips)

    fig = new_figure(11, 3.8)
    ax_fid, ax_adh, ax_time = fig.subplots(1, 3)
    ddim = [r for r in rows if r["sampler"] == "ddim"]
    ddpm = rows[0]
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
    headers = ["sampler", "steps", f"FID (genlab {ref.net.config.data} features)", "adherence"]
    headers += [a.replace("adherence_", "") for a in attrs] + ["s / image"]
    body = [
        [
            r["sampler"].upper(),
            r["steps"],
            r["fid"],
            r["adherence"],
            *[r[a] for a in attrs],
            r["seconds_per_image"],
        ]
        for r in rows
    ]
    body.append(
        ["real images", "-", real["fid"], real["adherence"], *[real[a] for a in attrs], "-"]
    )
    table = markdown_table(headers, body)
    best = min(ddim, key=lambda r: r["fid"])
    findings = [
        f"DDPM with {cfg.ddpm_steps} steps: FID {ddpm['fid']:.3g}, adherence "
        f"{ddpm['adherence']:.3f}, {ddpm['seconds_per_image']:.3g} s per image.",
        f"The best DDIM setting here is {best['steps']} steps: FID {best['fid']:.3g}, "
        f"adherence {best['adherence']:.3f}, "
        f"{ddpm['seconds_per_image'] / best['seconds_per_image']:.0f}x faster than DDPM.",
        ref.finding(cfg.n),
    ]
    write_page(
        out_dir / f"{NAME}.md",
        f"Sampling steps: DDPM {cfg.ddpm_steps} vs DDIM {'/'.join(map(str, cfg.ddim_steps))}",
        "Does deterministic DDIM on a short subsequence of steps match the ancestral DDPM "
        "steps of the same model? Same run (EMA weights), same captions, same initial noise.",
        table,
        f"{NAME}.png",
        [
            f"run: `{run}` ({spec.data}, {spec.size}x{spec.size})",
            f"n = {cfg.n} generated images per row, one per caption of {cfg.n} reference images "
            f"(FID reference: those {ref.n_reference} real images); FID with so few images is "
            "biased upwards: compare rows, not with other tables",
            f"classifier-free guidance {cfg.guidance}; DDIM eta 0, trailing spacing, x0 not "
            "clipped; DDPM fixed-small variance, x0 clipped to [-1, 1]; network in "
            f"{cfg.precision}",
            f"samples: [{NAME}_samples.png]({NAME}_samples.png) (first 8 per row, rows in "
            "table order)",
        ],
        findings,
        command=command,
    )
    return rows
