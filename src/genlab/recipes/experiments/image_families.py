"""The ways to generate an image, side by side at the same training time: diffusion, VAE, flow,
GAN, image GPT and MaskGIT, and MaskGIT's steps against image GPT on the same VQ tokens.

The lecture's trade-offs: autoregressive generation (image GPT; Chen et al., 2020) is exact in
likelihood and slow, one token per network call; "all at once" methods (VAE: Kingma & Welling,
2014; flow: Kingma & Dhariwal, 2018; GAN: Goodfellow et al., 2014) draw an image in one call
from a noise input, fast but blurry or incoherent; N-step methods (diffusion: Ho et al., 2020;
MaskGIT: Chang et al., 2022, which keeps the most confident tokens at each of N steps) sit
between. Every family trains on the same images for the same minutes (``TimeBudget``), and
every row is measured the same way: FID with genlab features against real images of the same
captions (with the real-vs-real floor drawn alike), caption adherence, seconds per image (in
batches, and at batch 1: the latency a user waits), bits per dimension where defined.

    genlab experiment image-families          # 7 minutes per family, about 75 minutes in all
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from genlab.core.device import pick_device
from genlab.core.errors import refuse_invalid
from genlab.core.io import atomic_save_tensors, atomic_write_json, load_tensors, read_json
from genlab.core.sweep import markdown_table
from genlab.core.train_config import TrainConfig
from genlab.data.images import from_uint8, save_grid
from genlab.methods.diffusion.text_conditioned import generate_captions, load_diffusion
from genlab.methods.masked.maskgit import CHOICE_TEMPERATURE
from genlab.metrics.adherence import caption_adherence
from genlab.metrics.bootstrap import bootstrap_statistic
from genlab.metrics.features import (
    REFERENCE_SEED,
    FeatureNet,
    default_features_dir,
    load_feature_net,
    train_feature_net,
)
from genlab.metrics.fid import feature_statistics, frechet_distance
from genlab.recipes.diffusion import DataSpec, ImageTrainConfig, load_images, train_diffusion
from genlab.recipes.diffusion_eval import real_baseline, real_images, reference_set
from genlab.recipes.experiments.report import (
    new_figure,
    save_figure,
    training_seconds,
    write_page,
)
from genlab.recipes.experiments.sampling import weights_digest
from genlab.recipes.image_family import train_family
from genlab.recipes.image_family_eval import FamilyRun, open_family_run
from genlab.recipes.image_settings import FamilySettings

NAME = "image_families"
DONE_FILE = "experiment_done.json"  # written once a method's run has finished training
MEASURED_FILE = "experiment_row.json"  # its measured row, with what the measurement used
STRIP_FILE = "experiment_samples.safetensors"  # its first 8 samples, for the page's strip
STEPS_FILE = "experiment_steps.json"  # MaskGIT's rows by step count
METHODS = ("diffusion", "vae", "flow", "gan", "igpt", "maskgit")
# MaskGIT's choice temperature by decoding order: the paper's confident-first rule, or none
ORDERS = {"confidence": CHOICE_TEMPERATURE, "random": math.inf}


@dataclass
class ImageFamiliesConfig:
    """Which families, how long each trains, how many samples each row measures."""

    data: str = "shapes"  # shapes or digits
    size: int = 32  # image side
    methods: tuple[str, ...] = METHODS  # the families, a row each
    minutes: float = 7.0  # training minutes per family (the same for every one)
    tokenizer_minutes: float = 4.0  # the VQ-VAE that tokenizes images for igpt and maskgit
    vq_downsample: int = 2  # the VQ grid is size / this (16x16 tokens at 32x32)
    n: int = 2000  # generated images per row (and real images in the reference)
    n_bpd: int = 500  # held-out images each likelihood is measured on
    latency_images: int = 20  # images timed one at a time (batch 1); the median is reported
    maskgit_steps: tuple[int, ...] = (1, 2, 4, 8, 16)  # MaskGIT's step counts
    maskgit_order: Literal["confidence", "random"] = "random"  # the families row's decoding order
    flow_temperature: float = 1.0  # the flow row's latent scale (validation: 1.0 beat Glow's 0.7)
    diffusion_steps: int = 20  # DDIM steps of the diffusion row
    diffusion_guidance: float = 3.0  # its classifier-free guidance
    width: int = 32  # conv nets' base channels (the diffusion UNet's too)
    token_width: int = 32  # image GPT and MaskGIT: the transformer is twice this wide
    preset: Literal["cpu", "gpu"] = "cpu"  # gpu: 64x64, 4x4 VQ patches, 10,000 images, 2x wide
    device: str = "auto"  # auto | cpu | cuda: where every family trains and samples
    seed: int = 0  # training seed and sampling seed
    features: str | None = None  # feature net folder; none: genlab's cache (trained if absent)
    runs_dir: str = "runs/image_families"  # a run folder per family, reused once trained
    out_dir: str = "docs/experiments"  # where the page, JSON and figures go

    def validate(self) -> None:
        checks = {
            "methods": bool(self.methods) and set(self.methods) <= set(METHODS),
            "minutes": self.minutes > 0,
            "tokenizer_minutes": self.tokenizer_minutes > 0,
            "n": self.n >= 100,
            "n_bpd": self.n_bpd >= 1,
            "latency_images": self.latency_images >= 1,
            "maskgit_steps": min(self.maskgit_steps, default=0) >= 1,
            "diffusion_steps": self.diffusion_steps >= 1,
            "width": self.width >= 8 and self.width % 8 == 0,
            "token_width": self.token_width >= 2,
            "flow_temperature": self.flow_temperature > 0,
        }
        refuse_invalid(self, checks, "experiment setting")


def for_preset(cfg: ImageFamiliesConfig) -> ImageFamiliesConfig:
    """``cfg`` as its preset sets it: the GPU preset is the CPU one at 64x64 (the VQ grid
    still 16x16), with networks twice as wide and 10,000 images per row."""
    if cfg.preset == "cpu":
        return cfg
    return replace(
        cfg,
        size=64,
        vq_downsample=4,
        n=10_000,
        width=2 * cfg.width,
        token_width=2 * cfg.token_width,
        device="cuda" if cfg.device == "auto" else cfg.device,
    )


def _train_config(method: str, seed: int, device: str) -> TrainConfig:
    """Every family's trainer: a step budget the time budget lowers, grids every 500 steps; the
    GAN with DCGAN's rate and momentum (Radford et al., 2016), which adversarial training needs."""
    gan = method == "gan"
    return TrainConfig(
        max_steps=100_000,
        batch_size=64,
        lr=2e-4 if gan else 1e-3,
        betas=(0.5, 0.999) if gan else (0.9, 0.95),
        warmup_steps=100,
        weight_decay=0.0,
        eval_every=500,
        eval_batches=4,
        checkpoint_every=500,
        seed=seed,
        device=device,
        progress=False,  # the experiment prints a line per family
    )


def family_settings(method: str, cfg: ImageFamiliesConfig, vq_run: Path) -> FamilySettings:
    """Each family's CPU-sized network; the token models read the shared VQ-VAE; the GAN
    without the generator's tanh and with instance noise 0.1 (chosen on validation draws)."""
    if method in ("igpt", "maskgit"):  # a 64-wide transformer: see docs/images.md on speed
        return FamilySettings(width=cfg.token_width, depth=4, tokenizer=str(vq_run))
    if method == "vq":
        return FamilySettings(
            width=cfg.width, downsample=cfg.vq_downsample, num_codes=256, latent_channels=16
        )
    if method == "gan":  # docs/images.md: the tanh saturates on white; noise keeps D honest
        return FamilySettings(width=cfg.width, gan_output="linear", instance_noise=0.1)
    return FamilySettings(width=cfg.width)


def train_method(method: str, cfg: ImageFamiliesConfig, minutes: float, vq_run: Path) -> Path:
    """Train ``method`` for ``minutes`` into ``runs_dir/method`` unless done; its folder."""
    run = Path(cfg.runs_dir) / method
    if (run / DONE_FILE).is_file():
        return run
    spec = DataSpec(data=cfg.data, size=cfg.size)
    image = ImageTrainConfig(
        out=str(run),
        model=method,
        data=spec,
        time_budget=minutes,
        family=family_settings(method, cfg, vq_run),
        train=_train_config(method, cfg.seed, cfg.device),
    )
    if method == "diffusion":
        unet = {"base_channels": cfg.width}
        image = replace(image, grid_sampler_steps=cfg.diffusion_steps, unet_overrides=unet)
        metrics = train_diffusion(image, resume=True)
    else:
        metrics = train_family(image, resume=True)
    seconds, steps = training_seconds(run)
    atomic_write_json(
        run / DONE_FILE, {"seconds": seconds, "steps": steps, "params": metrics["params"]}
    )
    return run


def _fid_interval(net: FeatureNet, images: torch.Tensor, reference: torch.Tensor, seed: int):
    """FID and its bootstrap interval over the generated images (the reference fixed)."""
    feats = net.extract(images).double().numpy()
    mu_r, sigma_r = feature_statistics(net.extract(reference))

    def fid(rows: np.ndarray) -> float:
        mu, sigma = feature_statistics(feats[rows])
        return frechet_distance(mu, sigma, mu_r, sigma_r)

    return bootstrap_statistic(fid, len(feats), n_resamples=200, seed=seed)


Draw = Callable[[list[str], int], torch.Tensor]  # (captions, seed) -> one image per caption


def batch_one_seconds(draw: Draw, captions: list[str], seed: int) -> float:
    """The median seconds to draw one image alone (batch 1)."""
    times = []
    for i, caption in enumerate(captions):
        tic = time.perf_counter()
        draw([caption], seed + i)
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def family_draw(
    fr: FamilyRun, steps: int = 8, order: str = "random", flow_temperature: float | None = None
) -> Draw:
    """How a family run draws images (``steps`` and ``order``: MaskGIT's)."""
    temperature = {"maskgit": ORDERS[order], "flow": flow_temperature}.get(fr.method)
    return lambda captions, seed: fr.generate(captions, seed, steps, temperature=temperature)


def diffusion_draw(run: Path, cfg: ImageFamiliesConfig, device: str) -> Draw:
    """How the diffusion run draws: DDIM as ``genlab image sample`` does, in batches of 100."""
    model, tokenizer = load_diffusion(run, device=device)
    scheduler = model.scheduler("ddim")
    scheduler.set_timesteps(cfg.diffusion_steps)
    return lambda captions, seed: generate_captions(
        model, tokenizer, captions, scheduler, cfg.diffusion_guidance, seed, 100
    )


def measure(
    draw: Draw,
    net: FeatureNet,
    reference: torch.Tensor,
    captions: list[str],
    cfg: ImageFamiliesConfig,
) -> tuple[dict[str, Any], torch.Tensor]:
    """One row: FID (with interval), adherence, seconds per image batched and at batch 1."""
    tic = time.perf_counter()
    images = draw(captions, cfg.seed)
    seconds = (time.perf_counter() - tic) / len(captions)
    fid = _fid_interval(net, images, reference, cfg.seed)
    row = {
        "fid": fid.mean,
        "fid_low": fid.low,
        "fid_high": fid.high,
        "adherence": caption_adherence(net, images, captions).to_dict()["adherence"],
        "seconds_per_image": seconds,
        "seconds_batch1": batch_one_seconds(draw, captions[: cfg.latency_images], cfg.seed),
    }
    return row, images


def run_experiment(cfg: ImageFamiliesConfig, command: str = "") -> dict[str, Any]:
    cfg.validate()
    cfg = for_preset(cfg)
    device = str(pick_device(cfg.device))
    out_dir, runs = Path(cfg.out_dir), Path(cfg.runs_dir)
    spec = DataSpec(data=cfg.data, size=cfg.size)
    features = Path(cfg.features) if cfg.features else default_features_dir(cfg.data, cfg.size)
    if not (features / "model.safetensors").is_file():
        train_feature_net(features, cfg.data, cfg.size)
    net = load_feature_net(features)
    reference, captions = reference_set(spec, cfg.n)
    real = real_baseline(spec, net, reference, captions)
    floor_draw = real_images(spec, captions, REFERENCE_SEED + 1)  # as real_baseline draws it
    real_fid = _fid_interval(net, floor_draw, reference, cfg.seed)
    held_out, held_captions = load_images(spec, "eval")
    held_out = from_uint8(held_out[: cfg.n_bpd])
    held_captions = held_captions[: cfg.n_bpd]

    vq_run = runs / "vq"
    if {"igpt", "maskgit"} & set(cfg.methods):
        vq_run = train_method("vq", cfg, cfg.tokenizer_minutes, vq_run)
    rows, strips = [], []
    key = measurement_key(cfg, features)
    for method in cfg.methods:
        run = train_method(method, cfg, cfg.minutes, vq_run)
        done = read_json(run / DONE_FILE)
        row_key = _row_key(key, method, cfg)
        measured = _measured(run, row_key)
        if measured is not None:
            row, images = measured
        elif method == "diffusion":
            row, images = measure(diffusion_draw(run, cfg, device), net, reference, captions, cfg)
            row["bits_per_dim"] = None
        else:
            fr = open_family_run(run, device=device)
            draw = family_draw(fr, order=cfg.maskgit_order, flow_temperature=cfg.flow_temperature)
            row, images = measure(draw, net, reference, captions, cfg)
            row["bits_per_dim"] = fr.bits_per_dim(held_out, held_captions, cfg.seed)
        if measured is None:
            atomic_save_tensors(run / STRIP_FILE, {"images": images[:8].contiguous()})
            atomic_write_json(run / MEASURED_FILE, {"key": row_key, "row": row})
        rows.append({"method": method, **done, **row})
        strips.append(images[:8])
        print(f"{method}: {json.dumps(rows[-1])}", flush=True)

    steps_rows = []
    if {"igpt", "maskgit"} <= set(cfg.methods):
        igpt = next(r for r in rows if r["method"] == "igpt")
        fr = open_family_run(runs / "maskgit", device=device)
        cache = runs / "maskgit" / STEPS_FILE
        saved = read_json(cache) if cache.is_file() else {}
        for order in ORDERS:
            for n_steps in cfg.maskgit_steps:
                name = f"{order}-{n_steps}"
                if saved.get("key") == key and name in saved.get("rows", {}):
                    row = saved["rows"][name]
                else:
                    draw = family_draw(fr, n_steps, order)
                    row, _ = measure(draw, net, reference, captions, cfg)
                    saved = {"key": key, "rows": {**saved.get("rows", {}), name: row}}
                    atomic_write_json(cache, saved)
                steps_rows.append({"order": order, "steps": n_steps, **row})
                print(f"maskgit {order} order, {n_steps} steps: {json.dumps(row)}", flush=True)
        for r in steps_rows:
            r["speedup_batch1"] = igpt["seconds_batch1"] / r["seconds_batch1"]
            r["speedup_batched"] = igpt["seconds_per_image"] / r["seconds_per_image"]
            r["fid_ratio"] = r["fid"] / igpt["fid"]
    results = {
        "rows": rows,
        "maskgit_steps": steps_rows,
        "real": {**real, "fid_low": real_fid.low, "fid_high": real_fid.high},
        "settings": {k: v for k, v in vars(cfg).items()},
    }
    atomic_write_json(out_dir / f"{NAME}.json", results)
    _figures(out_dir, rows, steps_rows, strips, real)
    _page(out_dir, cfg, rows, steps_rows, real, real_fid, command)
    return results


def measurement_key(cfg: ImageFamiliesConfig, features: Path) -> dict[str, Any]:
    """What a row's measurement depends on besides the run's weights: a finished run measured
    with the same key is not measured again (retrain one family, re-measure only it)."""
    names = (
        "n",
        "n_bpd",
        "latency_images",
        "diffusion_steps",
        "diffusion_guidance",
        "seed",
    )
    return {**{k: getattr(cfg, k) for k in names}, "features": weights_digest(features)}


def _row_key(key: dict[str, Any], method: str, cfg: ImageFamiliesConfig) -> dict[str, Any]:
    """A family row's key: the experiment's, and the sampler setting only that row reads (the
    flow's temperature, MaskGIT's order), so that changing it re-measures that row alone."""
    own = {"flow": "flow_temperature", "maskgit": "maskgit_order"}.get(method)
    return key if own is None else {**key, own: getattr(cfg, own)}


def _measured(run: Path, key: dict[str, Any]) -> tuple[dict[str, Any], torch.Tensor] | None:
    """The row and sample strip measured before with ``key``, if any."""
    path = run / MEASURED_FILE
    if not path.is_file() or not (run / STRIP_FILE).is_file():
        return None
    saved = read_json(path)
    if saved.get("key") != key:
        return None
    return saved["row"], load_tensors(run / STRIP_FILE)["images"]


def _figures(
    out_dir: Path,
    rows: list[dict[str, Any]],
    steps_rows: list[dict[str, Any]],
    strips: list[torch.Tensor],
    real: dict[str, float],
) -> None:
    save_grid(torch.cat(strips), out_dir / f"{NAME}_samples.png", nrow=8, scale=3)
    fig = new_figure(11, 4)
    ax_fid, ax_steps = fig.subplots(1, 2)
    for i, r in enumerate(rows):
        ax_fid.errorbar(
            r["seconds_batch1"],
            r["fid"],
            yerr=[[r["fid"] - r["fid_low"]], [r["fid_high"] - r["fid"]]],
            fmt="o",
            color=f"C{i}",
            label=r["method"],
        )
    ax_fid.axhline(real["fid"], color="k", ls="--", lw=1, label="real vs real")
    ax_fid.set(xscale="log", yscale="log", xlabel="seconds per image (batch 1)", ylabel="FID")
    ax_fid.legend()
    ax_fid.grid(alpha=0.3)
    if steps_rows:
        igpt = next(r for r in rows if r["method"] == "igpt")
        for order in ORDERS:
            mine = [r for r in steps_rows if r["order"] == order]
            ax_steps.plot(
                [r["seconds_batch1"] for r in mine],
                [r["fid"] for r in mine],
                "o-",
                label=f"MaskGIT, {order} order (1..16 steps)",
            )
            for r in mine:
                ax_steps.annotate(str(r["steps"]), (r["seconds_batch1"], r["fid"]))
        ax_steps.plot([igpt["seconds_batch1"]], [igpt["fid"]], "s", color="C3", label="image GPT")
        ax_steps.set(xscale="log", xlabel="seconds per image (batch 1)", ylabel="FID")
        ax_steps.legend()
        ax_steps.grid(alpha=0.3)
    save_figure(fig, out_dir / f"{NAME}.png")


def _page(
    out_dir: Path,
    cfg: ImageFamiliesConfig,
    rows: list[dict[str, Any]],
    steps_rows: list[dict[str, Any]],
    real: dict[str, float],
    real_fid: Any,
    command: str,
) -> None:
    def fid(r: dict[str, Any]) -> str:
        return f"{r['fid']:.3g} [{r['fid_low']:.3g}, {r['fid_high']:.3g}]"

    def bpd(r: dict[str, Any]) -> str:
        return "-" if r["bits_per_dim"] is None else f"{r['bits_per_dim']:.3f}"

    table = markdown_table(
        [
            "method",
            "parameters",
            "training",
            "steps",
            "FID [95%]",
            "adherence",
            "s / image",
            "s / image (batch 1)",
            "bits / dim",
        ],
        [
            [
                r["method"],
                f"{int(r['params']):,}",
                f"{r['seconds'] / 60:.1f} min",
                r["steps"],
                fid(r),
                f"{r['adherence']:.3f}",
                f"{r['seconds_per_image']:.4f}",
                f"{r['seconds_batch1']:.4f}",
                bpd(r),
            ]
            for r in rows
        ]
        + [
            [
                "real vs real",
                "-",
                "-",
                "-",
                f"{real['fid']:.3g} [{real_fid.low:.3g}, {real_fid.high:.3g}]",
                f"{real['adherence']:.3f}",
                "-",
                "-",
                "-",
            ]
        ],
    )
    if steps_rows:
        table += "\n\n**MaskGIT's steps against image GPT, same VQ tokens**\n\n" + markdown_table(
            [
                "order",
                "MaskGIT steps",
                "FID [95%]",
                "FID / image GPT's",
                "s / image (batch 1)",
                "speed-up vs image GPT (batch 1)",
                "speed-up (batched)",
            ],
            [
                [
                    r["order"],
                    r["steps"],
                    fid(r),
                    f"{r['fid_ratio']:.2f}",
                    f"{r['seconds_batch1']:.4f}",
                    f"{r['speedup_batch1']:.1f}x",
                    f"{r['speedup_batched']:.2f}x",
                ]
                for r in steps_rows
            ],
        )
    write_page(
        out_dir / f"{NAME}.md",
        "Image families at the same training time",
        "How do the ways to generate an image compare when each trains on the same images for "
        "the same minutes: quality (FID, caption adherence), time per image, likelihood?",
        table,
        f"{NAME}.png",
        [
            f"data: {cfg.data} {cfg.size}x{cfg.size}; every family trained {cfg.minutes} min "
            f"(steps fitted to the budget from measured speed), batch 64, seed {cfg.seed}",
            f"FID with genlab {cfg.data} features, {cfg.n} generated images against {cfg.n} real "
            "images of the same captions; the interval resamples the generated images (200 "
            "bootstrap draws); 'real vs real' is another real draw for the same captions",
            f"image GPT and MaskGIT model the codes of one VQ-VAE ({cfg.tokenizer_minutes} min, "
            f"{cfg.size // cfg.vq_downsample}x{cfg.size // cfg.vq_downsample} codes); the "
            f"families table samples MaskGIT with 8 steps in {cfg.maskgit_order} order; "
            f"'confidence' keeps the most confident tokens (choice temperature "
            f"{CHOICE_TEMPERATURE}, the paper's), 'random' decides them in a random order",
            f"bits / dim on {cfg.n_bpd} held-out images: VAE an upper bound (ELBO), flow exact "
            "(both on dequantised 8-bit pixels); image GPT: bits per VQ code, a different unit",
            f"diffusion: DDIM {cfg.diffusion_steps} steps, guidance {cfg.diffusion_guidance}; "
            f"the others without guidance; the flow's latents at temperature "
            f"{cfg.flow_temperature}",
            f"batch-1 time: the median of {cfg.latency_images} images drawn one at a time",
            f"samples: [{NAME}_samples.png]({NAME}_samples.png) (8 per family, rows in table "
            "order)",
        ],
        _findings(rows, steps_rows, real),
        command=command,
    )


def _findings(
    rows: list[dict[str, Any]], steps_rows: list[dict[str, Any]], real: dict[str, float]
) -> list[str]:
    best = min(rows, key=lambda r: r["fid"])
    fastest = min(rows, key=lambda r: r["seconds_batch1"])
    lines = [
        f"Lowest FID: {best['method']} ({best['fid']:.3g}; real vs real {real['fid']:.3g}).",
        f"Fastest at batch 1: {fastest['method']} ({fastest['seconds_batch1'] * 1000:.1f} ms "
        "per image).",
    ]
    for eight in (r for r in steps_rows if r["steps"] == 8):
        met = eight["speedup_batch1"] >= 10 and eight["fid_ratio"] <= 1.2
        lines.append(
            f"MaskGIT at 8 steps in {eight['order']} order is {eight['speedup_batch1']:.1f}x "
            f"faster per image than image GPT at batch 1 ({eight['speedup_batched']:.2f}x in "
            f"batches) with FID {eight['fid_ratio']:.2f}x image GPT's: the goal (>= 10x, "
            f"<= 1.2x) is {'met' if met else 'not met'}."
        )
    return lines
