"""Predict the noise or predict the image: eps- against x0-prediction at the same budget.

The claim (Ho et al., 2020, "Denoising Diffusion Probabilistic Models", section 3.2 and table
2): parametrising the network to predict the noise eps, with the plain mean squared error, gives
better samples than predicting the clean image x0 (or the posterior mean). The experiment trains
two runs that differ only in ``--prediction`` (same data, network, seed, steps, batch and
learning rate; the same noise and timesteps in every batch, since those come from the seed), then
samples both with the same sampler, captions and initial noise.

    genlab experiment diffusion-prediction --run runs/shapes32 --runs runs/pred
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from genlab.core.checkpoint import CONFIG_FILE
from genlab.core.errors import GenlabError
from genlab.core.io import read_json
from genlab.core.logging import METRICS_FILE, read_metrics
from genlab.core.sweep import markdown_table, point_dir, run_sweep
from genlab.methods.diffusion.schedule import PREDICTIONS
from genlab.recipes.diffusion import config_from_run, train_diffusion
from genlab.recipes.experiments.report import new_figure, save_figure, write_page, write_results
from genlab.recipes.experiments.sampling import (
    Check,
    ExperimentConfig,
    baseline,
    sample_point,
    sweep_samples,
)

NAME = "diffusion_prediction"
TRAIN_POINT = f"{__name__}:train_point"
EVALUATE_POINT = f"{__name__}:evaluate_point"


@dataclass
class PredictionConfig(ExperimentConfig):
    """Arms trained like the base run but for their target, then sampled alike."""

    run: str = "runs/shapes32"  # the base run, whose settings every arm is trained with
    runs: str = "runs/prediction"  # folder for the arms' runs
    max_steps: int | None = None  # each arm's training steps; none: the base run's
    predictions: tuple[str, ...] = ("eps", "x0")  # the arms' targets: eps, x0 or v
    reuse_base: bool = False  # the base run is the arm of its own target
    guidance: float = 3.0  # classifier-free guidance scale
    steps: int = 50  # DDIM steps

    def checks(self) -> dict[str, Check]:
        targets = set(self.predictions)
        return {
            **super().checks(),
            "max_steps": (self.max_steps is None or self.max_steps >= 1, "at least 1"),
            "predictions": (
                bool(targets)
                and targets <= set(PREDICTIONS)
                and len(targets) == len(self.predictions),
                f"one or more of {', '.join(PREDICTIONS)}, each once",
            ),
            "guidance": (self.guidance >= 0, "at least 0"),
            "steps": (self.steps >= 1, "at least 1"),
        }


def _finished(run: Path, steps: int) -> bool:
    state = run / "state.json"
    return state.is_file() and read_json(state).get("step") == steps


def _eval_losses(run: str | Path) -> list[dict[str, Any]]:
    return [r for r in read_metrics(Path(run) / METRICS_FILE) if "eval_loss" in r]


def train_point(settings: dict[str, Any], run_dir: Path) -> dict[str, float]:
    """One arm: the ``base`` run's settings with its own ``prediction`` and ``max_steps``,
    trained into its sweep folder (an interrupted arm resumes)."""
    cfg = config_from_run(settings["base"])
    train = replace(cfg.train, max_steps=settings["max_steps"], progress=False)
    # the plain MSE of each target, as the claim is stated (no Min-SNR weighting); the arms
    # share steps, not minutes, so a base run's time budget is dropped
    arm = replace(
        cfg,
        out=str(run_dir),
        prediction=settings["prediction"],
        snr_gamma=None,
        snr_floor=0.0,
        time_budget=None,
        train=train,
    )
    train_diffusion(arm, resume=(run_dir / CONFIG_FILE).is_file())
    return {"final_eval_loss": _eval_losses(run_dir)[-1]["eval_loss"]}


def evaluate_point(settings: dict[str, Any], run_dir: Path) -> dict[str, float]:
    """The arm's samples measured (``sample_point``) beside its last held-out loss."""
    final = _eval_losses(settings["run"])[-1]["eval_loss"]
    return {"final_eval_loss": final, **sample_point(settings, run_dir)}


def run_experiment(cfg: PredictionConfig, command: str = "") -> list[dict[str, float | str]]:
    """Train one arm per target as a sweep in ``cfg.runs`` (finished arms are kept), sample
    each as a sweep in ``sweep_dir/diffusion_prediction``, and write the page into
    ``out_dir``."""
    cfg.validate()
    base, out_dir = Path(cfg.run), Path(cfg.out_dir)
    base_cfg = config_from_run(base)
    max_steps = cfg.max_steps or base_cfg.train.max_steps
    ref = baseline(cfg)
    # the base run already is the arm of its own target when trained alike
    alike = cfg.reuse_base and base_cfg.snr_gamma is None and base_cfg.train.max_steps == max_steps
    reused = base_cfg.prediction if alike and base_cfg.prediction in cfg.predictions else None
    if reused and not _finished(base, max_steps):
        raise GenlabError(f"{base} has not reached step {max_steps} yet")
    budget = {"base": str(base), "max_steps": max_steps}
    trained = [{"prediction": p} for p in cfg.predictions if p != reused]
    run_sweep(TRAIN_POINT, trained, cfg.runs, budget, cfg.parallel)
    arms = {
        p: base if p == reused else point_dir(cfg.runs, TRAIN_POINT, {"prediction": p}, budget)
        for p in cfg.predictions
    }

    fixed = {
        **cfg.sweep_settings(ref.features, *arms.values()),
        "sampler": "ddim",
        "steps": cfg.steps,
        "guidance": cfg.guidance,
    }
    points = [{"prediction": p, "run": str(run)} for p, run in arms.items()]
    out = Path(cfg.sweep_dir) / NAME
    rows, strips = sweep_samples(points, fixed, out, cfg.parallel, EVALUATE_POINT)
    write_results(out_dir, NAME, {"rows": rows, "real_images": ref.real}, strips)

    fig = new_figure(10, 4)
    ax_loss, ax_bar = fig.subplots(1, 2)
    for prediction, run in arms.items():
        evals = _eval_losses(run)
        ax_loss.plot(
            [r["step"] for r in evals],
            [r["eval_loss"] for r in evals],
            "o-",
            label=f"{prediction}-prediction",
        )
    ax_loss.set(
        xlabel="step",
        ylabel="held-out loss (MSE to its own target)",
        yscale="log",
        title="training (losses are in different units)",
    )
    ax_loss.legend()
    names = [r["prediction"] for r in rows]
    x = range(len(rows))
    ax_bar.bar([i - 0.2 for i in x], [r["fid"] for r in rows], 0.4, label="FID")
    twin = ax_bar.twinx()
    twin.bar(
        [i + 0.2 for i in x], [r["adherence"] for r in rows], 0.4, color="C1", label="adherence"
    )
    ax_bar.set_xticks(list(x), [f"{p}-prediction" for p in names])
    ax_bar.set(
        ylabel="FID (genlab features)", title=f"samples (DDIM {cfg.steps}, s = {cfg.guidance})"
    )
    twin.set(ylabel="caption adherence", ylim=(0, 1))
    handles = ax_bar.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax_bar.legend(handles=handles, loc="upper right", fontsize=8)
    for ax in (ax_loss, ax_bar):
        ax.grid(alpha=0.3)
    save_figure(fig, out_dir / f"{NAME}.png")

    real = ref.real
    table = markdown_table(
        [
            "prediction",
            "training steps",
            "FID",
            "KID",
            "adherence",
            "final held-out loss (own target)",
        ],
        [
            [r["prediction"], max_steps, r["fid"], r["kid"], r["adherence"], r["final_eval_loss"]]
            for r in rows
        ]
        + [["real images (floor)", "-", real["fid"], real["kid"], real["adherence"], "-"]],
    )
    findings = [
        "; ".join(
            f"{r['prediction']}-prediction: FID {r['fid']:.3g}, KID {r['kid']:.3g}, adherence "
            f"{r['adherence']:.3f}"
            for r in rows
        )
        + ".",
        ref.finding(),
    ]
    write_page(
        out_dir / f"{NAME}.md",
        "Predict the noise or the image: eps vs x0 at the same training budget",
        "Two runs that differ only in what the network predicts; everything else (data, "
        "network, seed, steps, batches, noise) is shared.",
        table,
        f"{NAME}.png",
        [
            f"runs: {', '.join(f'`{r}`' for r in arms.values())} (settings of `{base}`, "
            f"{max_steps} steps of {base_cfg.train.batch_size} images each), each trained on "
            "the plain mean squared error of its own target (no Min-SNR weighting)",
            ref.protocol(),
            f"DDIM {cfg.steps} steps, eta 0, guidance {cfg.guidance}, network in {cfg.precision}",
            f"samples: [{NAME}_samples.png]({NAME}_samples.png) (first 8 per run, rows in "
            "table order)",
        ],
        findings,
        command=command,
    )
    return rows
