"""``genlab metrics``: train the offline feature network, then FID, KID and caption adherence."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Annotated

import torch
import typer
from PIL import Image

from genlab.cli._app import app
from genlab.cli.options import config_command
from genlab.core.checkpoint import CONFIG_FILE, file_sha256
from genlab.core.device import pick_device
from genlab.core.errors import GenlabError
from genlab.core.io import atomic_write_json
from genlab.data.images import ImageFolderDataset
from genlab.methods.diffusion.text_conditioned import KIND as DIFFUSION_KIND
from genlab.methods.diffusion.text_conditioned import generate_captions, load_diffusion
from genlab.metrics.adherence import caption_adherence
from genlab.metrics.clip_score import open_clip
from genlab.metrics.features import (
    DATASETS,
    FeatureTrainConfig,
    default_features_dir,
    load_feature_net,
    train_feature_net,
)
from genlab.metrics.fid import feature_statistics, frechet_distance
from genlab.metrics.inception_features import FEATURES_NAME, inception_features
from genlab.metrics.kid import kid
from genlab.nets.inception import WEIGHTS_FILE, WEIGHTS_URL, FIDInceptionV3, load_fid_inception
from genlab.recipes.clip import (
    CLIPTrainConfig,
    ScoreOptions,
    default_clip_dir,
    score_target,
    train_clip,
)
from genlab.recipes.diffusion import DataSpec, read_data_spec
from genlab.recipes.diffusion_eval import DDIM_STEPS, evaluate_samples, reference_set

metrics = typer.Typer(
    help="Measure generated images: FID and KID with genlab or Inception-v3 features, caption "
    "adherence.",
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


def _native_size(path: Path) -> int:
    """The shorter side of a folder's first image: Inception reads folders at this size when no
    data set fixes one, so both sides keep the target's resolution."""
    ds = ImageFolderDataset(path, channels=3)
    with Image.open(ds.root / ds.rows[0][0]) as img:
        return min(img.size)


def _open_inception(weights: Path | None, device: torch.device) -> FIDInceptionV3:
    if weights is None:
        raise GenlabError(
            f"--features inception needs --inception-weights FILE: the FID Inception-v3 weights "
            f"({WEIGHTS_FILE}, from {WEIGHTS_URL})"
        )
    try:
        return load_fid_inception(weights, device)
    except GenlabError as e:
        raise GenlabError(f"--inception-weights: {e}") from e


def _sample(
    run: Path,
    device: torch.device,
    captions: list[str],
    sampler: str,
    steps: int | None,
    eta: float,
    guidance: float,
    seed: int,
    batch_size: int,
    precision: str,
) -> tuple[torch.Tensor, float]:
    """One sample of the run per caption, and the seconds per image it took."""
    model, tokenizer = load_diffusion(run, device=device)
    scheduler = model.scheduler(sampler, eta=eta)
    ddpm = sampler == "ddpm"
    scheduler.set_timesteps(steps or (model.config.num_train_timesteps if ddpm else DDIM_STEPS))
    tic = time.perf_counter()
    images = generate_captions(
        model, tokenizer, captions, scheduler, guidance, seed, batch_size, precision
    )
    return images, (time.perf_counter() - tic) / len(images)


@metrics.command()
def fid(
    target: Annotated[Path, typer.Argument(help="A diffusion run folder or a folder of images.")],
    ref: Annotated[
        str, typer.Option("--ref", help="shapes, digits or a folder of real images.")
    ] = "shapes",
    n: Annotated[int, typer.Option("--n", min=2, help="Images on each side.")] = 2000,
    features: Annotated[
        str,
        typer.Option(
            "--features",
            help="genlab (the feature net trained for the data), a feature net folder, or "
            "inception (the FID Inception-v3: needs --inception-weights).",
        ),
    ] = "genlab",
    inception_weights: Annotated[
        Path | None,
        typer.Option(
            "--inception-weights",
            help=f"The FID Inception-v3 weights ({WEIGHTS_FILE}, or a .safetensors copy).",
        ),
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
    """FID and KID of a run's samples or of a folder, with genlab's features (and caption
    adherence) or Inception-v3's (read at the data's size, else at the target's first image's)."""
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
    extra: dict[str, str] = {}
    if features == "inception":
        inception = _open_inception(inception_weights, dev)
        net = None
        side = spec.size if spec is not None else _native_size(target)
        kind = FEATURES_NAME
        extra = {
            "inception_weights": str(inception_weights),
            "inception_weights_sha256": file_sha256(inception_weights),  # type: ignore[arg-type]
        }
    else:
        if inception_weights is not None:
            raise GenlabError("--inception-weights is read with --features inception only")
        folder = default_features_dir(feature_data, size) if features == "genlab" else features
        net = load_feature_net(folder, dev)
        side = net.config.image_size
        kind = f"genlab {net.config.data}"
    if ref in DATASETS:
        reference, ref_captions = reference_set(spec, n)  # type: ignore[arg-type]
    else:
        reference, ref_captions = _folder_images(Path(ref), side, n)
    result: dict[str, float] = {}
    if is_run and net is not None:
        model, tokenizer = load_diffusion(target, device=dev)
        result, images = evaluate_samples(
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
    elif is_run:
        args = (sampler, steps, eta, guidance, seed, batch_size, precision)
        images, per_image = _sample(target, dev, ref_captions, *args)
        result["seconds_per_image"] = per_image
    else:
        images, captions = _folder_images(target, side, n)
        if net is not None:
            with contextlib.suppress(GenlabError):  # captions naming no attribute: FID only
                result.update(caption_adherence(net, images, captions).to_dict())
    if net is not None:
        feats, ref_feats = net.extract(images), net.extract(reference)
    else:
        feats = inception_features(inception, images, batch_size)
        ref_feats = inception_features(inception, reference, batch_size)
    result["fid"] = frechet_distance(*feature_statistics(feats), *feature_statistics(ref_feats))
    result.update(kid(feats, ref_feats).to_dict())
    result.update(n=float(len(images)), n_reference=float(len(reference)))
    name, kid_name = f"FID with {kind} features", f"KID with {kind} features"
    typer.echo(
        f"{name}: {round(result['fid'], 3) + 0.0:.3f} ({int(result['n'])} images vs "
        f"{int(result['n_reference'])} reference images)"
    )
    typer.echo(
        f"{kid_name}: {result['kid']:.5f} ± {result['kid_std']:.5f} (unbiased MMD^2, mean and "
        f"std over {int(result['kid_subsets'])} subsets of {int(result['kid_subset_size'])})"
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
        atomic_write_json(json_out, {"metric": name, "kid_metric": kid_name, **result, **extra})


@metrics.command("train-clip")
@config_command(CLIPTrainConfig)
def train_clip_command(cfg: CLIPTrainConfig) -> None:
    """Train the small CLIP that the CLIP score reads (contrastive, on shapes scenes)."""
    figures = train_clip(cfg)
    folder = cfg.out or default_clip_dir(cfg.data, cfg.size)
    typer.echo(
        f"CLIP in {folder}; held-out top-1 within batches of {int(figures['retrieval_batch'])}: "
        f"image->text {figures['acc_i2t']:.3f}, text->image {figures['acc_t2i']:.3f}; CLIP "
        f"score {figures['clip_score_matched']:.2f} with the right captions, "
        f"{figures['clip_score_shuffled']:.2f} with shuffled ones"
    )


@metrics.command("clip-score")
def clip_score_command(
    target: Annotated[
        Path, typer.Argument(help="A diffusion run folder or a folder of captioned images.")
    ],
    clip: Annotated[
        Path | None,
        typer.Option(
            "--clip",
            help="A genlab CLIP folder (train-clip) or a Hugging Face CLIP folder "
            "(save_pretrained); default: the shapes-32 CLIP under $GENLAB_HOME.",
        ),
    ] = None,
    n: Annotated[int, typer.Option("--n", min=2, help="Captions scored.")] = ScoreOptions.n,
    sampler: Annotated[str, typer.Option("--sampler", help="Run: ddpm or ddim.")] = "ddim",
    steps: Annotated[
        int | None, typer.Option("--steps", min=1, help="Run: sampling steps.")
    ] = None,
    eta: Annotated[float, typer.Option("--eta", min=0.0, max=1.0)] = ScoreOptions.eta,
    guidance: Annotated[float, typer.Option("--guidance", min=0.0)] = ScoreOptions.guidance,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = ScoreOptions.batch_size,
    precision: Annotated[str, typer.Option("--precision", help="fp32 or bf16.")] = "fp32",
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, mps.")] = "auto",
    seed: Annotated[int, typer.Option("--seed", min=0, help="Sampling seed.")] = 0,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures here.")
    ] = None,
) -> None:
    """CLIP score (torchmetrics' definition) of a run's samples or of a folder's images."""
    dev = pick_device(device)
    folder = clip or default_clip_dir("shapes", 32)
    model = open_clip(folder, dev)
    options = ScoreOptions(n, sampler, steps, eta, guidance, seed, batch_size, precision)
    result = score_target(target, model, options, dev)
    name = f"CLIP score with the CLIP in {folder}"
    typer.echo(
        f"{name}: {result['clip_score']:.3f} ({int(result['n'])} images; shuffled captions "
        f"{result['clip_score_shuffled']:.3f})"
    )
    if "clip_score_real" in result:
        typer.echo(f"real images of the same data: {result['clip_score_real']:.3f}")
    if json_out is not None:
        atomic_write_json(json_out, {"metric": name, **result})
