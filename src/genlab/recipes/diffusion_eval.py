"""Sampling and measuring a trained text-to-image run (``genlab image sample``, ``genlab metrics
fid`` and the diffusion experiments).

Samples are scored the way the experiments report them: FID (Heusel et al., 2017, "GANs Trained
by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium") under genlab's own
feature network, caption adherence and seconds per image, against real images no training saw
(``reference_set``), with real images as the baseline (``real_baseline``).

The protocol (``evaluation_groups``, ``evaluate_groups``):

- **Same captions.** The model draws one image per evaluation caption, and the reference is a
  real image drawn *for each of those captions* (fresh centres and radii), so FID compares
  images, not two caption distributions.
- **A floor.** Another independent real draw for the same captions, measured against the same
  reference, is the FID a perfect model would score at this number of images (FID is biased
  upwards at finite n; Chong & Forsyth, 2020, "Effectively Unbiased FID and Inception Score");
  a model's FID is read against it, and real adherence is the reader's own accuracy.
- **Enough images, and a distance unbiased at n.** ``FID_IMAGES`` (2,000) per set by
  default, and never as few as the features have dimensions (64 for the genlab feature net):
  below that the covariance is singular and FID is mostly noise. KID (Binkowski et al., 2018,
  ``genlab.metrics.kid``) is reported beside FID from the same features: its estimate is
  unbiased at any n for independent sets. Two draws for the same captions are closer than
  independent sets, so the KID floor sits at or a little below zero; read both against it.
- **Seen and unseen compositions.** A run trained with ``holdout="compositions"`` is measured
  on captions of training compositions (fresh images: "seen") and of held-out ones
  ("unseen"), each with its own reference and floor (``genlab.data.images.compositions``).
- **Validation, then test.** The unseen group reads the validation compositions unless told
  ``split="test"``: choose settings on validation, read test once for the report.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.data.captions import CaptionTokenizer
from genlab.data.images import DigitsDataset, ShapesDataset, from_uint8, save_grid
from genlab.methods.diffusion.samplers import DDIMScheduler, DDPMScheduler
from genlab.methods.diffusion.text_conditioned import (
    DiffusionModel,
    generate_captions,
    load_diffusion,
)
from genlab.metrics.adherence import caption_adherence
from genlab.metrics.features import REFERENCE_SEED, FeatureNet
from genlab.metrics.fid import feature_statistics, frechet_distance
from genlab.metrics.kid import kid
from genlab.recipes.diffusion import DataSpec, held_out_captions, load_images, read_data_spec

DDIM_STEPS = 50  # DDIM's default number of steps; DDPM visits all training steps
FID_IMAGES = 2000  # images per set for an experiment's FID (and its floor)
GPU_FID_IMAGES = 10_000  # the gpu preset's: the count most FID tables report (10k-50k)
MEASURE_PRESETS = ("cpu", "gpu")  # an experiment's measurement preset (see ``preset_images``)
EVAL_SPLITS = ("validation", "test")  # the held-out splits an evaluation may read
DISTANCES = ("fid", "kid")  # the set distances ``distances`` returns, each with a floor
KID_SUBSETS = 100  # KID's subsets of up to 1,000 images (Binkowski et al.'s 100 of 1,000)


def preset_images(n: int, preset: str) -> int:
    """Images a set for ``preset``: ``n`` on the CPU; at least ``GPU_FID_IMAGES`` on a GPU."""
    return max(n, GPU_FID_IMAGES) if preset == "gpu" else n


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


def _no_reference(spec: DataSpec) -> GenlabError:
    return GenlabError(
        f"a run trained on the folder {spec.data} has no built-in reference; compare a folder "
        "of its samples with 'genlab metrics fid FOLDER --ref FOLDER'"
    )


def real_images(spec: DataSpec, captions: list[str], seed: int = REFERENCE_SEED) -> Tensor:
    """Real images (float, [-1, 1]) for exactly ``captions``, one each: shapes scenes drawn
    afresh from each caption's attributes (centres and radii from ``seed``), or training digits
    of each caption's digit (each digit's images in an order of ``seed``, reused only when a
    digit is asked for more often than it has images)."""
    if spec.data == "shapes":
        return from_uint8(ShapesDataset.for_captions(captions, spec.size, seed).pixels)
    if spec.data != "digits":
        raise _no_reference(spec)
    digits = DigitsDataset(spec.size, split="train")
    order = torch.randperm(len(digits), generator=torch.Generator().manual_seed(seed))
    pools: dict[str, list[int]] = {}
    for i in order.tolist():
        pools.setdefault(digits[i].caption, []).append(i)
    missing = sorted(set(captions) - set(pools))
    if missing:
        raise GenlabError(f"no digits for the captions {', '.join(missing[:3])}")
    used: dict[str, int] = {}
    picks = []
    for c in captions:
        picks.append(pools[c][used.get(c, 0) % len(pools[c])])
        used[c] = used.get(c, 0) + 1
    return digits.images[torch.tensor(picks, dtype=torch.long)]


def reference_set(
    spec: DataSpec, n: int, split: str = "validation", seed: int = REFERENCE_SEED
) -> tuple[Tensor, list[str]]:
    """Real images (float, [-1, 1]) and captions the samples are compared with: for shapes,
    the captions of ``n`` scenes of ``split`` (``load_images``: "validation", "test" or
    "seen") and a real image drawn for each (``real_images`` with ``seed``); for digits, the
    test split (359 images at most, whatever ``split``)."""
    if spec.data == "shapes":
        captions = load_images(spec, split, n)[1]
        return real_images(spec, captions, seed), captions
    if spec.data == "digits":
        return spec.digits("test", n)
    raise _no_reference(spec)


def distances(net: FeatureNet, images: Tensor, reference: Tensor) -> dict[str, float]:
    """How far apart two image sets are under the net's features ("FID / KID with genlab DATA
    features"), the one place set distances are computed: FID, and KID (``kid`` and the std of
    its subset estimates, ``kid_std``), whose estimate is unbiased at any n, so that a small
    set's distance is not read as a large one."""
    features, ref_features = net.extract(images), net.extract(reference)
    fid = frechet_distance(*feature_statistics(features), *feature_statistics(ref_features))
    kernel = kid(features, ref_features, subsets=KID_SUBSETS)
    return {"fid": fid, "kid": kernel.mean, "kid_std": kernel.std}


def _measures(
    net: FeatureNet, images: Tensor, captions: list[str], reference: Tensor
) -> dict[str, float]:
    """The set distances of ``images`` to ``reference`` under the net's features, and caption
    adherence."""
    return {
        **distances(net, images, reference),
        **caption_adherence(net, images, captions).to_dict(),
        "n": float(len(images)),
        "n_reference": float(len(reference)),
    }


def real_baseline(
    spec: DataSpec, net: FeatureNet, reference: Tensor, captions: list[str]
) -> dict[str, float]:
    """The same measures for real images: an independent real draw for the same ``captions``
    (``real_images`` with another seed) against ``reference``. Its FID is the floor that
    sampling noise sets at this number of images (what a model drawing from the data itself
    would score), its adherence the reader's own accuracy."""
    images = real_images(spec, captions, REFERENCE_SEED + 1)
    return _measures(net, images, captions, reference)


@dataclass(frozen=True)
class EvalGroup:
    """One group of evaluation captions: ``split`` they come from, the ``captions``, a real
    image for each (``reference``) and the real baseline measured against it (``floor``)."""

    name: str  # "seen" or "unseen"
    split: str
    captions: list[str]
    reference: Tensor
    floor: dict[str, float]


def evaluation_groups(
    spec: DataSpec,
    net: FeatureNet,
    n: int = FID_IMAGES,
    split: str = "validation",
    names: tuple[str, ...] | None = None,
) -> dict[str, EvalGroup]:
    """The caption groups a run is measured on, ``n`` captions each: "seen" (fresh scenes of
    the training compositions) and "unseen" (the held-out compositions of ``split``) for a run
    trained with ``holdout="compositions"``; else one group, "seen", of ``split``'s fresh
    scenes (every composition was trained on). ``names``: only these groups (each drawn as it
    would be among all)."""
    if split not in EVAL_SPLITS:
        raise GenlabError(f"unknown split '{split}': choose {', '.join(EVAL_SPLITS)}")
    dim = net.config.feature_dim
    if n <= dim:
        raise GenlabError(
            f"FID over {dim}-d features needs more than {dim} images per set (else the "
            f"covariance is singular), got n={n}: use n={FID_IMAGES}"
        )
    splits = (
        {"seen": "seen", "unseen": split} if spec.holdout == "compositions" else {"seen": split}
    )
    unknown = sorted(set(names or ()) - set(splits))
    if unknown:
        raise GenlabError(
            f"no '{unknown[0]}' group for this run: it is measured on {', '.join(splits)}"
        )
    if names is not None:
        splits = {name: part for name, part in splits.items() if name in names}
    groups = {}
    for name, part in splits.items():
        reference, captions = reference_set(spec, n, part)
        floor = real_baseline(spec, net, reference, captions)
        groups[name] = EvalGroup(name, part, captions, reference, floor)
    return groups


def measure_group(net: FeatureNet, images: Tensor, group: EvalGroup) -> dict[str, float]:
    """Images generated for ``group.captions`` (in order), measured against its reference, with
    its floor beside: ``fid_floor``, ``kid_floor``, ``adherence_real``."""
    result = _measures(net, images, group.captions, group.reference)
    return {**result, **_floor(group)}


def _floor(group: EvalGroup) -> dict[str, float]:
    out = {f"{k}_floor": group.floor[k] for k in DISTANCES}
    return {**out, "adherence_real": group.floor["adherence"]}


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


def evaluate_groups(
    model: DiffusionModel,
    tokenizer: CaptionTokenizer,
    net: FeatureNet,
    groups: dict[str, EvalGroup],
    sampler: str = "ddim",
    steps: int | None = None,
    eta: float = 0.0,
    guidance: float = 3.0,
    seed: int = 0,
    batch_size: int = 100,
    precision: str = "fp32",
) -> tuple[dict[str, dict[str, float]], dict[str, Tensor]]:
    """``evaluate_samples`` on each group of ``evaluation_groups``: per group its measures with
    its floor beside (``fid``, ``fid_floor``, ``kid``, ``kid_floor``, ``adherence``,
    ``adherence_real``, ...), and the generated images."""
    results, images = {}, {}
    for name, group in groups.items():
        result, images[name] = evaluate_samples(
            model,
            tokenizer,
            net,
            group.reference,
            group.captions,
            sampler,
            steps,
            eta,
            guidance,
            seed,
            batch_size,
            precision,
        )
        results[name] = {**result, **_floor(group)}
    return results, images
