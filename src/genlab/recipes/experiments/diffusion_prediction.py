"""Predict the noise or predict the image: eps- against x0-prediction at the same budget.

The claim (Ho et al., 2020, "Denoising Diffusion Probabilistic Models", section 3.2 and table
2): parametrising the network to predict the noise eps, with the plain mean squared error, gives
better samples than predicting the clean image x0 (or the posterior mean). The experiment trains
two runs that differ only in ``--prediction`` (same data, network, seed, steps, batch and
learning rate; the same noise and timesteps in every batch, since those come from the seed), then
samples both with the same sampler, captions and initial noise.

    genlab experiment diffusion-prediction --base runs/shapes32 --runs runs/pred
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from genlab.core.errors import GenlabError
from genlab.core.io import read_json
from genlab.core.logging import METRICS_FILE, read_metrics
from genlab.methods.diffusion.model import load_diffusion
from genlab.metrics.features import default_features_dir, load_feature_net
from genlab.recipes.diffusion import (
    config_from_run,
    evaluate_samples,
    reference_set,
    train_diffusion,
)
from genlab.recipes.experiments.report import (
    markdown_table,
    new_figure,
    save_figure,
    write_page,
    write_results,
)

NAME = "diffusion_prediction"


def _finished(run: Path, steps: int) -> bool:
    state = run / "state.json"
    return state.is_file() and read_json(state).get("step") == steps


def run_experiment(
    base: Path,
    runs: Path,
    max_steps: int | None,
    predictions: list[str],
    reuse_base: bool,
    features: Path | None,
    n: int,
    guidance: float,
    steps: int,
    seed: int,
    batch_size: int,
    precision: str,
    out_dir: Path,
    command: str = "",
) -> list[dict[str, float | str]]:
    cfg = config_from_run(base)
    train = replace(cfg.train, max_steps=max_steps or cfg.train.max_steps, progress=False)
    arms: dict[str, Path] = {}
    for prediction in predictions:
        plain = cfg.snr_gamma is None
        same = cfg.prediction == prediction and cfg.train.max_steps == train.max_steps
        if reuse_base and plain and same:
            if not _finished(base, train.max_steps):
                raise GenlabError(f"{base} has not reached step {train.max_steps} yet")
            arms[prediction] = base  # the base run already is this arm
            continue
        out = runs / prediction
        if not _finished(out, train.max_steps):
            # the plain MSE of each target, as the claim is stated (no Min-SNR weighting)
            arm = replace(
                cfg,
                out=str(out),
                prediction=prediction,
                snr_gamma=None,
                snr_floor=0.0,
                train=train,
            )
            train_diffusion(arm, resume=True)  # picks up an interrupted arm
        arms[prediction] = out

    spec = cfg.data
    net = load_feature_net(features or default_features_dir(spec.data, spec.size))
    reference, captions = reference_set(spec, n)
    rows: list[dict[str, float | str]] = []
    strips = []
    for prediction, run in arms.items():
        model, tokenizer = load_diffusion(run)
        result, images = evaluate_samples(
            model,
            tokenizer,
            net,
            reference,
            captions,
            "ddim",
            steps,
            0.0,
            guidance,
            seed,
            batch_size,
            precision,
        )
        evals = [r for r in read_metrics(run / METRICS_FILE) if "eval_loss" in r]
        rows.append(
            {
                "prediction": prediction,
                "run": str(run),
                "final_eval_loss": evals[-1]["eval_loss"],
                **result,
            }
        )
        strips.append(images[:8])
        print(json.dumps(rows[-1]), flush=True)
    write_results(out_dir, NAME, rows, strips)

    fig = new_figure(10, 4)
    ax_loss, ax_bar = fig.subplots(1, 2)
    for prediction, run in arms.items():
        evals = [r for r in read_metrics(run / METRICS_FILE) if "eval_loss" in r]
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
    ax_bar.set(ylabel="FID (genlab features)", title=f"samples (DDIM {steps}, s = {guidance})")
    twin.set(ylabel="caption adherence", ylim=(0, 1))
    handles = ax_bar.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax_bar.legend(handles=handles, loc="upper right", fontsize=8)
    for ax in (ax_loss, ax_bar):
        ax.grid(alpha=0.3)
    save_figure(fig, out_dir / f"{NAME}.png")

    table = markdown_table(
        [
            "prediction",
            "training steps",
            f"FID (genlab {net.config.data} features)",
            "adherence",
            "final held-out loss (own target)",
        ],
        [
            [r["prediction"], train.max_steps, r["fid"], r["adherence"], r["final_eval_loss"]]
            for r in rows
        ],
    )
    findings = [
        "; ".join(
            f"{r['prediction']}-prediction: FID {r['fid']:.3g}, adherence {r['adherence']:.3f}"
            for r in rows
        )
        + ".",
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
            f"{train.max_steps} steps of {train.batch_size} images each), each trained on the "
            "plain mean squared error of its own target (no Min-SNR weighting)",
            f"n = {n} generated images per run, one per caption of {n} reference images; FID "
            "with so few images is biased upwards: compare rows, not with other tables",
            f"DDIM {steps} steps, eta 0, guidance {guidance}, network in {precision}",
            f"samples: [{NAME}_samples.png]({NAME}_samples.png) (first 8 per run, rows in "
            "table order)",
        ],
        findings,
        command=command,
    )
    return rows
