"""``genlab metrics``: train the offline feature network, then FID and caption adherence."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated

import torch
import typer

from genlab.cli._app import app
from genlab.cli.options import config_command
from genlab.core.checkpoint import CONFIG_FILE
from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_json
from genlab.data.images import ImageFolderDataset
from genlab.methods.diffusion.text_conditioned import KIND as DIFFUSION_KIND
from genlab.methods.diffusion.text_conditioned import load_diffusion
from genlab.metrics.adherence import caption_adherence
from genlab.metrics.features import (
    DATASETS,
    FeatureTrainConfig,
    default_features_dir,
    feature_fid,
    load_feature_net,
    train_feature_net,
)
from genlab.recipes.diffusion import DataSpec, read_data_spec
from genlab.recipes.diffusion_eval import evaluate_samples, reference_set

metrics = typer.Typer(
    help="Measure generated images: FID with genlab features, caption adherence.",
    no_args_is_help=True,
)
app.add_typer(metrics, name="metrics")


@metrics.command("train-features")
@config_command(FeatureTrainConfig)
def train_features(cfg: FeatureTrainConfig) -> None:
    """Train the feature network + attribute classifier that FID and adherence use."""
    if cfg.data not in DATASETS:
        raise GenlabError(f"--data must be one of {', '.join(DATASETS)}, got '{cfg.data}'")
    folder = cfg.out or default_features_dir(cfg.data, cfg.size)
    acc = train_feature_net(folder, cfg.data, cfg.size, cfg.n_images, cfg.train)
    parts = ", ".join(f"{k[4:]} {v:.3f}" for k, v in acc.items() if k.startswith("acc_"))
    typer.echo(f"feature net in {folder}; held-out accuracy: {parts}")


def _is_run(path: Path) -> bool:
    if not (path / CONFIG_FILE).is_file():
        return False
    try:
        return json.loads((path / CONFIG_FILE).read_text()).get("kind") == DIFFUSION_KIND
    except (json.JSONDecodeError, OSError):
        return False


def _folder_images(path: Path, size: int, n: int) -> tuple[torch.Tensor, list[str]]:
    ds = ImageFolderDataset(path, size, channels=3)
    items = [ds[i] for i in range(min(n, len(ds)))]
    return torch.stack([it.image for it in items]), [it.caption for it in items]


@metrics.command()
def fid(
    target: Annotated[Path, typer.Argument(help="A diffusion run folder or a folder of images.")],
    ref: Annotated[
        str, typer.Option("--ref", help="shapes, digits or a folder of real images.")
    ] = "shapes",
    n: Annotated[int, typer.Option("--n", min=2, help="Images on each side.")] = 2000,
    features: Annotated[
        Path | None, typer.Option("--features", help="Feature net folder (default: per data).")
    ] = None,
    two_shape_fraction: Annotated[
        float, typer.Option("--two-shape-fraction", min=0.0, max=1.0, help="Shapes reference.")
    ] = 0.0,
    sampler: Annotated[str, typer.Option("--sampler", help="Run: ddpm or ddim.")] = "ddim",
    steps: Annotated[
        int | None, typer.Option("--steps", min=1, help="Run: sampling steps.")
    ] = None,
    eta: Annotated[float, typer.Option("--eta", min=0.0, max=1.0)] = 0.0,
    guidance: Annotated[float, typer.Option("--guidance", min=0.0)] = 3.0,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 100,
    precision: Annotated[str, typer.Option("--precision", help="fp32 or bf16.")] = "fp32",
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, mps.")] = "auto",
    seed: Annotated[int, typer.Option("--seed", min=0, help="Sampling seed.")] = 0,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures here.")
    ] = None,
) -> None:
    """FID with genlab features (and caption adherence) of a run's samples or of a folder."""
    dev = pick_device(device)
    is_run = _is_run(target)
    spec = read_data_spec(target) if is_run else None
    if ref in DATASETS:
        if spec is not None and spec.data != ref:
            raise GenlabError(
                f"{target} was trained on {spec.data}, not {ref}: pass --ref {spec.data}"
            )
        spec = spec or DataSpec(data=ref, size=32, two_shape_fraction=two_shape_fraction)
        feature_data = ref
    else:
        feature_data = spec.data if spec is not None and spec.data in DATASETS else "shapes"
    size = spec.size if spec is not None else 32
    net = load_feature_net(features or default_features_dir(feature_data, size), dev)
    if ref in DATASETS:
        reference, ref_captions = reference_set(spec, n)  # type: ignore[arg-type]
    else:
        reference, ref_captions = _folder_images(Path(ref), net.config.image_size, n)
    name = f"FID with genlab {net.config.data} features"
    if is_run:
        model, tokenizer = load_diffusion(target, device=dev)
        result, _ = evaluate_samples(
            model,
            tokenizer,
            net,
            reference,
            ref_captions,
            sampler,
            steps,
            eta,
            guidance,
            seed,
            batch_size,
            precision,
        )
    else:
        images, captions = _folder_images(target, net.config.image_size, n)
        result = {"fid": feature_fid(net, images, reference), "n": float(len(images))}
        result["n_reference"] = float(len(reference))
        with contextlib.suppress(GenlabError):  # captions naming no attribute: FID only
            result.update(caption_adherence(net, images, captions).to_dict())
    typer.echo(
        f"{name}: {round(result['fid'], 3) + 0.0:.3f} ({int(result['n'])} images vs "
        f"{int(result['n_reference'])} reference images)"
    )
    if "adherence" in result:
        per = ", ".join(
            f"{k.removeprefix('adherence_')} {v:.3f}"
            for k, v in result.items()
            if k.startswith("adherence_")
        )
        typer.echo(
            f"caption adherence: {result['adherence']:.3f} ({per}; {int(result['scored'])} scored)"
        )
    if "seconds_per_image" in result:
        typer.echo(
            f"sampling: {result['seconds_per_image']:.4f} s per image ({sampler}, "
            f"{steps or 'default'} steps, guidance {guidance})"
        )
    if json_out is not None:
        atomic_write_json(json_out, {"metric": name, **result})
