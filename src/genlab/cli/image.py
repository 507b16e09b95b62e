"""``genlab image``: train a text-conditioned diffusion model on images and sample from it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from genlab.cli._app import app, say
from genlab.cli.options import config_command
from genlab.core.config import convert
from genlab.core.device import pick_device
from genlab.recipes.cascade import (
    DEFAULT_AUG_LEVEL,
    DEFAULT_UP_GUIDANCE,
    UPSAMPLER,
    UpsamplerSettings,
    is_upsampler_run,
    sample_cascade,
    train_upsampler,
)
from genlab.recipes.diffusion import DIFFUSION, ImageTrainConfig, train_diffusion
from genlab.recipes.diffusion_eval import sample_run
from genlab.recipes.image_family import train_family
from genlab.recipes.image_family_eval import is_family_run, sample_family

image = typer.Typer(
    help="Image generation: train diffusion, VAE, VQ-VAE, flow, GAN, image GPT or MaskGIT; "
    "sample grids.",
    no_args_is_help=True,
)
app.add_typer(image, name="image")
UNET = "UNet: the preset's unless overridden here (or by unet_overrides={...})"
CASCADE = "Cascade: a diffusion upsampler (--method upsampler) and sampling through it"


@image.command()
@config_command(
    ImageTrainConfig,
    aliases={"model": "--method", "train.eval_every": "--sample-every", "train.seed": "--seed"},
)
def train(
    cfg: ImageTrainConfig,
    base_channels: Annotated[
        int | None, typer.Option("--base-channels", min=8, help="Width.", rich_help_panel=UNET)
    ] = None,
    channel_mults: Annotated[
        str | None,
        typer.Option(
            "--channel-mults", metavar="INT,...", help="e.g. 1,2,2.", rich_help_panel=UNET
        ),
    ] = None,
    num_res_blocks: Annotated[
        int | None, typer.Option("--num-res-blocks", min=1, rich_help_panel=UNET)
    ] = None,
    attn_levels: Annotated[
        str | None,
        typer.Option("--attn-levels", metavar="INT,...", help="e.g. 1,2.", rich_help_panel=UNET),
    ] = None,
    norm_groups: Annotated[
        int | None, typer.Option("--norm-groups", min=1, rich_help_panel=UNET)
    ] = None,
    low_res: Annotated[
        int | None,
        typer.Option(
            "--low-res",
            min=1,
            help="Side it upsamples from (half --size).",
            rich_help_panel=CASCADE,
        ),
    ] = None,
    aug_max: Annotated[
        float | None,
        typer.Option(
            "--aug-max",
            min=0.0,
            max=1.0,
            help="Noise augmentation of the low-res image: levels in [0, this] "
            f"({UpsamplerSettings.aug_max}).",
            rich_help_panel=CASCADE,
        ),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
) -> None:
    """Train a caption-conditioned image model (built-in shapes unless --data is given):
    --method diffusion (a DDPM; or fine-tune a trained run: --init-from RUN, with --adapter
    lora only a LoRA on its UNet), vae, vq, flow, gan, igpt or maskgit (over --tokenizer: a
    colour palette or a vq run), or upsampler (a diffusion upsampler from --low-res to --size,
    the second stage of a cascade)."""
    ints = tuple[int, ...]
    unet = {
        "base_channels": base_channels,
        "channel_mults": channel_mults and convert(channel_mults, ints, "--channel-mults"),
        "num_res_blocks": num_res_blocks,
        "attn_levels": attn_levels and convert(attn_levels, ints, "--attn-levels"),
        "norm_groups": norm_groups,
    }
    given = {k: v for k, v in unet.items() if v is not None}
    cfg = replace(cfg, unet_overrides={**cfg.unet_overrides, **given})
    if not cfg.snr_gamma:  # the documented --snr-gamma 0 (or none): the plain MSE, no floor
        cfg = replace(cfg, snr_gamma=None, snr_floor=0.0)
    if cfg.model == UPSAMPLER or low_res is not None or aug_max is not None:
        options = UpsamplerSettings.given(low_res=low_res, aug_max=aug_max)
        metrics = train_upsampler(cfg, options, resume=resume)
    elif cfg.model not in DIFFUSION:
        metrics = train_family(cfg, resume=resume)
        line = f"trained {int(metrics['params']):,} parameters to step {int(metrics['step'])}"
        say(f"{line}; run folder {cfg.out} (samples in {cfg.out}/samples)")
        return
    else:
        metrics = train_diffusion(cfg, resume=resume)
    line = f"trained {int(metrics['params']):,} parameters to step {int(metrics['step'])}"
    if "eval_loss" in metrics:
        line += f"; eval loss {metrics['eval_loss']:.4f}"
    say(f"{line}; run folder {cfg.out} (samples in {cfg.out}/samples)")


@image.command()
def sample(
    run: Annotated[Path, typer.Argument(help="A run folder written by 'genlab image train'.")],
    out: Annotated[Path, typer.Option("--out", help="PNG grid to write.")] = Path("grid.png"),
    prompt: Annotated[
        list[str] | None,
        typer.Option("--prompt", help="Caption (repeat for several); default: held-out captions."),
    ] = None,
    n: Annotated[int, typer.Option("--n", min=1, help="Images per prompt (or in all).")] = 16,
    sampler: Annotated[str, typer.Option("--sampler", help="Diffusion: ddpm or ddim.")] = "ddim",
    steps: Annotated[
        int | None,
        typer.Option(
            "--steps", min=1, help="Diffusion: 1000 (ddpm), 50 (ddim); MaskGIT: 8 by default."
        ),
    ] = None,
    eta: Annotated[float, typer.Option("--eta", min=0.0, max=1.0, help="DDIM noise.")] = 0.0,
    guidance: Annotated[
        float | None,
        typer.Option(
            "--guidance",
            min=0.0,
            help="Classifier-free guidance: 3 (diffusion), 0 (igpt, maskgit).",
        ),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature",
            min=0.0,
            help="VAE, flow, igpt: the noise's or tokens' (each its own default); maskgit: the "
            "choice noise's (4.5; inf: decide tokens in a random order).",
        ),
    ] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Use the raw weights, not the EMA.")] = False,
    precision: Annotated[str, typer.Option("--precision", help="fp32 or bf16.")] = "fp32",
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, mps.")] = "auto",
    seed: Annotated[int, typer.Option("--seed", min=0, help="Same seed, same images.")] = 0,
    base: Annotated[
        Path | None,
        typer.Option(
            "--base",
            help="RUN is an upsampler: the diffusion run that draws its low-res images "
            "(without: it upsamples held-out images).",
            rich_help_panel=CASCADE,
        ),
    ] = None,
    up_guidance: Annotated[
        float,
        typer.Option(
            "--up-guidance", min=0.0, help="The upsampler's guidance.", rich_help_panel=CASCADE
        ),
    ] = DEFAULT_UP_GUIDANCE,
    aug_level: Annotated[
        float | None,
        typer.Option(
            "--aug-level",
            min=0.0,
            max=1.0,
            help=f"Noise level of the low-res images ({DEFAULT_AUG_LEVEL} with --base, else 0).",
            rich_help_panel=CASCADE,
        ),
    ] = None,
) -> None:
    """Sample images from a trained run of any family into one PNG grid (an upsampler run:
    through the cascade, --base BASE_RUN drawing the low-res images, also written to
    OUT_low.png)."""
    if base is not None or is_upsampler_run(run):
        images, captions = sample_cascade(
            run,
            out,
            base=base,
            prompts=list(prompt) if prompt else None,
            n=n,
            sampler=sampler,
            steps=steps,
            eta=eta,
            guidance=3.0 if guidance is None else guidance,
            up_guidance=up_guidance,
            aug_level=aug_level,
            seed=seed,
            use_ema=not raw,
            precision=precision,
            device=str(pick_device(device)),
        )
    elif is_family_run(run):
        images, captions = sample_family(
            run,
            out,
            prompts=list(prompt) if prompt else None,
            n=n,
            steps=steps or 8,
            guidance=guidance or 0.0,
            temperature=temperature,
            seed=seed,
            use_ema=not raw,
            device=str(pick_device(device)),
        )
    else:
        images, captions = sample_run(
            run,
            out,
            prompts=list(prompt) if prompt else None,
            n=n,
            sampler=sampler,
            steps=steps,
            eta=eta,
            guidance=3.0 if guidance is None else guidance,
            seed=seed,
            use_ema=not raw,
            precision=precision,
            device=str(pick_device(device)),
        )
    say(f"wrote {len(images)} samples to {out}")
    if not prompt:
        for caption in dict.fromkeys(captions):
            say(f"  {caption}")
