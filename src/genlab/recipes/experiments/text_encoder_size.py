"""Imagen's claim: the size of the frozen text encoder matters more than the size of the image
model. Two frozen text encoders x two UNet widths, latent diffusion, the same training minutes.

Saharia et al., 2022 ("Photorealistic Text-to-Image Diffusion Models with Deep Language
Understanding", figure 4) scaled a frozen T5 encoder from 60M to 4.6B parameters and the
diffusion UNet from 300M to 2B: the encoder's size moved sample fidelity and image-text
alignment far more. Here the two encoders are genlab GPTs of the prompting ladder that differ
in size only (same TinyWorld corpus, tokenizer, steps; ``xs``: 2 layers of width 32, ``l``: 4
of width 128), read frozen (their last hidden states, ``--text-encoder gpt:RUN``), and the two
UNets differ in width only; each of the four arms trains a latent diffusion model over the same
autoencoder for the same minutes on the shapes with held-out compositions, and is measured on
the unseen compositions (what a text encoder is for: captions whose combination no image showed)
by caption adherence, CLIP score, and FID and KID with their floors. The claim holds here if the
encoder's step changes adherence on unseen compositions more than the UNet's.

    genlab experiment text-encoder-size                  # 4 arms x 8 minutes, plus the VAE
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_json
from genlab.core.sweep import markdown_table
from genlab.data.images import save_grid
from genlab.recipes.diffusion_eval import evaluation_groups
from genlab.recipes.experiments.ladder import LadderConfig, ladder_runs
from genlab.recipes.experiments.report import new_figure, save_figure, write_page
from genlab.recipes.experiments.t2i_arms import (
    STRIP,
    ArmsConfig,
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

NAME = "text_encoder_size"


@dataclass
class TextEncoderSizeConfig(ArmsConfig):
    """Frozen encoders (ladder rungs or ``gpt:RUN`` / ``minilm``) x UNet widths."""

    minutes: float = 8.0  # training minutes of every arm
    encoders: tuple[str, ...] = ("xs", "l")  # a ladder rung, gpt:RUN or minilm, smallest first
    widths: tuple[int, ...] = (32, 64)  # the UNet's base channels, smallest first
    ladder: LadderConfig = field(default_factory=LadderConfig)  # where rungs are (or trained)
    runs_dir: str = "runs/text_encoder_size"  # a run folder per arm, reused once trained

    def validate(self) -> None:
        super().validate()
        if not self.encoders or not self.widths or min(self.widths) < 8:
            raise GenlabError("give at least one encoder and one UNet width of 8 channels or more")
        if any(w % 8 for w in self.widths):
            raise GenlabError(f"UNet widths must be multiples of 8, got {self.widths}")


def encoder_names(cfg: TextEncoderSizeConfig) -> dict[str, str]:
    """Each encoder's ``--text-encoder`` value: a ladder rung becomes ``gpt:`` its run."""
    rungs = [e for e in cfg.encoders if ":" not in e and e != "minilm"]
    runs = ladder_runs(cfg.ladder, rungs) if rungs else {}
    return {e: f"gpt:{runs[e]}" if e in runs else e for e in cfg.encoders}


def run_experiment(cfg: TextEncoderSizeConfig, command: str = "") -> dict[str, Any]:
    cfg.validate()
    tools = Instruments(cfg)
    groups = evaluation_groups(data(cfg), tools.net, cfg.n, cfg.split, names=("unseen",))
    vae = autoencoder(cfg)
    encoders = encoder_names(cfg)
    rows, strips = [], []
    for encoder, spec in encoders.items():
        for width in cfg.widths:
            run = Path(cfg.runs_dir) / f"{encoder.replace('/', '_')}-w{width}"
            image = diffusion_arm(
                cfg,
                run,
                latent_vae=str(vae),
                text_encoder=spec,
                unet_overrides={"base_channels": width},
            )
            done = trained(image)
            key = measurement_key(cfg, tools, run)
            row = measure_arm(run, diffusion_draw(run, cfg), tools, groups, cfg, key)
            rows.append({"encoder": encoder, "width": width, **done, **row})
            strips.append(strip(run))
            print(f"{encoder} x {width}: {rows[-1]}", flush=True)
    real_clip = tools.real_clip_scores(groups)
    floor = {name: {**g.floor, "clip_score": real_clip[name]} for name, g in groups.items()}
    out_dir = Path(cfg.out_dir)
    settings = {k: v for k, v in vars(cfg).items() if k != "ladder"}
    atomic_write_json(
        out_dir / f"{NAME}.json",
        {"rows": rows, "floor": floor, "settings": settings, "encoders": encoders},
    )
    save_grid(torch.cat(strips), out_dir / f"{NAME}_samples.png", nrow=STRIP, scale=3)
    _figure(rows, cfg, out_dir)
    _page(rows, floor, cfg, encoders, command)
    return {"rows": rows, "floor": floor}


def effects(rows: list[dict[str, Any]], cfg: TextEncoderSizeConfig) -> dict[str, float]:
    """Unseen adherence gained by the largest encoder over the smallest (mean over widths), and
    by the widest UNet over the narrowest (mean over encoders)."""

    def adherence(encoder: str, width: int) -> float:
        row = next(r for r in rows if r["encoder"] == encoder and r["width"] == width)
        return row["unseen"]["adherence"]

    small, large = cfg.encoders[0], cfg.encoders[-1]
    narrow, wide = cfg.widths[0], cfg.widths[-1]
    encoder = sum(adherence(large, w) - adherence(small, w) for w in cfg.widths) / len(cfg.widths)
    unet = sum(adherence(e, wide) - adherence(e, narrow) for e in cfg.encoders) / len(cfg.encoders)
    return {"encoder": encoder, "unet": unet}


def _figure(rows: list[dict[str, Any]], cfg: TextEncoderSizeConfig, out_dir: Path) -> None:
    fig = new_figure(10, 3.8)
    ax_adh, ax_fid = fig.subplots(1, 2)
    for encoder in cfg.encoders:
        mine = [r for r in rows if r["encoder"] == encoder]
        widths = [r["width"] for r in mine]
        ax_adh.errorbar(
            widths,
            [r["unseen"]["adherence"] for r in mine],
            yerr=[
                [r["unseen"]["adherence"] - r["unseen"]["adherence_low"] for r in mine],
                [r["unseen"]["adherence_high"] - r["unseen"]["adherence"] for r in mine],
            ],
            marker="o",
            capsize=3,
            label=f"encoder {encoder}",
        )
        ax_fid.plot(widths, [r["unseen"]["fid"] for r in mine], "o-", label=f"encoder {encoder}")
    ax_adh.set(xlabel="UNet base channels", ylabel="adherence, unseen compositions")
    ax_fid.set(xlabel="UNet base channels", ylabel="FID (genlab features), unseen")
    for ax in (ax_adh, ax_fid):
        ax.set_xticks(list(cfg.widths))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Text encoder size vs UNet size (latent diffusion, same minutes)")
    save_figure(fig, out_dir / f"{NAME}.png")


def _page(
    rows: list[dict[str, Any]],
    floor: dict[str, dict[str, float]],
    cfg: TextEncoderSizeConfig,
    encoders: dict[str, str],
    command: str,
) -> None:
    headers = ["encoder", "UNet width", "params (trained)", "steps"]
    headers += ["adherence [95%]", "CLIP score", "FID", "KID"]

    def adh(r: dict[str, float]) -> str:
        return f"{r['adherence']:.3f} [{r['adherence_low']:.3f}, {r['adherence_high']:.3f}]"

    body = [
        [
            r["encoder"],
            r["width"],
            int(r["params"]),
            int(r["steps"]),
            adh(r["unseen"]),
            r["unseen"]["clip_score"],
            r["unseen"]["fid"],
            r["unseen"]["kid"],
        ]
        for r in rows
    ]
    body.append(
        [
            "real images",
            "-",
            "-",
            "-",
            f"{floor['unseen']['adherence']:.3f}",
            floor["unseen"]["clip_score"],
            floor["unseen"]["fid"],
            floor["unseen"]["kid"],
        ]
    )
    gain = effects(rows, cfg)
    verdict = "reproduced" if gain["encoder"] > gain["unet"] else "not reproduced"
    findings = [
        f"Unseen-composition adherence gained by the larger encoder ({cfg.encoders[-1]} over "
        f"{cfg.encoders[0]}, mean over UNet widths): {gain['encoder']:+.3f}; by the wider UNet "
        f"({cfg.widths[-1]} over {cfg.widths[0]} channels, mean over encoders): "
        f"{gain['unet']:+.3f}. Imagen's claim is {verdict} at this scale.",
        "The real-images row is the floor: an independent real draw for the same captions (its "
        "FID is what sampling noise alone gives at this n; its adherence is the reader's own).",
    ]
    write_page(
        Path(cfg.out_dir) / f"{NAME}.md",
        "Text encoder size vs image model size (Imagen's claim)",
        "Does a larger frozen text encoder help a text-to-image model follow captions of "
        "unseen compositions more than a larger image model does?",
        markdown_table(headers, body),
        f"{NAME}.png",
        [
            "encoders (frozen, last hidden states): "
            + ", ".join(f"{k} = `{v}`" for k, v in encoders.items()),
            f"latent diffusion over one VAE ({cfg.vae_minutes:g} min, KL weight "
            f"{cfg.kl_weight:g}, images alone), {cfg.minutes:g} training minutes per arm, "
            f"shapes {cfg.size}x{cfg.size} with held-out compositions",
            f"measured on the {cfg.split} split's unseen compositions: n = {cfg.n} captions, one "
            f"image each, DDIM {cfg.steps} steps, guidance {cfg.guidance:g}, seed {cfg.seed}; "
            "every column of the table is on those captions",
            f"samples (first 8 unseen per arm, rows in table order): [{NAME}_samples.png]"
            f"({NAME}_samples.png)",
        ],
        findings,
        command=command,
    )
