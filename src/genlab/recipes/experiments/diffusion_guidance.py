"""Classifier-free guidance scale: adherence to the caption against FID, from 0 to 8.

The claim (Ho & Salimans, 2022, "Classifier-Free Diffusion Guidance", figure 4): raising the
guidance scale s in ``uncond + s * (cond - uncond)`` trades diversity and fidelity for
adherence to the condition: s = 0 is the unconditional model, s = 1 the plain conditional one,
and beyond a moderate s the images follow the caption better while FID worsens. The experiment
samples one run at each scale with the same captions and initial noise, on validation captions
by default: it chooses a scale, which the other experiments then read on test.

    genlab experiment diffusion-guidance --run runs/shapes32
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from genlab.core.sweep import grid, markdown_table
from genlab.recipes.experiments.report import new_figure, save_figure, write_page, write_results
from genlab.recipes.experiments.sampling import Check, ExperimentConfig, baseline, sweep_samples

NAME = "diffusion_guidance"
ADHERENT = 0.95  # the adherence a chosen scale must reach (the text-to-image goal's bar)


@dataclass
class GuidanceConfig(ExperimentConfig):
    """One run sampled at each classifier-free guidance scale."""

    scales: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)  # guidance scales, a row each
    steps: int = 50  # DDIM steps

    def checks(self) -> dict[str, Check]:
        return {
            **super().checks(),
            "scales": (min(self.scales, default=-1) >= 0, "one or more, each at least 0"),
            "steps": (self.steps >= 1, "at least 1"),
        }


def run_experiment(cfg: GuidanceConfig, command: str = "") -> list[dict[str, float]]:
    """Sample ``cfg.run`` at each guidance scale, one sweep point each (in
    ``sweep_dir/diffusion_guidance``, reused on a rerun), and write the page into ``out_dir``."""
    cfg.validate()
    run, out_dir = Path(cfg.run), Path(cfg.out_dir)
    ref = baseline(cfg)
    real = ref.real
    fixed = {
        "run": str(run),
        **cfg.sweep_settings(ref.features, run),
        "sampler": "ddim",
        "steps": cfg.steps,
    }
    points = grid(guidance=cfg.scales)
    rows, strips = sweep_samples(points, fixed, Path(cfg.sweep_dir) / NAME, cfg.parallel)
    write_results(out_dir, NAME, {"rows": rows, "real_images": real}, strips)

    fig = new_figure(10, 4)
    ax_trade, ax_scale = fig.subplots(1, 2)
    ax_trade.plot([r["fid"] for r in rows], [r["adherence"] for r in rows], "o-")
    for r in rows:
        ax_trade.annotate(
            f"s={r['guidance']:g}",
            (r["fid"], r["adherence"]),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax_trade.plot([real["fid"]], [real["adherence"]], "*", color="C3", ms=12, label="real images")
    ax_trade.legend(fontsize=8)
    ax_trade.set(
        xlabel="FID (genlab features, log scale), lower is better",
        xscale="log",
        ylabel="caption adherence",
        title="adherence vs FID",
    )
    attrs = sorted({k for r in rows for k in r if k.startswith("adherence_")})
    for key in ["adherence", *attrs]:
        ax_scale.plot(
            [r["guidance"] for r in rows],
            [r[key] for r in rows],
            "o-",
            label=key.replace("adherence_", ""),
            lw=2 if key == "adherence" else 1,
        )
    ax_scale.axhline(real["adherence"], color="C3", ls="--", lw=1, label="real images")
    ax_scale.set(
        xlabel="guidance scale s",
        ylabel="share matching the caption",
        title="adherence per attribute",
    )
    ax_scale.legend(fontsize=8)
    for ax in (ax_trade, ax_scale):
        ax.grid(alpha=0.3)
    save_figure(fig, out_dir / f"{NAME}.png")

    headers = ["guidance s", "FID", "KID", "adherence"]
    headers += [a.replace("adherence_", "") for a in attrs]
    body = [
        [r["guidance"], r["fid"], r["kid"], r["adherence"], *[r[a] for a in attrs]] for r in rows
    ]
    body.append(
        [
            "real images (floor)",
            real["fid"],
            real["kid"],
            real["adherence"],
            *[real[a] for a in attrs],
        ]
    )
    table = markdown_table(headers, body)
    best_fid = min(rows, key=lambda r: r["fid"])
    best_adh = max(rows, key=lambda r: r["adherence"])
    adherent = [r for r in rows if r["adherence"] >= ADHERENT]
    chosen = min(adherent, key=lambda r: r["fid"], default=None)
    findings = [
        f"Lowest FID at s = {best_fid['guidance']:g} ({best_fid['fid']:.3g}, adherence "
        f"{best_fid['adherence']:.3f}); highest adherence at s = {best_adh['guidance']:g} "
        f"({best_adh['adherence']:.3f}, FID {best_adh['fid']:.3g}).",
        f"Lowest FID among the scales with adherence at least {ADHERENT}: "
        + (
            f"s = {chosen['guidance']:g} (FID {chosen['fid']:.3g}, adherence "
            f"{chosen['adherence']:.3f}), the scale to read the test split at."
            if chosen
            else "none reaches it."
        ),
        ref.finding(),
    ]
    write_page(
        out_dir / f"{NAME}.md",
        "Classifier-free guidance scale: adherence vs FID",
        "How does the guidance scale trade caption adherence against FID? Same run (EMA "
        "weights), same captions, same initial noise at every scale.",
        table,
        f"{NAME}.png",
        [
            f"run: `{run}`",
            ref.protocol(),
            f"DDIM {cfg.steps} steps, eta 0, trailing spacing, x0 clipped only for a pixel "
            f"eps-model, network in {cfg.precision}",
            f"samples: [{NAME}_samples.png]({NAME}_samples.png) (first 8 per scale, rows in "
            "table order)",
        ],
        findings,
        command=command,
    )
    return rows
