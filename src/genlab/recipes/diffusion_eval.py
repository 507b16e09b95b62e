"""Sampling and measuring a trained text-to-image run (``genlab image sample``, ``genlab metrics
fid`` and the diffusion experiments).

Samples are scored the way the experiments report them: FID (Heusel et al., 2017, "GANs Trained
by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium") under genlab's own
feature network, caption adherence and seconds per image, against real images no training saw
(``reference_set``), with real images as the baseline (``real_baseline``).
"""

from __future__ import annotations

import os
import time

import torch

from genlab.core.errors import GenlabError
from genlab.data.captions import CaptionTokenizer
from genlab.data.images import from_uint8, save_grid
from genlab.methods.diffusion.samplers import DDIMScheduler, DDPMScheduler
from genlab.methods.diffusion.text_conditioned import (
    DiffusionModel,
    generate_captions,
    load_diffusion,
)
from genlab.metrics.adherence import caption_adherence
from genlab.metrics.features import REFERENCE_SEED, FeatureNet, feature_fid
from genlab.recipes.diffusion import DataSpec, held_out_captions, read_data_spec

DDIM_STEPS = 50  # DDIM's default number of steps; DDPM visits all training steps


def _scheduler(
    model: DiffusionModel, sampler: str, steps: int | None, eta: float
) -> DDPMScheduler | DDIMScheduler:
    scheduler = model.scheduler(sampler, eta=eta)
    default = model.config.num_train_timesteps if sampler == "ddpm" else DDIM_STEPS
    scheduler.set_timesteps(steps or default)
    return scheduler


def sample_run(
    run: str | os.PathLike,
    out: str | os.PathLike,
    prompts: list[str] | None = None,
    n: int = 16,
    sampler: str = "ddim",
    steps: int | None = None,
    eta: float = 0.0,
    guidance: float = 3.0,
    seed: int = 0,
    use_ema: bool = True,
    precision: str = "fp32",
    device: str = "cpu",
    batch_size: int = 64,
) -> tuple[torch.Tensor, list[str]]:
    """Write a grid of samples of a trained run: ``n`` per prompt (one row of up to 8 per
    prompt), or ``n`` for captions drawn from the run's held-out data without ``prompts``.
    Returns the images and the caption of each."""
    if n < 1:
        raise GenlabError(f"--n must be at least 1, got {n}")
    model, tokenizer = load_diffusion(run, use_ema=use_ema, device=device)
    for p in prompts or []:
        unknown = tokenizer.unknown_words(p)
        if unknown:
            known = ", ".join(tokenizer.vocab[3:])
            raise GenlabError(
                f"the prompt '{p}' uses words this model never saw ({', '.join(unknown)}); "
                f"it knows: {known}"
            )
    if prompts:
        captions = [p for p in prompts for _ in range(n)]
    else:
        pool = held_out_captions(read_data_spec(run))
        order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))
        captions = [pool[int(i)] for i in order[:n]]
    images = generate_captions(
        model,
        tokenizer,
        captions,
        _scheduler(model, sampler, steps, eta),
        guidance,
        seed,
        batch_size,
        precision,
    )
    save_grid(images, out, nrow=min(n, 8), scale=4)
    return images, captions


def reference_set(spec: DataSpec, n: int) -> tuple[torch.Tensor, list[str]]:
    """Real images (float, [-1, 1]) and captions the samples are compared with: ``n`` fresh
    scenes of the run's shapes distribution (a seed no training used), or the digits test
    split (359 images at most)."""
    if spec.data == "shapes":
        pixels, captions = spec.shapes(n, REFERENCE_SEED)
        return from_uint8(pixels), captions
    if spec.data == "digits":
        return spec.digits("test", n)
    raise GenlabError(
        f"a run trained on the folder {spec.data} has no built-in reference; compare a folder "
        "of its samples with 'genlab metrics fid FOLDER --ref FOLDER'"
    )


def _measures(
    net: FeatureNet, images: torch.Tensor, captions: list[str], reference: torch.Tensor
) -> dict[str, float]:
    """FID of ``images`` against ``reference`` under the net's features, caption adherence."""
    return {
        "fid": feature_fid(net, images, reference),
        **caption_adherence(net, images, captions).to_dict(),
        "n": float(len(images)),
        "n_reference": float(len(reference)),
    }


def real_baseline(spec: DataSpec, net: FeatureNet, reference: torch.Tensor) -> dict[str, float]:
    """The same measures for real images: another draw of as many images as ``reference``
    (other shapes scenes; training digits) against it. Its FID is the floor that sampling
    noise sets at this number of images, its adherence the reader's own accuracy."""
    n = len(reference)
    if spec.data == "shapes":
        pixels, captions = spec.shapes(n, REFERENCE_SEED + 1)
        images = from_uint8(pixels)
    else:
        images, captions = spec.digits("train", n)
    return _measures(net, images, captions, reference)


def evaluate_samples(
    model: DiffusionModel,
    tokenizer: CaptionTokenizer,
    net: FeatureNet,
    reference: torch.Tensor,
    captions: list[str],
    sampler: str = "ddim",
    steps: int | None = None,
    eta: float = 0.0,
    guidance: float = 3.0,
    seed: int = 0,
    batch_size: int = 100,
    precision: str = "fp32",
) -> tuple[dict[str, float], torch.Tensor]:
    """Generate one image per caption and measure them: FID against ``reference`` under the
    net's features, caption adherence, and the seconds per image of generation."""
    scheduler = _scheduler(model, sampler, steps, eta)
    tic = time.perf_counter()
    images = generate_captions(
        model, tokenizer, captions, scheduler, guidance, seed, batch_size, precision
    )
    seconds = time.perf_counter() - tic
    result = {
        **_measures(net, images, captions, reference),
        "seconds_per_image": seconds / len(images),
    }
    return result, images
