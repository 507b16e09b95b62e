"""One point of a sampling experiment: sample a trained run at one setting and measure it.

The diffusion experiments are sweeps (``genlab.core.sweep``) of ``sample_point`` over samplers,
step counts, guidance scales or runs. Each point loads its run, draws one image per reference
caption from the same seed (so every point starts from the same noise) and keeps its first 8
images for the page's sample strip.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from genlab.core.io import atomic_save_tensors, load_tensors
from genlab.core.sweep import Point, point_dir, run_sweep
from genlab.methods.diffusion.text_conditioned import load_diffusion
from genlab.metrics.features import load_feature_net
from genlab.recipes.diffusion import read_data_spec
from genlab.recipes.diffusion_eval import evaluate_samples, reference_set

SAMPLE_POINT = "genlab.recipes.experiments.sampling:sample_point"
STRIP_FILE = "samples.safetensors"  # a point's first 8 images, for the sample strip


def sample_point(settings: dict[str, Any], run_dir: Path) -> dict[str, float]:
    """FID, caption adherence and seconds per image of ``settings["run"]`` sampled with
    ``sampler``, ``steps`` and ``guidance`` (eta 0) for ``n`` reference captions, the feature
    net in ``features``, and ``seed``, ``batch_size`` and ``precision``."""
    spec = read_data_spec(settings["run"])
    net = load_feature_net(settings["features"])
    model, tokenizer = load_diffusion(settings["run"])
    reference, captions = reference_set(spec, settings["n"])
    result, images = evaluate_samples(
        model,
        tokenizer,
        net,
        reference,
        captions,
        settings["sampler"],
        settings["steps"],
        0.0,
        settings["guidance"],
        settings["seed"],
        settings["batch_size"],
        settings["precision"],
    )
    atomic_save_tensors(run_dir / STRIP_FILE, {"images": images[:8]})
    return result


def sweep_samples(
    points: list[Point], fixed: Point, out: Path, parallel: int, fn: str = SAMPLE_POINT
) -> tuple[list[dict[str, Any]], list[torch.Tensor]]:
    """Run the sweep of ``fn`` (``sample_point`` or a function around it); its rows and each
    point's sample strip, in the order of ``points``."""
    rows = run_sweep(fn, points, out, fixed, parallel)
    strips = [load_tensors(point_dir(out, fn, p, fixed) / STRIP_FILE)["images"] for p in points]
    return rows, strips


def weights_digest(*folders: str | os.PathLike) -> str:
    """A hash of the weights in ``folders``, as a sweep setting: after a run is trained further
    (or a feature net retrained) its points are new, not results measured on the old weights."""
    h = hashlib.sha256()
    for folder in folders:
        for path in sorted(Path(folder).glob("*.safetensors")):
            h.update(path.read_bytes())
    return h.hexdigest()[:16]
