"""``genlab scaling sweep``: GPTs over a grid of sizes and token budgets, one run folder each,
with the FLOPs counted, ready for ``genlab scaling fit``.

Every run pretrains on the same TinyWorld text and tokenizer; a run's budget in tokens sets its
steps (tokens / (batch x context)). The learning rate follows one stated rule, lr = lr_ref *
(width_ref / width)^0.5 with width_ref 128 (wider models want smaller steps; muP makes this
exact, this is its usual approximation), and warm-up is a fixed fraction of the steps. Each run
records ``params`` (Kaplan's non-embedding N), ``tokens``, ``loss`` (held-out, at the end),
``flops`` and ``params_total``. Points run in local processes or as tasks on a Ray cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from genlab.core.errors import GenlabError
from genlab.core.sweep import Metrics, Point, run_sweep
from genlab.core.train_config import TrainConfig
from genlab.recipes.pretrain import PretrainConfig, pretrain
from genlab.scaling.flops import flops_per_token, non_embedding_params

TRAIN_POINT = "genlab.recipes.scaling:train_point"
WIDTH_REF = 128  # the width at which the learning rate is lr_ref
HELD_OUT = "held-out"  # the suffix of the folder beside a sweep for runs predicted, not fitted
# preset -> shapes as (layers, heads, width) x token budgets, plus "extra" runs as (layers,
# heads, width, budget): the CPU grid gives its three smaller shapes a 4M-token run each, so
# that the sweep reaches past 20 tokens per parameter, where the irreducible loss shows,
# without raising its largest compute
GRIDS: dict[str, dict[str, list[Any]]] = {
    "cpu": {
        "shapes": [[2, 2, 32], [2, 4, 64], [3, 4, 96], [4, 4, 128]],
        "tokens": [250_000, 500_000, 1_000_000, 2_000_000],
        "extra": [[2, 2, 32, 4_000_000], [2, 4, 64, 4_000_000], [3, 4, 96, 4_000_000]],
    },
    "gpu": {
        "shapes": [
            [4, 4, 128],
            [6, 6, 192],
            [8, 8, 256],
            [8, 8, 384],
            [12, 12, 512],
            [12, 12, 768],
        ],
        "tokens": [5_000_000, 10_000_000, 20_000_000, 50_000_000, 100_000_000],
    },
}


@dataclass
class ScalingSweepConfig:
    """The grid, what every run shares, and where the points run."""

    grid: str = "cpu"  # a preset (cpu: 19 runs; gpu: 30) or a JSON/YAML file {"shapes", "tokens"}
    out: str = "runs/scaling"  # the sweep folder (one run folder per point)
    block_size: int = 128
    batch_size: int = 16
    lr: float = 2e-3  # at width 128; scaled by (128 / width)^0.5
    warmup_fraction: float = 0.05  # of each run's steps
    corpus_chars: int = 16_000_000  # TinyWorld text: about 4.7M tokens, so no run repeats data
    vocab_size: int = 1024
    seed: int = 0  # the corpus drawn and the weights initialised
    device: str = "auto"
    parallel: int = 1  # local processes at once
    nproc_per_point: int = 1  # > 1: each point a torchrun job of this many processes (GPUs)
    launcher: str = "local"  # local | ray
    address: str = (
        ""  # with --launcher ray: the cluster (ray://host:10001 or host:6379); none: this machine
    )

    def points(self) -> list[Point]:
        spec = GRIDS.get(self.grid) or _read_grid(self.grid)
        runs = [[*shape, budget] for shape in spec["shapes"] for budget in spec["tokens"]]
        return [
            {"layers": int(layers), "heads": int(heads), "width": int(width), "budget": int(budget)}
            for layers, heads, width, budget in runs + list(spec.get("extra", []))
        ]


def _read_grid(path: str) -> dict[str, list[Any]]:
    file = Path(path)
    if not file.is_file():
        raise GenlabError(f"grid {path!r} is neither a preset ({', '.join(GRIDS)}) nor a file")
    try:
        spec = yaml.safe_load(file.read_text())  # JSON is YAML
    except yaml.YAMLError as e:
        raise GenlabError(f"{path} is not JSON or YAML ({str(e).splitlines()[0]})") from None
    spec = spec if isinstance(spec, dict) else {}
    shapes, tokens, extra = spec.get("shapes"), spec.get("tokens"), spec.get("extra", [])
    ok = isinstance(shapes, list) and isinstance(tokens, list) and shapes and tokens
    ok = ok and all(isinstance(s, list) and len(s) == 3 for s in shapes)
    ok = ok and all(isinstance(t, int) and t > 0 for t in tokens)
    ok = ok and isinstance(extra, list) and all(isinstance(e, list) and len(e) == 4 for e in extra)
    if not ok:
        raise GenlabError(
            f'{path} needs "shapes": [[layers, heads, width], ...] and "tokens": [positive ints] '
            '(and optionally "extra": [[layers, heads, width, tokens], ...])'
        )
    for layers, heads, width in shapes + [e[:3] for e in extra]:
        if not (layers >= 1 and heads >= 1 and width % heads == 0):
            raise GenlabError(
                f"{path}: shape {[layers, heads, width]} needs width divisible by heads"
            )
    return spec


def train_point(settings: Point, run_dir: Path) -> Metrics:
    """One run: its shape for its token budget (``tokens``: what it trained on, the budget
    rounded down to whole steps)."""
    n_layer, n_head, n_embd = settings["layers"], settings["heads"], settings["width"]
    per_step = settings["batch_size"] * settings["block_size"]
    steps = max(1, settings["budget"] // per_step)
    cfg = PretrainConfig(
        out=str(run_dir / "run"),
        builtin_chars=settings["corpus_chars"],
        preset="mini",
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        block_size=settings["block_size"],
        vocab_size=settings["vocab_size"],
        train=TrainConfig(
            max_steps=steps,
            batch_size=settings["batch_size"],
            lr=settings["lr"] * (WIDTH_REF / n_embd) ** 0.5,
            warmup_steps=max(1, int(settings["warmup_fraction"] * steps)),
            eval_every=steps,
            eval_batches=20,
            checkpoint_every=steps,
            weight_decay=0.1,
            seed=settings["seed"],
            device=settings["device"],
            progress=False,
            tensorboard=False,
            plots=False,
        ),
    )
    metrics = pretrain(cfg)
    tokens = steps * per_step
    return {
        "params": non_embedding_params(n_layer, n_embd),
        "tokens": tokens,
        "loss": metrics["eval_loss"],
        "flops": flops_per_token(n_layer, n_embd, settings["block_size"]) * tokens,
        "params_total": metrics["params"],
        "seconds": metrics.get("time_s", 0.0),
    }


def fixed_settings(cfg: ScalingSweepConfig) -> Point:
    """What every run of the sweep shares (the folder hash includes it)."""
    keys = ("block_size", "batch_size", "lr", "warmup_fraction", "corpus_chars", "vocab_size")
    return {k: getattr(cfg, k) for k in (*keys, "seed", "device")}


def run_scaling_sweep(cfg: ScalingSweepConfig) -> list[dict[str, Any]]:
    """Train every point not finished yet; one row per point (settings, then metrics)."""
    return run_sweep(
        TRAIN_POINT,
        cfg.points(),
        cfg.out,
        fixed_settings(cfg),
        cfg.parallel,
        launcher=cfg.launcher,
        address=cfg.address or None,
        nproc_per_point=cfg.nproc_per_point,
    )


def run_beside(
    cfg: ScalingSweepConfig, points: list[Point], suffix: str, parallel: int = 1
) -> list[dict[str, Any]]:
    """Train points of the sweep's kind, with its fixed settings, in ``OUT-SUFFIX`` beside it
    (a held-out run, shorter or longer runs), so that the sweep's own table and a fit of its
    folder never include them; one row per point, as :func:`run_scaling_sweep` gives."""
    return run_sweep(TRAIN_POINT, points, f"{cfg.out}-{suffix}", fixed_settings(cfg), parallel)
