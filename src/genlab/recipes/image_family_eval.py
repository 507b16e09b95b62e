"""Opening, sampling and measuring a trained image-family run (``genlab image sample`` and the
image-families experiment).

Samples are scored as the diffusion experiments score theirs (FID with genlab features, caption
adherence, seconds per image) and, where a family defines one, with its likelihood in bits per
dimension on held-out images: a bound for the VAE (the ELBO), exact for the flow, and for image
GPT the exact likelihood of its tokens (bits per token: of palette pixels or VQ codes, not of the
8-bit image).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from genlab.core.ema import EMA_FILE
from genlab.core.errors import GenlabError
from genlab.core.io import read_json
from genlab.core.registry import load
from genlab.data.captions import CaptionTokenizer
from genlab.data.images import save_grid
from genlab.methods.autoregressive import image_gpt
from genlab.methods.flow import flow
from genlab.methods.vae import vae
from genlab.recipes.diffusion import RECIPE_FILE, DataSpec, held_out_captions
from genlab.recipes.image_family import (
    CAPTIONS_FILE,
    FAMILIES,
    TOKEN_FAMILIES,
    TOKENIZER_DIR,
    ImageTokenizer,
    open_tokenizer,
    sample_images,
)


def is_family_run(run: str | os.PathLike) -> bool:
    """Whether ``run`` was trained by ``train_family`` (not the diffusion recipe)."""
    path = Path(run) / RECIPE_FILE
    return path.is_file() and read_json(path, what="recipe settings").get("model") in FAMILIES


@dataclass
class FamilyRun:
    """An opened family run: its model (eval mode), captions, image tokenizer and data."""

    method: str
    model: nn.Module
    captions: CaptionTokenizer
    tokens: ImageTokenizer | None
    spec: DataSpec
    path: Path

    def encode_captions(self, captions: list[str]) -> Tensor:
        """Caption ids, refusing words the run never saw (in one line)."""
        unknown = sorted({w for c in captions for w in self.captions.unknown_words(c)})
        if unknown:
            known = ", ".join(self.captions.vocab[3:])
            raise GenlabError(
                f"the prompt uses words this model never saw ({', '.join(unknown)}); it knows: "
                f"{known}"
            )
        return self.captions.encode(captions)[0]

    def generate(
        self,
        captions: list[str],
        seed: int = 0,
        steps: int = 8,
        guidance: float = 0.0,
        temperature: float | None = None,
        batch_size: int = 250,
    ) -> Tensor:
        """One image per caption, in batches; the same seed gives the same images."""
        ids = self.encode_captions(captions)
        device = next(self.model.parameters()).device
        g = torch.Generator(device).manual_seed(seed)
        out = [
            sample_images(
                self.method,
                self.model,
                self.tokens,
                chunk.to(device),
                g,
                steps,
                guidance,
                temperature,
            ).cpu()
            for chunk in ids.split(batch_size)
        ]
        return torch.cat(out)

    @torch.no_grad()
    def bits_per_dim(self, images: Tensor, captions: list[str], seed: int = 0) -> float | None:
        """Mean bits per dimension of ``images`` (8-bit values in [-1, 1]) under the model:
        the VAE's bound, the flow's exact value, image GPT's bits per token; None otherwise."""
        ids = self.encode_captions(captions)
        g = torch.Generator().manual_seed(seed)
        values = []
        for x, c in zip(images.split(250), ids.split(250), strict=True):
            if self.method == "vae":
                values.append(vae.bits_per_dim(self.model, x, c, g))
            elif self.method == "flow":
                values.append(flow.bits_per_dim(self.model, x, c, g))
            elif self.method == "igpt":
                assert self.tokens is not None
                codes = self.tokens.encode(x)
                nats = image_gpt.log_likelihood(self.model, codes, c)
                values.append(-nats / (codes[0].numel() * math.log(2)))
            else:
                return None
        return float(torch.cat(values).mean())


def open_family_run(run: str | os.PathLike, use_ema: bool = True, device: str = "cpu") -> FamilyRun:
    """Open a family run (its weight average unless ``use_ema`` is False) on ``device``."""
    run = Path(run)
    recipe = read_json(run / RECIPE_FILE, what="recipe settings")
    method = recipe.get("model")
    if method not in FAMILIES:
        raise GenlabError(f"{run} is not an image-family run (its method is {method!r})")
    loaded = load(run, weights=EMA_FILE if use_ema else "model.safetensors", device=device)
    spec = DataSpec(**recipe["data"])
    tokens = open_tokenizer(run / TOKENIZER_DIR, spec.size) if method in TOKEN_FAMILIES else None
    captions = CaptionTokenizer.from_json((run / CAPTIONS_FILE).read_text())
    return FamilyRun(method, loaded.model, captions, tokens, spec, run)


def sample_family(
    run: str | os.PathLike,
    out: str | os.PathLike,
    prompts: list[str] | None = None,
    n: int = 16,
    steps: int = 8,
    guidance: float = 0.0,
    temperature: float | None = None,
    seed: int = 0,
    use_ema: bool = True,
    device: str = "cpu",
) -> tuple[Tensor, list[str]]:
    """Write a grid of samples: ``n`` per prompt, or ``n`` for held-out captions."""
    if n < 1:
        raise GenlabError(f"--n must be at least 1, got {n}")
    fr = open_family_run(run, use_ema, device)
    if fr.method == "vq":
        raise GenlabError(
            f"{run} is a VQ-VAE, a tokenizer: train igpt or maskgit with --tokenizer {run}"
        )
    if prompts:
        captions = [p for p in prompts for _ in range(n)]
    else:
        pool = held_out_captions(fr.spec)
        order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))
        captions = [pool[int(i)] for i in order[:n]]
    images = fr.generate(captions, seed, steps, guidance, temperature)
    save_grid(images, out, nrow=min(n, 8), scale=4)
    return images, captions


def seconds_per_image(
    fr: FamilyRun, captions: list[str], steps: int = 8, batch_size: int = 250, seed: int = 0
) -> tuple[Tensor, float]:
    """Generate one image per caption; the images and the wall seconds per image."""
    tic = time.perf_counter()
    images = fr.generate(captions, seed, steps, batch_size=batch_size)
    return images, (time.perf_counter() - tic) / len(captions)
