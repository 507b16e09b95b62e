"""Cascaded text-to-image: a base model draws a small image, a diffusion upsampler enlarges it.

Ho et al., 2021 ("Cascaded Diffusion Models for High Fidelity Image Generation") and Imagen
(Saharia et al., 2022) split generation by resolution: the base model spends its capacity on
what the image shows at a size where that is cheap, and each upsampler on detail, conditioned on
the stage before. Both stages read the caption (Imagen's upsamplers are text-conditioned too) and
may each be guided (classifier-free guidance of the caption). The base model's samples are
corrupted at a fixed noise-augmentation level before the upsampler reads them
(:mod:`genlab.methods.diffusion.upsampler`), since the upsampler learned on real downsampled
images and the level tells it how far to trust its input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.data.captions import CaptionTokenizer
from genlab.methods.diffusion.samplers import DDIMScheduler, DDPMScheduler
from genlab.methods.diffusion.text_conditioned import DiffusionModel, generate
from genlab.methods.diffusion.upsampler import Upsampler, upsample_batch

DEFAULT_AUG_LEVEL = 0.1  # the level the base model's samples are corrupted at
DEFAULT_UP_GUIDANCE = 1.0  # the upsampler's: the plain conditional model (the image leads)


class CascadeSamples(NamedTuple):
    """The cascade's output: the upsampled images and the base model's low-res samples they
    were drawn from, both (N, C, side, side) in [-1, 1]."""

    images: Tensor
    low_res: Tensor


def generate_cascade(
    base_model: DiffusionModel,
    base_tokenizer: CaptionTokenizer,
    upsampler: Upsampler,
    up_tokenizer: CaptionTokenizer,
    captions: Sequence[str],
    base_scheduler: DDPMScheduler | DDIMScheduler,
    up_scheduler: DDPMScheduler | DDIMScheduler,
    base_guidance: float = 3.0,
    up_guidance: float = DEFAULT_UP_GUIDANCE,
    aug_level: float = DEFAULT_AUG_LEVEL,
    seed: int = 0,
    batch_size: int = 64,
    precision: str = "fp32",
) -> CascadeSamples:
    """One image per caption: the base model's sample at its size (guided by
    ``base_guidance``), corrupted at ``aug_level`` and upsampled (guided by ``up_guidance``).

    Each model reads the caption through its own tokenizer. Batches of ``batch_size`` draw
    every random number of both stages from one generator seeded with ``seed``, in turn (the
    same seed and batch size give the same images)."""
    if not captions:
        raise GenlabError("no captions to generate images for")
    low_side, up_low = base_model.config.image_size, upsampler.config.low_res
    if low_side != up_low:
        raise GenlabError(
            f"the base model draws {low_side}-pixel images but the upsampler enlarges "
            f"{up_low}-pixel ones: train the base with --size {up_low}"
        )
    for name, tokenizer in (("base model", base_tokenizer), ("upsampler", up_tokenizer)):
        unknown = sorted({w for c in captions for w in tokenizer.unknown_words(c)})
        if unknown:
            raise GenlabError(
                f"the captions use words the {name} never saw ({', '.join(unknown[:5])})"
            )
    generator = torch.Generator().manual_seed(seed)
    images, lows = [], []
    for start in range(0, len(captions), batch_size):
        batch = list(captions[start : start + batch_size])
        tokens, mask = base_tokenizer.encode(batch)
        low = generate(
            base_model, tokens, mask, base_scheduler, base_guidance, generator, precision
        )
        tokens, mask = up_tokenizer.encode(batch)
        high = upsample_batch(
            upsampler,
            tokens,
            mask,
            low,
            up_scheduler,
            up_guidance,
            aug_level,
            generator,
            precision,
        )
        images.append(high.cpu())
        lows.append(low.cpu())
    return CascadeSamples(torch.cat(images), torch.cat(lows))
