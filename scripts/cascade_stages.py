"""Where a cascade loses an attribute of the caption: its 16x16 size, its base, or its upsampler.

Reads caption adherence (per attribute) of five image sets for the same unseen captions of a
``genlab experiment pixel-vs-latent`` run folder's cascade: real images; real images
area-downsampled to the base's side and enlarged bilinearly (what a perfect base could carry);
the upsampler given those real low-res images (at augmentation level 0 and at the sampling
level); the base's own samples enlarged bilinearly; the whole cascade. Saharia et al. (2022)
build Imagen from such stages; this says which one a young cascade is short of.

    python scripts/cascade_stages.py --runs-dir runs/pixel_vs_latent --n 500
"""

from __future__ import annotations

import argparse

import torch

from genlab.methods.diffusion.cascade import DEFAULT_AUG_LEVEL, generate_cascade
from genlab.methods.diffusion.samplers import DDIMScheduler, DDPMScheduler
from genlab.methods.diffusion.text_conditioned import DiffusionModel, load_diffusion
from genlab.methods.diffusion.upsampler import (
    Upsampler,
    downsample,
    load_upsampler,
    resize_up,
    upsample,
)
from genlab.metrics.adherence import caption_adherence
from genlab.recipes.diffusion_eval import evaluation_groups
from genlab.recipes.experiments.pixel_vs_latent import PixelVsLatentConfig
from genlab.recipes.experiments.t2i_arms import Instruments, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs-dir", required=True, help="the pixel-vs-latent runs folder")
    parser.add_argument("--n", type=int, default=500, help="unseen captions read")
    parser.add_argument("--split", default="test", help="validation or test")
    parser.add_argument("--low-res", type=int, default=16, help="the base's side")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps of each stage")
    parser.add_argument("--guidance", type=float, default=3.0, help="the base's guidance")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    # the experiment's defaults: the same feature net (from the cache) and evaluation captions
    cfg = PixelVsLatentConfig(
        split=args.split, runs_dir=args.runs_dir, low_res=args.low_res, seed=args.seed
    )
    tools = Instruments(cfg)
    group = evaluation_groups(data(cfg), tools.net, cfg.n, args.split, names=("unseen",))
    captions, real = group["unseen"].captions[: args.n], group["unseen"].reference[: args.n]

    def show(name: str, images: torch.Tensor) -> None:
        read = caption_adherence(tools.net, images, captions).to_dict()
        cells = [f"{read['adherence']:.3f}"]
        cells += [f"{read[f'adherence_{a}']:.3f}" for a in ("color", "kind", "position", "size")]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)

    def ddim(model: DiffusionModel | Upsampler) -> DDPMScheduler | DDIMScheduler:
        scheduler = model.scheduler("ddim")
        scheduler.set_timesteps(args.steps)
        return scheduler

    print(f"{args.n} unseen {args.split} captions, seed {args.seed}\n")
    print("| images | adherence | colour | kind | place | size |\n|---|---|---|---|---|---|")
    show("real", real)
    low_real = downsample(real, args.low_res)
    show(
        f"real at {args.low_res}x{args.low_res}, enlarged bilinearly", resize_up(low_real, cfg.size)
    )
    root = f"{args.runs_dir}/cascade"
    base, base_tokens = load_diffusion(f"{root}/base")
    up, up_tokens = load_upsampler(f"{root}/upsampler")
    for level in (0.0, DEFAULT_AUG_LEVEL):
        images = upsample(
            up,
            up_tokens,
            low_real,
            captions,
            ddim(up),
            seed=args.seed,
            aug_level=level,
            batch_size=args.batch_size,
        )
        show(f"upsampler of the real low-res images, augmentation {level}", images)
    out = generate_cascade(
        base,
        base_tokens,
        up,
        up_tokens,
        captions,
        ddim(base),
        ddim(up),
        base_guidance=args.guidance,
        aug_level=DEFAULT_AUG_LEVEL,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    show("the base's samples, enlarged bilinearly", resize_up(out.low_res, cfg.size))
    show("the cascade (base, then upsampler)", out.images)


if __name__ == "__main__":
    main()
