"""Pixel diffusion, latent diffusion and a cascade at the same training minutes: cost and
quality of the three ways text-to-image systems are built.

Stable Diffusion (Rombach et al., 2022) denoises an autoencoder's latents, 4x smaller a side
here, then decodes; Imagen (Saharia et al., 2022) and cascaded diffusion (Ho et al., 2021) draw
a small image and enlarge it with a text-conditioned diffusion upsampler; the plain model
(Ho et al., 2020) denoises the pixels. Each arm gets the same minutes of diffusion training
(the cascade splits them between its two stages; the latent arm's autoencoder, trained once on
images alone, is reported apart) on the shapes with held-out compositions, and is measured
alike: FID with its real-vs-real floor, KID, caption adherence on seen and unseen compositions,
and seconds per image at the same number of DDIM steps.

    genlab experiment pixel-vs-latent             # 3 arms x 20 minutes, plus a 5-minute VAE
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_json, read_json
from genlab.core.sweep import markdown_table
from genlab.data.images import save_grid
from genlab.data.images.grid import read_grid
from genlab.methods.diffusion.cascade import DEFAULT_AUG_LEVEL, generate_cascade
from genlab.methods.diffusion.text_conditioned import load_diffusion
from genlab.methods.diffusion.upsampler import load_upsampler
from genlab.recipes.cascade import UPSAMPLER, UpsamplerSettings, train_upsampler
from genlab.recipes.diffusion_eval import evaluation_groups
from genlab.recipes.experiments.report import new_figure, save_figure, write_page
from genlab.recipes.experiments.t2i_arms import (
    DONE_FILE,
    STRIP,
    ArmsConfig,
    Draw,
    Instruments,
    autoencoder,
    data,
    diffusion_arm,
    diffusion_draw,
    measure_arm,
    measurement_key,
    strip,
    trained,
)

NAME = "pixel_vs_latent"
ARMS = ("latent", "pixel", "cascade")
SCALE = 3  # the samples grid's enlargement (its PNG is read back when rows are kept)


@dataclass
class PixelVsLatentConfig(ArmsConfig):
    """Which arms, and the cascade's small side."""

    minutes: float = 20.0  # diffusion training minutes of every arm (the cascade: half per stage)
    arms: tuple[str, ...] = ARMS  # latent, pixel, cascade: a row each
    low_res: int = 16  # the cascade's base model draws this side, its upsampler enlarges it
    runs_dir: str = "runs/pixel_vs_latent"  # a run folder per arm, reused once trained

    def validate(self) -> None:
        super().validate()
        if not self.arms or set(self.arms) - set(ARMS):
            raise GenlabError(f"arms must be some of {', '.join(ARMS)}, got {self.arms}")
        if self.low_res < 16 or self.low_res >= self.size:
            raise GenlabError(f"low_res must be at least 16 and below --size, got {self.low_res}")


def cascade_runs(cfg: PixelVsLatentConfig) -> tuple[Path, Path, dict[str, float]]:
    """The cascade's base (``low_res`` side) and upsampler, each half the minutes; their
    training summed."""
    root = Path(cfg.runs_dir) / "cascade"
    half = replace(cfg, minutes=cfg.minutes / 2)
    base = diffusion_arm(half, root / "base", data=data(cfg, cfg.low_res))
    base_done = trained(base)
    up = root / "upsampler"
    settings = UpsamplerSettings(low_res=cfg.low_res)
    up_done = trained(
        diffusion_arm(half, up, model=UPSAMPLER),
        lambda image, resume: train_upsampler(image, settings, resume=resume),
    )
    total = {k: base_done[k] + up_done[k] for k in ("seconds", "steps", "params")}
    return Path(base.out), up, total


def cascade_draw(base: Path, upsampler: Path, cfg: PixelVsLatentConfig) -> Draw:
    """The cascade as ``genlab image sample UPSAMPLER --base BASE`` draws: both stages DDIM at
    ``cfg.steps``, the base guided, its samples noise-augmented at the default level."""
    base_model, base_tokens = load_diffusion(base)
    up_model, up_tokens = load_upsampler(upsampler)

    def draw(captions: list[str], seed: int) -> torch.Tensor:
        base_scheduler, up_scheduler = base_model.scheduler("ddim"), up_model.scheduler("ddim")
        base_scheduler.set_timesteps(cfg.steps)
        up_scheduler.set_timesteps(cfg.steps)
        return generate_cascade(
            base_model,
            base_tokens,
            up_model,
            up_tokens,
            captions,
            base_scheduler,
            up_scheduler,
            base_guidance=cfg.guidance,
            aug_level=DEFAULT_AUG_LEVEL,
            seed=seed,
            batch_size=cfg.batch_size,
        ).images

    return draw


def earlier_rows(cfg: PixelVsLatentConfig) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The page's earlier rows, each with its sample strip, and its autoencoder, when they were
    measured with these settings (arms aside): an arm measured by an earlier run stays on the
    page, so arms can be run one command at a time."""
    out_dir = Path(cfg.out_dir)
    saved_file, grid = out_dir / f"{NAME}.json", out_dir / f"{NAME}_samples.png"
    if not (saved_file.is_file() and grid.is_file()):
        return {}, {}
    saved = read_json(saved_file)
    now = {k: v for k, v in vars(cfg).items() if k != "arms"}
    # a setting added since that page was written reads as its default there
    then = {k: saved.get("settings", {}).get(k, v) for k, v in vars(type(cfg)()).items()}
    then.pop("arms")
    if then != now:
        return {}, {}
    images = read_grid(grid, cfg.size, nrow=STRIP, scale=SCALE)
    rows = {r["arm"]: r for r in saved["rows"]}
    strips = {r["arm"]: images[STRIP * i : STRIP * (i + 1)] for i, r in enumerate(saved["rows"])}
    return {"rows": rows, "autoencoder": saved.get("autoencoder", {})}, strips


def same_instruments(row: dict[str, Any], floor: dict[str, dict[str, float]]) -> bool:
    """Whether ``row`` was measured against this floor's FID and KID: the same real draw and
    feature net (a feature net trained elsewhere moves every FID, the floor's included)."""
    return all(
        row[group]["fid_floor"] == floor[group]["fid"]
        and row[group]["kid_floor"] == floor[group]["kid"]
        for group in floor
    )


def run_experiment(cfg: PixelVsLatentConfig, command: str = "") -> dict[str, Any]:
    cfg.validate()
    tools = Instruments(cfg)
    groups = evaluation_groups(data(cfg), tools.net, cfg.n, cfg.split)
    real_clip = tools.real_clip_scores(groups)
    floor = {name: {**g.floor, "clip_score": real_clip[name]} for name, g in groups.items()}
    earlier, earlier_strips = earlier_rows(cfg)
    kept = [a for a in ARMS if a not in cfg.arms and a in earlier.get("rows", {})]
    rows, strips = [], []
    vae_done: dict[str, float] = earlier["autoencoder"] if "latent" in kept else {}
    for arm in ARMS:
        if arm in kept:
            rows.append(earlier["rows"][arm])
            strips.append(earlier_strips[arm])
            continue
        if arm not in cfg.arms:
            continue
        if arm == "cascade":
            base, up, done = cascade_runs(cfg)
            run, draw = up, cascade_draw(base, up, cfg)
            key = measurement_key(cfg, tools, up, extra=str(base))
        else:
            run = Path(cfg.runs_dir) / arm
            changes: dict[str, Any] = {}
            if arm == "latent":
                vae = autoencoder(cfg)
                vae_done = read_json(vae / DONE_FILE)
                changes["latent_vae"] = str(vae)
            done = trained(diffusion_arm(cfg, run, **changes))
            draw = diffusion_draw(run, cfg)
            key = measurement_key(cfg, tools, run)
        row = measure_arm(run, draw, tools, groups, cfg, key)
        rows.append({"arm": arm, **done, **row})
        strips.append(strip(run))
        print(f"{arm}: {rows[-1]}", flush=True)
    out_dir = Path(cfg.out_dir)
    atomic_write_json(
        out_dir / f"{NAME}.json",
        {"rows": rows, "floor": floor, "autoencoder": vae_done, "settings": vars(cfg)},
    )
    save_grid(torch.cat(strips), out_dir / f"{NAME}_samples.png", nrow=STRIP, scale=SCALE)
    _figure(rows, out_dir)
    _page(rows, floor, vae_done, cfg, command, kept)
    return {"rows": rows, "floor": floor}


def _figure(rows: list[dict[str, Any]], out_dir: Path) -> None:
    fig = new_figure(11, 3.8)
    ax_adh, ax_fid, ax_time = fig.subplots(1, 3)
    names = [r["arm"] for r in rows]
    x = range(len(rows))
    for offset, group in ((-0.2, "seen"), (0.2, "unseen")):
        xs = [i + offset for i in x]
        adh = [r[group]["adherence"] for r in rows]
        err = [
            [r[group]["adherence"] - r[group]["adherence_low"] for r in rows],
            [r[group]["adherence_high"] - r[group]["adherence"] for r in rows],
        ]
        ax_adh.bar(xs, adh, width=0.4, yerr=err, capsize=3, label=group)
        ax_fid.bar(xs, [r[group]["fid"] for r in rows], width=0.4, label=group)
    ax_time.bar(list(x), [r["unseen"]["seconds_per_image"] for r in rows], width=0.5)
    for ax, label in (
        (ax_adh, "caption adherence"),
        (ax_fid, "FID (genlab features)"),
        (ax_time, "seconds per image (batched)"),
    ):
        ax.set_xticks(list(x), names)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, axis="y")
    ax_adh.legend()
    ax_fid.legend()
    fig.suptitle("Pixel vs latent diffusion vs cascade at the same training minutes")
    save_figure(fig, out_dir / f"{NAME}.png")


def _page(
    rows: list[dict[str, Any]],
    floor: dict[str, dict[str, float]],
    vae_done: dict[str, float],
    cfg: PixelVsLatentConfig,
    command: str,
    kept: list[str],
) -> None:
    def adh(r: dict[str, float]) -> str:
        return f"{r['adherence']:.3f} [{r['adherence_low']:.3f}, {r['adherence_high']:.3f}]"

    headers = ["arm", "params (trained)", "train min", "steps", "unseen adherence [95%]"]
    headers += ["unseen FID", "its floor", "unseen KID", "unseen CLIP score"]
    headers += ["seen adherence [95%]"]
    headers += ["seen FID", "s / image"]
    body = [
        [
            r["arm"],
            int(r["params"]),
            r["seconds"] / 60,
            int(r["steps"]),
            adh(r["unseen"]),
            r["unseen"]["fid"],
            r["unseen"]["fid_floor"],
            r["unseen"]["kid"],
            r["unseen"]["clip_score"],
            adh(r["seen"]),
            r["seen"]["fid"],
            r["unseen"]["seconds_per_image"],
        ]
        for r in rows
    ]
    body.append(
        [
            "real images (floor)",
            "-",
            "-",
            "-",
            f"{floor['unseen']['adherence']:.3f}",
            floor["unseen"]["fid"],
            "-",
            floor["unseen"]["kid"],
            floor["unseen"]["clip_score"],
            f"{floor['seen']['adherence']:.3f}",
            floor["seen"]["fid"],
            "-",
        ]
    )
    best = max(rows, key=lambda r: r["unseen"]["adherence"])
    shown = [r["arm"] for r in rows]
    arms_note = (
        f" (cascade: {cfg.minutes / 2:g} for the {cfg.low_res}x{cfg.low_res} base, "
        f"{cfg.minutes / 2:g} for the upsampler)"
        if "cascade" in shown
        else ""
    )
    if len(shown) < len(ARMS):
        arms_note += f"; arms not run: {', '.join(a for a in ARMS if a not in shown)}"
    if kept:
        arms_note += (
            f"; {', '.join(kept)}: measured by an earlier run of this command with the same "
            "settings (kept from this page's JSON and samples)"
        )
    elsewhere = [r for r in rows if not same_instruments(r, floor)]
    for r in elsewhere:
        arms_note += (
            f"; {r['arm']}: measured with another feature net than the floor row's "
            f"(its own floor: unseen FID {r['unseen']['fid_floor']:.3g}, seen "
            f"{r['seen']['fid_floor']:.3g}), so compare its FID and KID with its own floor, "
            "not across rows; adherence and seconds compare directly"
        )
    findings = [
        f"Highest adherence on unseen compositions: {best['arm']} "
        f"({adh(best['unseen'])}) after {best['seconds'] / 60:.1f} training minutes.",
        *[
            f"{r['arm']}: {r['steps'] / (r['seconds'] / 60):.0f} training steps per minute, "
            f"{r['unseen']['seconds_per_image'] * 1000:.1f} ms per image, unseen FID "
            f"{r['unseen']['fid']:.3g} (its floor {r['unseen']['fid_floor']:.3g})."
            for r in rows
        ],
    ]
    if vae_done:
        findings.append(
            f"The latent arm's autoencoder trained {vae_done['seconds'] / 60:.1f} minutes on "
            "images alone (not counted in the arm's minutes: one autoencoder serves every latent "
            "model)."
        )
    write_page(
        Path(cfg.out_dir) / f"{NAME}.md",
        "Pixel diffusion vs latent diffusion vs a cascade",
        "At the same minutes of training, which way of building a text-to-image model follows "
        "captions of unseen compositions best, draws images closest to real ones, and fastest?",
        markdown_table(headers, body),
        f"{NAME}.png",
        [
            f"shapes {cfg.size}x{cfg.size}, held-out compositions; {cfg.minutes:g} diffusion "
            f"training minutes per arm{arms_note}",
            f"latent: a VAE with 4 latent channels at 1/{cfg.vae_downsample} of the side, KL "
            f"weight {cfg.kl_weight:g}, {cfg.vae_minutes:g} minutes on images alone",
            f"measured on the {cfg.split} split: n = {cfg.n} captions each of unseen and seen "
            f"compositions, DDIM {cfg.steps} steps (each cascade stage), guidance "
            f"{cfg.guidance:g}, seed {cfg.seed}; the floor row is an independent real draw for "
            "the same captions",
            f"samples (first 8 unseen per arm, rows in table order): [{NAME}_samples.png]"
            f"({NAME}_samples.png)",
        ],
        findings,
        command=command,
    )
