"""Text to image over HTTP: OpenAI's ``POST /v1/images/generations`` in front of a diffusion run.

A request's ``n`` images are drawn as ``genlab image sample`` draws them
(``genlab.recipes.diffusion_eval.sample_run``): DDIM (Song et al., 2021) from the run's weight
average, with classifier-free guidance (Ho & Salimans, 2022), the ``n`` captions in one batch
from one generator seeded with the request's ``seed``. So the same request gives the same PNG
bytes, and the same images as ``genlab image sample RUN --prompt P --n N --seed S --steps K
--guidance G``.

Each answer is ``{"created", "data": [{"b64_json", "revised_prompt"}]}`` as OpenAI's: the PNGs
inline (the server keeps no files, so ``response_format: "url"`` is refused) and, as
``revised_prompt``, the words the model read (lower-cased, punctuation dropped). A caption
model knows only the words of its training captions: a prompt with others is refused naming
them, rather than drawn from ``<unk>``.

Generation runs on one worker thread (one batch at a time: a CPU gains nothing from two, and
the model is not shared across threads), never on the event loop, so ``/health`` and text
requests are answered while images are drawn; requests beyond ``max_waiting`` waiting get a 429.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from genlab.adapt.adapted import KIND as ADAPTER_KIND
from genlab.core.checkpoint import read_model_config
from genlab.core.errors import GenlabError
from genlab.data.captions import CaptionTokenizer, words
from genlab.data.images import png_bytes
from genlab.methods.diffusion.text_conditioned import (
    KIND,
    DiffusionModel,
    generate_captions,
    load_diffusion,
)
from genlab.recipes.diffusion_eval import DDIM_STEPS
from genlab.serve.errors import ApiError
from genlab.serve.schemas import MAX_IMAGES, ImageGenerationRequest

log = logging.getLogger(__name__)

DEFAULT_GUIDANCE = 3.0  # ``genlab image sample``'s
MAX_LISTED = 10  # unknown words named in an error at most
MAX_KNOWN = 60  # known words listed in an error at most


def is_image_run(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a diffusion model, or an adapter run on one (one-line errors
    for a folder that is not a genlab model)."""
    meta = read_model_config(folder)
    for _ in range(8):  # an adapter's base, and so on
        if meta["kind"] != ADAPTER_KIND:
            break
        base = meta["config"].get("base") if isinstance(meta["config"], dict) else None
        if not isinstance(base, str):
            return False
        meta = read_model_config(base)
    return meta["kind"] == KIND


class ImageGenerator:
    """A diffusion model served under ``name``: checks image requests and draws them on its
    own thread (see the module docstring). Started and stopped with the application."""

    def __init__(
        self,
        model: DiffusionModel,
        tokenizer: CaptionTokenizer,
        name: str,
        *,
        max_waiting: int = 64,
        seed: int = 0,
    ) -> None:
        if max_waiting < 0:
            raise GenlabError(f"max_waiting must be >= 0, got {max_waiting}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.side = model.config.image_size
        self.size = f"{self.side}x{self.side}"
        self.max_waiting = max_waiting
        self._seeds = random.Random(seed)
        self._executor: ThreadPoolExecutor | None = None
        self._pending = 0  # requests accepted and not answered (touched on the event loop only)
        self.counters = {"requests": 0, "images": 0, "failed": 0}

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike,
        device: str | torch.device = "cpu",
        *,
        max_waiting: int = 64,
        seed: int = 0,
    ) -> ImageGenerator:
        """The diffusion run (or adapter run on one) in ``folder``, with its weight average,
        served under the folder's name."""
        model, tokenizer = load_diffusion(folder, device=device)
        name = Path(folder).resolve().name
        return cls(model, tokenizer, name, max_waiting=max_waiting, seed=seed)

    # ---- lifetime ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="genlab-image")

    def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def stats(self) -> dict[str, Any]:
        """What ``/health`` says of the image model."""
        return {
            "id": self.name,
            "size": self.size,
            "max_n": MAX_IMAGES,
            "max_words": self.tokenizer.max_length - 1,
            "steps": DDIM_STEPS,
            "max_steps": self.model.config.num_train_timesteps,
            "running": min(self._pending, 1),
            "waiting": max(self._pending - 1, 0),
            **self.counters,
        }

    # ---- requests ----------------------------------------------------------------------------

    def caption(self, body: ImageGenerationRequest) -> str:
        """The words of ``body.prompt`` the model reads, after checking the request fits this
        model (its size, vocabulary, caption length and number of steps)."""
        if body.size not in (None, "auto", self.size):
            raise ApiError(
                400,
                f"size: '{body.size}' is not served; this model draws {self.size} images "
                f"(size '{self.size}' or 'auto')",
                "size",
            )
        steps = self.model.config.num_train_timesteps
        if body.steps is not None and body.steps > steps:
            raise ApiError(
                400, f"steps: {body.steps} asked for, but this model has {steps} at most", "steps"
            )
        read = words(body.prompt)
        if not read:
            raise ApiError(
                400, "prompt: it has no words; describe the image, e.g. 'a red circle'", "prompt"
            )
        unknown = list(dict.fromkeys(self.tokenizer.unknown_words(body.prompt)))
        if unknown:
            named = ", ".join(f"'{w[:40]}'" for w in unknown[:MAX_LISTED])
            more = f" and {len(unknown) - MAX_LISTED} more" if len(unknown) > MAX_LISTED else ""
            known = self.tokenizer.vocab[3:]  # after <pad>, <cls>, <unk>
            listed = ", ".join(known[:MAX_KNOWN]) + (", ..." if len(known) > MAX_KNOWN else "")
            raise ApiError(
                400,
                f"prompt: this model never saw the words {named}{more}; it knows: {listed}",
                "prompt",
            )
        most = self.tokenizer.max_length - 1
        if len(read) > most:
            raise ApiError(
                400, f"prompt: it has {len(read)} words; this model reads {most} at most", "prompt"
            )
        return " ".join(read)

    async def generate(self, body: ImageGenerationRequest) -> dict[str, Any]:
        """The answer to ``body``: its images as base64 PNGs (429 when too many wait)."""
        caption = self.caption(body)
        if self._executor is None:
            raise ApiError(503, "the server is shutting down", kind="server_error")
        if self._pending > self.max_waiting:
            raise ApiError(
                429,
                f"the server is busy (one image request drawn, {self.max_waiting} waiting at "
                "most); retry shortly",
                kind="rate_limit_error",
            )
        seed = self._seeds.randrange(2**63) if body.seed is None else body.seed
        steps = body.steps or DDIM_STEPS
        guidance = DEFAULT_GUIDANCE if body.guidance is None else body.guidance
        n = body.n or 1
        self._pending += 1
        self.counters["requests"] += 1
        try:
            job = self._executor.submit(self.draw, caption, n, steps, guidance, seed)
            pngs = await asyncio.wrap_future(job)
        except Exception as e:
            self.counters["failed"] += 1
            log.error("image generation failed", exc_info=e)
            raise ApiError(
                500, "image generation failed; see the server's log", kind="server_error"
            ) from e
        finally:
            self._pending -= 1
        self.counters["images"] += n
        return {
            "created": int(time.time()),
            "data": [{"b64_json": png, "revised_prompt": caption} for png in pngs],
            "output_format": "png",
            "size": self.size,
        }

    def draw(self, caption: str, n: int, steps: int, guidance: float, seed: int) -> list[str]:
        """``n`` images of ``caption`` as base64 PNGs (on the worker thread)."""
        scheduler = self.model.scheduler("ddim")
        scheduler.set_timesteps(steps)
        images = generate_captions(
            self.model, self.tokenizer, [caption] * n, scheduler, guidance, seed, batch_size=n
        )
        return [base64.b64encode(png_bytes(image)).decode("ascii") for image in images]
