"""genlab: generative AI end to end on PyTorch, and measured.

The package is layered (an import only points down): ``core`` (knows no model: trainer,
registry, sweeps), ``data``, ``nets`` (networks only), ``methods`` (how each family learns and
generates), the techniques on top (``align``, ``metrics``), ``recipes``, ``serve`` and the
``cli``. See ``docs/architecture.md``.

``genlab.load(path)`` opens any model folder genlab writes (a GPT, a reward model, a PPO policy,
a diffusion model, a feature network) and names the problem when a folder is broken.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from genlab.core.registry import Loaded

__version__ = "0.1.0"

# The modules that register a model kind: importing them makes their kinds loadable.
KIND_MODULES = (
    "genlab.methods.autoregressive.checkpoint",
    "genlab.methods.autoregressive.seq2seq",
    "genlab.methods.masked.cmlm",
    "genlab.adapt.adapted",
    "genlab.methods.diffusion.text_conditioned",
    "genlab.methods.diffusion.upsampler",
    "genlab.methods.diffusion.vocoder",
    "genlab.methods.vae.vae",
    "genlab.methods.vae.vq",
    "genlab.methods.flow.flow",
    "genlab.methods.gan.gan",
    "genlab.methods.autoregressive.image_gpt",
    "genlab.methods.masked.maskgit",
    "genlab.align.reward",
    "genlab.align.policy",
    "genlab.metrics.features",
    "genlab.methods.contrastive",
    "genlab.research.ngram_detector",
)


def load(
    path: str | os.PathLike, device: str | torch.device = "cpu", kind: str | None = None
) -> Loaded:
    """Open the model folder ``path`` (any kind) in eval mode: ``.model``, ``.config``,
    ``.files`` (e.g. ``files["tokenizer"]``), ``.kind``."""
    for module in KIND_MODULES:
        importlib.import_module(module)
    from genlab.core.registry import load as load_folder

    return load_folder(path, kind, device)
