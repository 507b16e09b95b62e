"""``genlab image``: train a text-conditioned diffusion model on images and sample from it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genlab.cli._app import app
from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.core.train_config import TrainConfig
from genlab.recipes.diffusion import DataSpec, ImageTrainConfig, sample_run, train_diffusion

image = typer.Typer(
    help="Image generation: train a conditional diffusion model, sample grids.",
    no_args_is_help=True,
)
app.add_typer(image, name="image")


def _ints(text: str | None, what: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as e:
        raise GenlabError(
            f"--{what} takes comma-separated integers like 1,2,2; got '{text}'"
        ) from e


@image.command()
def train(
    out: Annotated[Path, typer.Option("--out", help="Run folder (checkpoints, grids).")],
    model: Annotated[str, typer.Option("--model", help="Model family: ddpm.")] = "ddpm",
    data: Annotated[
        str, typer.Option("--data", help="shapes, digits (built in) or a folder of images.")
    ] = "shapes",
    size: Annotated[int, typer.Option("--size", min=8, help="Image side in pixels.")] = 32,
    n_images: Annotated[
        int, typer.Option("--n-images", min=1, help="Shapes: how many scenes to draw.")
    ] = 20_000,
    two_shape_fraction: Annotated[
        float,
        typer.Option("--two-shape-fraction", min=0.0, max=1.0, help="Shapes: two-shape scenes."),
    ] = 0.0,
    preset: Annotated[str, typer.Option("--preset", help="UNet size: tiny, small, base.")] = "tiny",
    base_channels: Annotated[
        int | None, typer.Option("--base-channels", min=8, help="Override the preset's width.")
    ] = None,
    channel_mults: Annotated[
        str | None, typer.Option("--channel-mults", help="Override, e.g. 1,2,2.")
    ] = None,
    num_res_blocks: Annotated[int | None, typer.Option("--num-res-blocks", min=1)] = None,
    attn_levels: Annotated[
        str | None, typer.Option("--attn-levels", help="Levels with attention, e.g. 1,2.")
    ] = None,
    norm_groups: Annotated[int | None, typer.Option("--norm-groups", min=1)] = None,
    text_dim: Annotated[
        int, typer.Option("--text-dim", min=8, help="Caption embedding size.")
    ] = 64,
    prediction: Annotated[
        str, typer.Option("--prediction", help="Network target: v, eps or x0.")
    ] = "v",
    schedule: Annotated[
        str, typer.Option("--schedule", help="Noise schedule: linear, cosine, scaled_linear.")
    ] = "linear",
    cond_drop: Annotated[
        float, typer.Option("--cond-drop", min=0.0, max=1.0, help="Caption dropout (for CFG).")
    ] = 0.1,
    snr_gamma: Annotated[
        float,
        typer.Option("--snr-gamma", min=0.0, help="Min-SNR-gamma loss weighting; 0: plain MSE."),
    ] = 1.0,
    snr_floor: Annotated[
        float,
        typer.Option("--snr-floor", min=0.0, help="Weight kept by the noisiest steps."),
    ] = 0.1,
    ema_decay: Annotated[float, typer.Option("--ema-decay", min=0.0, max=0.99999)] = 0.999,
    max_steps: Annotated[int, typer.Option("--max-steps", min=1)] = 2000,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
    lr: Annotated[float, typer.Option("--lr", min=0.0)] = 1e-3,
    warmup_steps: Annotated[int, typer.Option("--warmup-steps", min=0)] = 100,
    sample_every: Annotated[
        int, typer.Option("--sample-every", min=0, help="Steps between eval + sample grid.")
    ] = 200,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=0)] = 200,
    precision: Annotated[
        str, typer.Option("--precision", help="fp32, bf16 (CPU or GPU) or fp16 (CUDA).")
    ] = "fp32",
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, mps.")] = "auto",
    seed: Annotated[int, typer.Option("--seed", min=0, help="Weights, batches and noise.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
) -> None:
    """Train a caption-conditioned DDPM (built-in shapes unless --data is given)."""
    overrides = {
        "base_channels": base_channels,
        "channel_mults": _ints(channel_mults, "channel-mults"),
        "num_res_blocks": num_res_blocks,
        "attn_levels": _ints(attn_levels, "attn-levels"),
        "norm_groups": norm_groups,
    }
    cfg = ImageTrainConfig(
        out=str(out),
        model=model,
        data=DataSpec(
            data=data, size=size, n_images=n_images, two_shape_fraction=two_shape_fraction
        ),
        preset=preset,
        unet_overrides={k: v for k, v in overrides.items() if v is not None},
        text_dim=text_dim,
        prediction=prediction,
        schedule=schedule,
        cond_drop=cond_drop,
        snr_gamma=snr_gamma or None,
        snr_floor=snr_floor if snr_gamma else 0.0,
        ema_decay=ema_decay,
        train=TrainConfig(
            max_steps=max_steps,
            batch_size=batch_size,
            lr=lr,
            warmup_steps=warmup_steps,
            weight_decay=0.0,
            eval_every=sample_every,
            eval_batches=4,
            checkpoint_every=checkpoint_every,
            precision=precision,
            compile=compile,
            device=device,
            seed=seed,
        ),
    )
    metrics = train_diffusion(cfg, resume=resume)
    line = f"trained {int(metrics['params']):,} parameters to step {int(metrics['step'])}"
    if "eval_loss" in metrics:
        line += f"; eval loss {metrics['eval_loss']:.4f}"
    typer.echo(f"{line}; run folder {out} (samples in {out}/samples)")


@image.command()
def sample(
    run: Annotated[Path, typer.Argument(help="A run folder written by 'genlab image train'.")],
    out: Annotated[Path, typer.Option("--out", help="PNG grid to write.")] = Path("grid.png"),
    prompt: Annotated[
        list[str] | None,
        typer.Option("--prompt", help="Caption (repeat for several); default: held-out captions."),
    ] = None,
    n: Annotated[int, typer.Option("--n", min=1, help="Images per prompt (or in all).")] = 16,
    sampler: Annotated[str, typer.Option("--sampler", help="ddpm or ddim.")] = "ddim",
    steps: Annotated[
        int | None, typer.Option("--steps", min=1, help="Default: 1000 (ddpm), 50 (ddim).")
    ] = None,
    eta: Annotated[float, typer.Option("--eta", min=0.0, max=1.0, help="DDIM noise.")] = 0.0,
    guidance: Annotated[
        float, typer.Option("--guidance", min=0.0, help="Classifier-free guidance scale.")
    ] = 3.0,
    raw: Annotated[bool, typer.Option("--raw", help="Use the raw weights, not the EMA.")] = False,
    precision: Annotated[str, typer.Option("--precision", help="fp32 or bf16.")] = "fp32",
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, mps.")] = "auto",
    seed: Annotated[int, typer.Option("--seed", min=0, help="Same seed, same images.")] = 0,
) -> None:
    """Sample images from a trained run into one PNG grid."""
    images, captions = sample_run(
        run,
        out,
        prompts=list(prompt) if prompt else None,
        n=n,
        sampler=sampler,
        steps=steps,
        eta=eta,
        guidance=guidance,
        seed=seed,
        use_ema=not raw,
        precision=precision,
        device=str(pick_device(device)),
    )
    typer.echo(f"wrote {len(images)} samples to {out}")
    if not prompt:
        for caption in dict.fromkeys(captions):
            typer.echo(f"  {caption}")
