"""A sampling experiment's shared settings, and one point of it: sample a trained run at one
setting and measure it.

The diffusion experiments are sweeps (``genlab.core.sweep``) of ``sample_point`` over samplers,
step counts, guidance scales or runs. Each point loads its run, draws one image per reference
caption from the same seed (so every point starts from the same noise) and keeps its first 8
images for the page's sample strip. Each experiment's config extends :class:`ExperimentConfig`,
and ``genlab experiment`` generates its options from that config.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import Tensor

from genlab.core.errors import GenlabError
from genlab.core.io import atomic_save_tensors, load_tensors
from genlab.core.sweep import Point, point_dir, run_sweep
from genlab.methods.diffusion.text_conditioned import load_diffusion
from genlab.metrics.features import FeatureNet, default_features_dir, load_feature_net
from genlab.recipes.diffusion import DataSpec, read_data_spec
from genlab.recipes.diffusion_eval import (
    EVAL_SPLITS,
    FID_IMAGES,
    MEASURE_PRESETS,
    evaluate_samples,
    preset_images,
    real_baseline,
    reference_set,
)
from genlab.recipes.experiments.report import DOCS_DIR, SWEEPS_DIR

SAMPLE_POINT = "genlab.recipes.experiments.sampling:sample_point"
STRIP_FILE = "samples.safetensors"  # a point's first 8 images, for the sample strip
FEATURES_FILE = "features.safetensors"  # a point's image features, for bootstrap intervals
Check = tuple[bool, str]  # a setting's range check and the rule it states


@dataclass
class ExperimentConfig:
    """What every sampling experiment sets: the run and feature net, the images per row and
    their seed, and where the page and the sweep's run folders go."""

    run: str = "runs/shapes32"  # a run of 'genlab image train'
    features: str | None = None  # feature network folder; none: genlab's cache
    n: int = FID_IMAGES  # generated images per table row (and real images per reference)
    preset: Literal["cpu", "gpu"] = "cpu"  # gpu: at least GPU_FID_IMAGES images a set
    split: Literal["validation", "test"] = "validation"  # captions: tune on validation, report test
    seed: int = 0  # decides the captions and the initial noise
    batch_size: int = 100  # images per forward
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # the network's precision while sampling
    out_dir: str = str(DOCS_DIR)  # where the page and its figures go
    sweep_dir: str = str(SWEEPS_DIR)  # a run folder per setting, reused once measured
    parallel: int = 1  # settings run at once, one process each (time them only at 1)

    def __post_init__(self) -> None:
        self.n = preset_images(self.n, self.preset)

    def checks(self) -> dict[str, Check]:
        """Each setting's range check; an experiment adds its own."""
        return {
            "n": (self.n >= 2, "at least 2"),
            "preset": (self.preset in MEASURE_PRESETS, " or ".join(MEASURE_PRESETS)),
            "split": (self.split in EVAL_SPLITS, " or ".join(EVAL_SPLITS)),
            "seed": (self.seed >= 0, "at least 0"),
            "batch_size": (self.batch_size >= 1, "at least 1"),
            "parallel": (self.parallel >= 1, "at least 1"),
        }

    def validate(self) -> None:
        """Refuse the first setting out of range, in one line."""
        for name, (ok, rule) in self.checks().items():
            if not ok:
                value = getattr(self, name)
                raise GenlabError(f"invalid experiment setting {name}={value!r}: {rule}")

    def features_dir(self, spec: DataSpec) -> Path:
        """The feature net: ``features``, else genlab's cached one for the run's data."""
        return Path(self.features) if self.features else default_features_dir(spec.data, spec.size)

    def sweep_settings(self, features: Path, *runs: Path) -> Point:
        """The settings every point of the sweep shares: the feature net, a digest of its and
        ``runs``' weights, the images per row, their seed, batch size and precision."""
        return {
            "features": str(features),
            "weights": weights_digest(*runs, features),
            "n": self.n,
            "split": self.split,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "precision": self.precision,
        }


@dataclass(frozen=True)
class Baseline:
    """What a sampled run's rows are measured with and against: the run's data, the feature
    net, the captions' split, the reference (a real image per caption), and another draw of
    real images for the same captions measured alike (the floor of FID and KID and the ceiling
    of adherence at this sample size)."""

    spec: DataSpec
    features: Path
    net: FeatureNet
    split: str
    reference: Tensor
    real: dict[str, float]

    def finding(self) -> str:
        """What the real images score, for the page."""
        return (
            f"Real images (another draw for the same {len(self.reference)} captions) score FID "
            f"{self.real['fid']:.3g} and KID {self.real['kid']:.3g} against the reference, "
            f"adherence {self.real['adherence']:.3f}: the floor and ceiling at this sample size."
        )

    def protocol(self) -> str:
        """The settings line that says what each row is measured against."""
        n = len(self.reference)
        if self.spec.data == "digits":
            captions = f"{n} captions of test digits"
        elif self.spec.holdout == "compositions":
            captions = f"{n} {self.split} captions of held-out compositions (never trained on)"
        else:
            captions = f"{n} {self.split} captions of fresh scenes"
        return (
            f"{captions}, one generated image per caption per row; FID and KID (genlab "
            f"{self.spec.data} features) against a real image drawn for each of those captions; "
            "the real-images row is an independent real draw for the same captions, measured "
            "alike"
        )


def baseline(cfg: ExperimentConfig) -> Baseline:
    """The baseline of ``cfg.run`` with ``cfg.n`` reference images."""
    spec = read_data_spec(cfg.run)
    features = cfg.features_dir(spec)
    net = load_feature_net(features)
    reference, captions = reference_set(spec, cfg.n, cfg.split)
    real = real_baseline(spec, net, reference, captions)
    return Baseline(spec, features, net, cfg.split, reference, real)


def sample_point(settings: dict[str, Any], run_dir: Path) -> dict[str, float]:
    """FID, KID, caption adherence and seconds per image of ``settings["run"]`` sampled with
    ``sampler``, ``steps`` and ``guidance`` (eta 0) for ``n`` reference captions, the feature
    net in ``features``, and ``seed``, ``batch_size`` and ``precision``. The images' features
    are kept beside (``FEATURES_FILE``), for intervals that resample the captions."""
    spec = read_data_spec(settings["run"])
    net = load_feature_net(settings["features"])
    model, tokenizer = load_diffusion(settings["run"])
    reference, captions = reference_set(spec, settings["n"], settings.get("split", "validation"))
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
    atomic_save_tensors(run_dir / FEATURES_FILE, {"features": net.extract(images)})
    return result


def sweep_samples(
    points: list[Point], fixed: Point, out: Path, parallel: int, fn: str = SAMPLE_POINT
) -> tuple[list[dict[str, Any]], list[Tensor]]:
    """Run the sweep of ``fn`` (``sample_point`` or a function around it); its rows and each
    point's sample strip, in the order of ``points``."""
    rows = run_sweep(fn, points, out, fixed, parallel)
    strips = [load_tensors(point_dir(out, fn, p, fixed) / STRIP_FILE)["images"] for p in points]
    return rows, strips


def sweep_features(
    points: list[Point], fixed: Point, out: Path, fn: str = SAMPLE_POINT
) -> list[Tensor]:
    """Each measured point's image features (``FEATURES_FILE``), in the order of ``points``."""
    paths = [point_dir(out, fn, p, fixed) / FEATURES_FILE for p in points]
    missing = [path.parent for path in paths if not path.is_file()]
    if missing:
        raise GenlabError(
            f"{missing[0]} was measured without its image features: delete the folder to "
            "measure it again"
        )
    return [load_tensors(path)["features"] for path in paths]


def weights_digest(*folders: str | os.PathLike) -> str:
    """A hash of the weights in ``folders``, as a sweep setting: after a run is trained further
    (or a feature net retrained) its points are new, not results measured on the old weights."""
    h = hashlib.sha256()
    for folder in folders:
        for path in sorted(Path(folder).glob("*.safetensors")):
            h.update(path.read_bytes())
    return h.hexdigest()[:16]
